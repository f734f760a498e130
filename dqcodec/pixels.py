"""The per-pixel likelihood given the codes, which makes a .dq file lossless.

Pixels are coded in five steps over every 4x4 block, coarse to fine, each step one pass of
a small network that sees the codes and every pixel of the steps before it:

    0 . . .     step 0: (0,0), from the codes alone
    . . . .     step 1: (2,2), the centre of four step-0 pixels
    2 . 2 .     step 2: (0,2) and (2,0)
    . 3 . 3     step 3: the odd rows' odd columns, between four known pixels each
    . . . .     step 4: the eight others, between four known neighbours each

So only one pixel in 16 is predicted from the codes alone. The codes enter through the
decoder's last feature map (stride 2) and its lossy reconstruction x_hat, both folded to
the block grid. The known pixels enter twice: folded as they are, and through a 5x5
convolution at full resolution (shared by every position, so "interpolate the known
neighbours" is one set of weights rather than sixteen), then folded.

Each pixel's three channels follow a discretized mixture of logistics with coupled
channels, as in PixelCNN++: one set of component weights shared by R, G and B; G's mean
shifted by R's residual, B's by R's and G's. Coding walks R, then G given R, then B given
R and G, re-weighting the components by what was coded, which is exactly the joint
mixture. Tables are built for chunks of pixels, so memory stays bounded for any image
size, over a window of values around the mixture mean; a value outside the window is coded
as "below" or "above" and then uniformly among the values on that side.

A near-lossless file (a tolerance d > 0) codes each sample's bin of 2d + 1 values instead of
the value, on a grid of bins around the mixture mean, and decodes the mixture's mean within
the bin (rounded), so every sample is within 2d of the original. The steps and channels after
it then see the decoded values, in the encoder as in the decoder. Near-lossless coding of the
residual of a lossy layer with its learned likelihood is the l-infinity scheme of Bai et al.
(CVPR 2021); here the bins' reconstruction is the conditional mean, which costs the hard bound
of d and buys mean squared error.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import exact
from .entropy import PIXEL_PROBABILITY_BITS

BLOCK = 4
STEPS = (
    ((0, 0),),
    ((2, 2),),
    ((0, 2), (2, 0)),
    ((1, 1), (1, 3), (3, 1), (3, 3)),
    ((0, 1), (0, 3), (2, 1), (2, 3), (1, 0), (1, 2), (3, 0), (3, 2)),
)
MEAN_SCALE = 32.0  # raw mean outputs are in units of 32 grey levels around x_hat
WINDOW = 64  # values per table computed exactly
CHUNK = 1 << 14  # pixels per batch of tables
PARAMS_PER_COMPONENT = 10  # weight logit, and per channel a mean, a log-scale and a coupling coefficient
NEIGHBOUR_FEATURES = 8


def fold(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 16, H/4, W/4): every pixel by its position di * 4 + dj in its block."""
    b, c, h, w = x.shape
    return F.pixel_unshuffle(x, BLOCK).view(b, c, BLOCK * BLOCK, h // BLOCK, w // BLOCK)


def _known_before(step: int) -> torch.Tensor:
    """(4, 4) mask of the block positions coded in earlier steps."""
    known = torch.zeros(BLOCK, BLOCK)
    for di, dj in (p for earlier in STEPS[:step] for p in earlier):
        known[di, dj] = 1
    return known


def _step_net(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(hidden, cout, 1),
    )


class PixelModel(nn.Module):
    def __init__(self, feature_channels: int, mixtures: int, hidden: int):
        super().__init__()
        folded = 3 * BLOCK * BLOCK
        self.inputs = nn.Conv2d(4 * feature_channels + folded, hidden, 1)
        self.neighbours = nn.Conv2d(4, NEIGHBOUR_FEATURES, 5, padding=2)
        self.steps = nn.ModuleList(
            _step_net(hidden + folded + NEIGHBOUR_FEATURES * BLOCK * BLOCK, hidden, len(step) * PARAMS_PER_COMPONENT * mixtures)
            for step in STEPS
        )
        for i in range(len(STEPS)):
            self.register_buffer(f"known_{i}", _known_before(i), persistent=False)

    def context(self, features: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Decoder features (B, F, H/2, W/2) and x_hat (B, 3, H, W) -> the step nets' shared input."""
        return self.inputs(torch.cat([F.pixel_unshuffle(features, 2), F.pixel_unshuffle(x_hat, BLOCK)], 1))

    def params(self, context: torch.Tensor, step: int, residual: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Raw mixture parameters (B, len(step), 10K, H/4, W/4) of a step's positions, from the
        residuals (x - x_hat) / MEAN_SCALE (B, 3, H, W), of which it sees those known before
        the step and ``inside`` (1, 1, H, W) the image."""
        h, w = residual.shape[-2:]
        known = getattr(self, f"known_{step}").repeat(h // BLOCK, w // BLOCK) * inside
        residual = residual * known
        local = self.neighbours(torch.cat([residual, known.expand(residual.shape[0], 1, h, w)], 1))
        inputs = [context, F.pixel_unshuffle(residual, BLOCK), F.pixel_unshuffle(local, BLOCK)]
        raw = self.steps[step](torch.cat(inputs, 1))
        return raw.view(raw.shape[0], len(STEPS[step]), -1, *raw.shape[-2:])

    def log_prob(self, context: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
        """ln p(x | codes) per pixel, (B, 16, H/4, W/4) in coding order; x holds integers 0..255
        as floats. ``inside`` (1, 1, H, W) marks the image within its padding, as coding sees
        it; pixels outside get 0."""
        base = 255 * x_hat.clamp(0, 1)
        inside = torch.ones_like(x[:1, :1]) if inside is None else inside
        residual = (x - base) / MEAN_SCALE * inside
        folded_x, folded_base, folded_inside = fold(x), fold(base), fold(inside)
        out = []
        for s, step in enumerate(STEPS):
            raw = self.params(context, s, residual, inside)
            for i, (di, dj) in enumerate(step):
                p = di * BLOCK + dj
                log_prob = mixture_log_prob(raw[:, i], folded_base[:, :, p], folded_x[:, :, p])
                out.append(log_prob * folded_inside[:, 0, p])
        return torch.stack(out, 1)


def widen(narrow: PixelModel, wide: PixelModel) -> PixelModel:
    """Make ``wide`` (same inputs and mixtures, more channels) compute exactly what ``narrow``
    does: its old channels take narrow's weights, each new channel keeps its random incoming
    weights and gets zero outgoing ones, so training starts where ``narrow`` stopped."""
    old, new = narrow.inputs.out_channels, wide.inputs.out_channels
    if new < old:
        raise ValueError(f"cannot narrow a pixel likelihood from {old} to {new} channels")
    kept = torch.arange(old)
    # the step nets' inputs: the context (which grows at its end), then the folded pixels
    kept_inputs = torch.cat([kept, torch.arange(new, wide.steps[0][0].in_channels)])
    wide = wide.to(narrow.inputs.weight.dtype)
    with torch.no_grad():
        _copy_into(wide.inputs, narrow.inputs, kept, None)
        wide.neighbours.load_state_dict(narrow.neighbours.state_dict())
        for wide_step, narrow_step in zip(wide.steps, narrow.steps):
            _copy_into(wide_step[0], narrow_step[0], kept, kept_inputs)
            _copy_into(wide_step[2], narrow_step[2], kept, kept)
            _copy_into(wide_step[4], narrow_step[4], None, kept)
    return wide


def _copy_into(new: nn.Conv2d, old: nn.Conv2d, outputs: torch.Tensor | None, inputs: torch.Tensor | None) -> None:
    """new's weights at (outputs, inputs) = old's weights (None = all of them, in order);
    the weights from new's other inputs are zeroed, so those inputs change nothing."""
    outputs = torch.arange(new.out_channels) if outputs is None else outputs
    inputs = torch.arange(new.in_channels) if inputs is None else inputs
    copied = torch.zeros(new.in_channels, dtype=torch.bool)
    copied[inputs] = True
    new.weight[:, ~copied] = 0
    new.weight[outputs.unsqueeze(1), inputs] = old.weight
    new.bias[outputs] = old.bias


def split_params(raw: torch.Tensor, mixtures: int):
    """(B, 10K, ...) -> weight logits (B, K, ...), and means, log-scales, coupling coefficients (B, 3, K, ...)."""
    logits, means, log_scales, coeffs = raw.split([mixtures, 3 * mixtures, 3 * mixtures, 3 * mixtures], 1)
    shape = (raw.shape[0], 3, mixtures, *raw.shape[2:])
    return logits, means.reshape(shape), log_scales.reshape(shape).clamp(-6, 4) + 2, torch.tanh(coeffs.reshape(shape))


def coupled_means(means, coeffs, base, residual, channel: int) -> torch.Tensor:
    """Means (B, K, ...) of one channel: x_hat plus the raw offset, plus the coupling
    with the residuals (x - x_hat) of the channels before it."""
    mean = base[:, channel].unsqueeze(1) + MEAN_SCALE * means[:, channel]
    if channel == 1:
        mean = mean + coeffs[:, 0] * residual[:, 0].unsqueeze(1)
    elif channel == 2:
        mean = mean + coeffs[:, 1] * residual[:, 0].unsqueeze(1) + coeffs[:, 2] * residual[:, 1].unsqueeze(1)
    return mean


def bin_log_prob(value, mean, log_scale) -> torch.Tensor:
    """ln P(value) of a logistic discretized to the integers 0..255 (the end bins take the tails)."""
    inv_scale = torch.exp(-log_scale)
    plus = (value + 0.5 - mean) * inv_scale
    minus = (value - 0.5 - mean) * inv_scale
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = (value - mean) * inv_scale
    # where the bin's mass is below float precision, its density at the centre times the bin width
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), mid - log_scale - 2 * F.softplus(mid))
    lowest = plus - F.softplus(plus)  # ln sigmoid(plus)
    highest = -F.softplus(minus)  # ln (1 - sigmoid(minus))
    return torch.where(value < 0.5, lowest, torch.where(value > 254.5, highest, log_mid))


def mixture_log_prob(raw: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ln p(x) (B, H, W) of the joint mixture over the three channels."""
    mixtures = raw.shape[1] // PARAMS_PER_COMPONENT
    logits, means, log_scales, coeffs = split_params(raw, mixtures)
    residual = x - base
    per_component = F.log_softmax(logits, 1)
    for c in range(3):
        mean = coupled_means(means, coeffs, base, residual, c)
        per_component = per_component + bin_log_prob(x[:, c].unsqueeze(1), mean, log_scales[:, c])
    return torch.logsumexp(per_component, 1)


@dataclass
class WindowTable:
    """One channel's table for N pixels over B + 2 symbols: 0 means "below the window", 1..B
    the window's bins of ``width`` values from ``low`` on, B + 1 "above it". A value outside
    the window is then sent uniformly among the bins on its side. For lossless coding the
    width is 1 and B is WINDOW, so bins are values."""

    low: torch.Tensor  # (N,) first value of each window
    frequencies: np.ndarray  # (N, B + 2) the integer table the range coder gets
    width: int = 1  # values per bin: 2 * tolerance + 1
    # for bins of width > 1: window bins (N,) -> the mass of each of their values (N, width), as the bins' own
    value_masses: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def bins(self) -> int:
        return self.frequencies.shape[1] - 2

    def bin_of(self, values: torch.Tensor) -> torch.Tensor:
        """The bin of each value: 0..B-1 in the window, negative below it, B and up above it."""
        return torch.div(values - self.low, self.width, rounding_mode="floor")

    def split(self, values: torch.Tensor):
        """Values -> (symbols, and for tails with a choice to make: offsets and sizes)."""
        bins = self.bin_of(values)
        symbols = (bins + 1).clamp(0, self.bins + 1)
        sizes = self.tail_sizes(symbols)
        offsets = torch.where(symbols == 0, bins + self._bins_below(), bins - self.bins)
        coded = sizes >= 2
        return symbols, offsets[coded], sizes[coded]

    def _bins_below(self) -> torch.Tensor:
        return torch.div(self.low + self.width - 1, self.width, rounding_mode="floor")

    def tail_sizes(self, symbols: torch.Tensor) -> torch.Tensor:
        """How many bins the tail of each symbol holds (0 for symbols inside the window)."""
        above = torch.div(256 - self.low - self.bins * self.width + self.width - 1, self.width, rounding_mode="floor")
        inside = torch.zeros_like(symbols)
        return torch.where(symbols == 0, self._bins_below(), torch.where(symbols == self.bins + 1, above, inside))

    def join(self, symbols: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Decoded values from the symbols and the offsets of the tails with sizes >= 2."""
        tail = torch.zeros_like(symbols)
        tail[self.tail_sizes(symbols) >= 2] = offsets
        bins = torch.where(symbols == 0, tail - self._bins_below(), torch.where(symbols == self.bins + 1, self.bins + tail, symbols - 1))
        return self.reconstruct(bins)

    def reconstruct(self, bins: torch.Tensor) -> torch.Tensor:
        """Each bin's decoded value: the value itself for bins of one value; else the mixture's
        mean within a window bin, rounded, and the middle of a tail bin (clipped to 0..255)."""
        first = self.low + bins * self.width
        if self.width == 1:
            return first
        middle = torch.div(first.clamp_min(0) + (first + self.width - 1).clamp_max(255), 2, rounding_mode="floor")
        inside = (bins >= 0) & (bins < self.bins)
        mass = self.value_masses(bins.clamp(0, self.bins - 1))
        offsets = torch.arange(self.width)
        total = mass.sum(1)
        weighted = (mass * offsets).sum(1)  # below 2^30 * 31 * 31
        mean = first + torch.div(2 * weighted + total, 2 * total.clamp_min(1), rounding_mode="floor")
        return torch.where(inside & (total > 0), mean, middle)

    def quantize(self, values: torch.Tensor) -> torch.Tensor:
        """What a decoder gets for these values."""
        return values if self.width == 1 else self.reconstruct(self.bin_of(values))


class ExactPixelModel:
    """The pixel likelihood's networks in exact fixed point (``dqcodec.exact``): what the coder
    runs, so that encoder and decoder get the same parameters on any kernel. Inputs and outputs
    are integer counts of 2^-FRAC in float64 tensors."""

    def __init__(self, model: PixelModel):
        self.inputs = exact.ExactConv.of(model.inputs)
        self.neighbours = exact.ExactConv(*folded_neighbours(model.neighbours), padding=1)
        self.steps = [exact.exact_layers(step) for step in model.steps]
        self.known = [getattr(model, f"known_{i}").double() for i in range(len(STEPS))]

    def context(self, features: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return self.inputs(torch.cat([F.pixel_unshuffle(features, 2), F.pixel_unshuffle(x_hat, BLOCK)], 1))

    def params(self, context: torch.Tensor, step: int, residual: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """As ``PixelModel.params``, with the residuals in fixed point and ``inside`` 0 or 1."""
        h, w = residual.shape[-2:]
        known = self.known[step].repeat(h // BLOCK, w // BLOCK) * inside
        residual = F.pixel_unshuffle(residual * known, BLOCK)
        known = F.pixel_unshuffle((known * exact.SCALE).expand(residual.shape[0], 1, h, w), BLOCK)
        local = self.neighbours(torch.cat([residual, known], 1))  # already folded
        raw = exact.run(self.steps[step], torch.cat([context, residual, local], 1))
        return raw.view(raw.shape[0], len(STEPS[step]), -1, *raw.shape[-2:])


def folded_neighbours(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of a 3x3 convolution over 4x4-folded inputs (``F.pixel_unshuffle``) that
    computes the folded output of ``conv``, a 5x5 convolution at full resolution: the same
    products, a sixteenth of the positions, and one dense matrix product instead of a thin one."""
    out_channels, in_channels, k, _ = conv.weight.shape
    reach = k // 2
    folded = conv.weight.new_zeros(out_channels, BLOCK * BLOCK, in_channels, BLOCK * BLOCK, 3, 3)
    for pi, pj, qi, qj, by, bx in itertools.product(range(BLOCK), range(BLOCK), range(BLOCK), range(BLOCK), (-1, 0, 1), (-1, 0, 1)):
        dy, dx = BLOCK * by + qi - pi, BLOCK * bx + qj - pj
        if abs(dy) <= reach and abs(dx) <= reach:
            folded[:, pi * BLOCK + pj, :, qi * BLOCK + qj, by + 1, bx + 1] = conv.weight[:, :, dy + reach, dx + reach]
    weight = folded.reshape(out_channels * BLOCK * BLOCK, in_channels * BLOCK * BLOCK, 3, 3)
    return weight, conv.bias.repeat_interleave(BLOCK * BLOCK)


ONE = 1 << exact.FRAC  # one grey level, in fixed point
WEIGHT_BITS = 16  # mixture weights sum to about 2^16


class ChunkDistribution:
    """The mixture for N pixels, walked channel by channel when coding, in exact integer arithmetic.

    ``raw`` (N, 10K) are a step's fixed-point outputs and ``base`` (N, 3) the fixed-point
    255 * x_hat. ``table(c)`` gives channel c's table given the channels already pushed;
    ``push(c, values)`` records the decoded values and re-weights the components. With a
    ``tolerance`` d > 0 the tables are over bins of 2d + 1 values (see the module's docstring).
    """

    def __init__(self, raw: torch.Tensor, base: torch.Tensor, tolerance: int = 0):
        k = raw.shape[1] // PARAMS_PER_COMPONENT
        raw = raw.long()
        logits, means, log_scales, coeffs = raw.split([k, 3 * k, 3 * k, 3 * k], 1)
        shape = (raw.shape[0], 3, k)
        self.means = MEAN_SCALE_INT * means.reshape(shape)  # grey levels, fixed point
        log_scales = log_scales.reshape(shape).clamp(-6 * ONE, 4 * ONE) + 2 * ONE
        self.inv_scales = exact.tables()["inv_scale"](log_scales, exact.FRAC)  # counts of 2^-20
        self.coeffs = exact.tanh(coeffs.reshape(shape)).long()
        self.weights = _normalized(exact.softmax_weights(logits, 1))
        self.base = base.long()
        self.residual = torch.zeros_like(self.base)  # x - 255 x_hat of the channels pushed, fixed point
        self.tolerance = tolerance
        self.width, self.bins = window_bins(tolerance)
        self._window = None

    def mean(self, c: int) -> torch.Tensor:
        """Fixed-point means (N, K) of channel c given the channels pushed before it."""
        mean = self.base[:, c].unsqueeze(1) + self.means[:, c]
        coupled = [(0, 0)] if c == 1 else [(1, 0), (2, 1)] if c == 2 else []
        for coeff, channel in coupled:
            product = self.coeffs[:, coeff] * self.residual[:, channel].unsqueeze(1)
            mean = mean + torch.div(product + ONE // 2, ONE, rounding_mode="floor")
        return mean

    def table(self, c: int, map_blocks: Callable = map) -> WindowTable:
        """Channel c's table, built over blocks of TABLE_ROWS pixels by ``map_blocks`` (``map``, or a thread pool's)."""
        mean = self.mean(c)
        weighted = (self.weights * mean).sum(1)
        total = self.weights.sum(1)
        centre = torch.div(2 * weighted + total * ONE, 2 * total * ONE, rounding_mode="floor")  # round(mean)
        span = self.bins * self.width  # values in the window
        low = (centre - (self.bins // 2) * self.width - self.tolerance).clamp(0, 256 - span)
        # the logistic's argument t = (edge - mean) / scale at the edges of the values: edge k is
        # (low + k - 1/2) in fixed point, so t_k = first + k * step in counts of 2^-32. Both terms are
        # integers below 2^52 and their scaling by 2^-16 is exact in float64, so ``_window_cdf`` gets
        # exactly floor(t_k / 2^16). The table needs the edges of the bins "below", each bin of the
        # window, "above": k = -inf, 0, width, ..., span, +inf.
        inv_scale = self.inv_scales[:, c]
        first = ((low * ONE - ONE // 2).unsqueeze(1) - mean) * inv_scale  # (N, K)
        step = (ONE * inv_scale).T.double().mul_(2.0**-16).unsqueeze(2)  # (K, N, 1): components first,
        first = first.T.double().mul_(2.0**-16).unsqueeze(2)  # so that each component's rows are contiguous
        self._window = (low, first, step)
        edges = _edge_steps(self.bins, self.width)
        frequencies = torch.empty(len(low), len(edges) - 1, dtype=torch.float64)

        def fill(rows: slice) -> None:
            mass = _window_masses(first[:, rows], step[:, rows], self.weights[rows], edges, low[rows], span)
            exact.frequencies(mass, PIXEL_PROBABILITY_BITS, out=frequencies[rows])

        list(map_blocks(fill, _row_blocks(len(low))))
        value_masses = None
        if self.width > 1:
            value_masses = functools.partial(self._value_masses, low, first, step, self.weights)
        return WindowTable(low, frequencies.numpy(), self.width, value_masses)

    def _value_masses(self, low, first, step, weights, bins: torch.Tensor) -> torch.Tensor:
        """The mixture's mass (N, width) of each value of one window bin per pixel, in counts of 2^-30: the
        same edges as the table's, so a bin's values add up to its components' masses."""
        edges = bins.unsqueeze(1) * self.width + torch.arange(self.width + 1)  # (N, width + 1)
        return _window_masses(first, step, weights, edges.double(), low, self.bins * self.width).long()

    def push(self, c: int, values: torch.Tensor) -> None:
        low, first, step = self._window
        symbols = (torch.div(values - low, self.width, rounding_mode="floor") + 1).clamp(0, self.bins + 1)
        edges = _edge_steps(self.bins, self.width)[torch.stack([symbols, symbols + 1], 1)]  # (N, 2)
        cdf = _window_cdf(first, step, edges, low, self.bins * self.width)
        p = (cdf[..., 1] - cdf[..., 0]).T.long()  # each component's mass of the coded symbol
        # a tail's even split is the same factor for every component; +1 keeps every weight alive
        self.weights = _normalized((self.weights * p >> 14) + 1)
        self.residual[:, c] = values * ONE - self.base[:, c]


MAX_TOLERANCE = 15


def window_bins(tolerance: int) -> tuple[int, int]:
    """(values per bin, bins per window) for a tolerance: (1, WINDOW) for lossless coding, else bins
    of 2d + 1 values, an odd number of them, about WINDOW values in all."""
    if not 0 <= tolerance <= MAX_TOLERANCE:
        raise ValueError(f"a tolerance is 0 to {MAX_TOLERANCE}, got {tolerance}")
    width = 2 * tolerance + 1
    return (1, WINDOW) if width == 1 else (width, (WINDOW // width) | 1)


MEAN_SCALE_INT = int(MEAN_SCALE)
T_FRAC = 16  # the logistic's argument enters the sigmoid table in counts of 2^-16


@functools.cache
def _edge_steps(bins: int, width: int) -> torch.Tensor:
    """The table's edges k (see ``ChunkDistribution.table``): every bin's first value and one past the last,
    between -inf and +inf, the outer ends of the tails "below" and "above", where every CDF is 0 and 1."""
    inner = torch.arange(bins + 1, dtype=torch.float64) * width
    return torch.cat([torch.tensor([-math.inf]), inner, torch.tensor([math.inf])])


TABLE_ROWS = 2048  # pixels whose tables are built at once: small enough that their temporaries come from recycled memory


def _row_blocks(rows: int) -> list[slice]:
    return [slice(start, start + TABLE_ROWS) for start in range(0, rows, TABLE_ROWS)]


def _window_masses(first, step, weights, edges, low, span: int) -> torch.Tensor:
    """The mixture's mass (N, E - 1) between consecutive edges (E,) or (N, E), whole numbers in float64 (counts
    of 2^-30)."""
    cdf = _window_cdf(first, step, edges, low, span).double()  # (K, N, E)
    # the weighted sum before the differences (one difference per pixel, not one per component), in
    # float64: the weights sum to at most 2^16 and a CDF is at most 2^30, so every partial sum is an integer
    # of at most 2^46, exact
    weights = weights.T.double().unsqueeze(2)
    mixed = cdf[0] * weights[0]
    for k in range(1, cdf.shape[0]):
        mixed.addcmul_(cdf[k], weights[k])
    return mixed.diff(dim=-1).mul_(2.0**-WEIGHT_BITS).floor_()


def _window_cdf(first: torch.Tensor, step: torch.Tensor, k: torch.Tensor, low: torch.Tensor, span: int) -> torch.Tensor:
    """Each component's CDF (K, N, E), int32 counts of 2^-30, at the edges k (E,) or (N, E): the sigmoid table
    at t = first + k * step, rounded down to 2^-16. Where the window reaches 0 or 255 its end is an edge
    of the values, so it moves to -inf or +inf: the tail beyond it is empty."""
    k = _window_ends(k, low, span)
    sigmoid = exact.tables()["sigmoid"]  # 0 at its bottom, 1 at its top
    bottom, top = float(sigmoid.low << T_FRAC), float(sigmoid.high << T_FRAC)
    # t from the table's bottom, exact in float64 (|first| < 2^36 has 16 bits after the point, and so has
    # the shift); clamping before rounding down is the same, as the bounds are integers, and truncation to
    # int32 of t >= 0 rounds it down
    t = torch.addcmul(first - bottom, k, step).clamp_(0, top - bottom)
    return sigmoid.above_low(t.int(), T_FRAC)


def _window_ends(k: torch.Tensor, low: torch.Tensor, span: int) -> torch.Tensor:
    """The edges k (E,) or (N, E), with -inf for the edge k = 0 of the windows that start at 0 and +inf for the
    edge k = span of those that end at 255 (rare: a copy only if there are any)."""
    at_bottom, at_top = (low == 0).unsqueeze(1), (low + span == 256).unsqueeze(1)
    if not (at_bottom.any() or at_top.any()):
        return k
    k = k.expand(len(low), -1)
    return torch.where(at_bottom & (k == 0), -math.inf, torch.where(at_top & (k == span), math.inf, k))


def _normalized(weights: torch.Tensor) -> torch.Tensor:
    """Non-negative int64 weights (N, K) with positive rows, below 2^40 -> rows summing to about 2^16."""
    return torch.div(weights << WEIGHT_BITS, weights.sum(1, keepdim=True), rounding_mode="floor")


CodeChannel = Callable[[WindowTable, int, int, torch.Tensor], torch.Tensor]


def code_pixels(model: ExactPixelModel, context, x_hat, size: tuple[int, int], code_channel: CodeChannel, workers: int = 1,
                on_position: Callable[[], None] | None = None, tolerance: int = 0) -> torch.Tensor:
    """Walk steps, block positions, channels and chunks of pixels, in the order both directions share.

    ``context`` and ``x_hat`` are the exact model's fixed-point context and reconstruction.
    ``code_channel(table, position, channel, pixels)`` encodes or decodes one channel of a
    chunk (``position`` = di * 4 + dj in the block, ``pixels`` index the flattened block
    grid) and returns its decoded values (within 2 * ``tolerance`` of the originals). Each table is built
    by ``workers`` threads, each running its tensor operations on one thread; the arithmetic is exact, so
    the tables are the same whatever ``workers`` is. ``on_position()``, if given, is called as each of the
    block's ``BLOCK**2`` positions is done.
    Returns the image (1, 3, H, W) of 8-bit values as int64, zero outside ``size``.
    """
    base = 255 * x_hat.clamp(0, ONE)
    inside = torch.zeros_like(base[:, :1])
    inside[..., : size[0], : size[1]] = 1
    folded_base = fold(base)[0].flatten(2)  # (3, 16, h*w)
    folded_inside = fold(inside)[0, 0].flatten(1).bool()  # (16, h*w)
    grid = (base.shape[-2] // BLOCK, base.shape[-1] // BLOCK)
    image = torch.zeros_like(base, dtype=torch.long)
    with _table_builders(workers) as pool:
        for s, step in enumerate(STEPS):
            residual = torch.floor((image * ONE - base) / MEAN_SCALE + 0.5) * inside  # exact: a power of two
            raw = model.params(context, s, residual, inside)[0]
            for i, (di, dj) in enumerate(step):
                p = di * BLOCK + dj
                step_raw = raw[i].flatten(1).T  # (h*w, 10K)
                pieces = folded_inside[p].nonzero().squeeze(1).split(CHUNK)
                chunks = [ChunkDistribution(step_raw[pixels], folded_base[:, p, pixels].T, tolerance) for pixels in pieces]
                coded = torch.zeros(step_raw.shape[0], 3, dtype=torch.long)
                for c in range(3):
                    for pixels, chunk in zip(pieces, chunks):
                        coded[pixels, c] = code_channel(chunk.table(c, pool.map), p, c, pixels).long()
                        chunk.push(c, coded[pixels, c])
                image[0, :, di::BLOCK, dj::BLOCK] = coded.T.reshape(3, *grid)
                if on_position:
                    on_position()
    return image


@contextlib.contextmanager
def _table_builders(workers: int):
    """A pool of ``workers`` threads whose tensor operations each run on one thread: the tables' blocks are
    small, and two threads each splitting every operation in two only wait on each other. (Each thread's
    first ``torch.set_num_threads`` call sets its own OpenMP and MKL thread counts, and the default for new
    threads; the caller's thread keeps its own, and the default is restored at the end.)"""
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)
