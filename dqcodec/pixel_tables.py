"""The pixel likelihood in exact integer arithmetic: the networks in fixed point and the integer
tables the range coder gets, the same on any machine.

Coding walks each pixel's channels R, then G given R, then B given R and G, re-weighting the
mixture's components by what was coded, which is exactly the joint mixture (``pixel_model``).
Tables are built for chunks of pixels, so memory stays bounded for any image size, over a
window of values around the mixture mean; a value outside the window is coded as "below" or
"above" and then uniformly among the values on that side.

A near-lossless file (a tolerance d > 0) codes each sample's bin of 2d + 1 values instead of
the value, on a grid of bins around the mixture mean, and decodes the mixture's mean within
the bin (rounded), so every sample is within 2d of the original. The steps and channels after
it then see the decoded values, in the encoder as in the decoder. Near-lossless coding of the
residual of a lossy layer with its learned likelihood is the l-infinity scheme of Bai et al.
(CVPR 2021); here the bins' reconstruction is the conditional mean, which costs the hard bound
of d and buys mean squared error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import exact
from .entropy import PIXEL_PROBABILITY_BITS
from .pixel_model import BLOCK, MEAN_SCALE, PARAMS_PER_COMPONENT, STEPS, PixelModel
from .runtime import pixels

WINDOW = 64  # values per table computed exactly


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
        bins = torch.where(
            symbols == 0,
            tail - self._bins_below(),
            torch.where(symbols == self.bins + 1, self.bins + tail, symbols - 1),
        )
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
    """``runtime.pixels.folded_neighbours`` of a torch convolution: the 3x3 convolution over 4x4-folded inputs
    that computes its folded output."""
    weight, bias = pixels.folded_neighbours(conv.weight.detach().numpy(), conv.bias.detach().numpy())
    return torch.from_numpy(weight), torch.from_numpy(bias)


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


from .point import MAX_TOLERANCE  # noqa: E402  (a limit of the ladder)


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


TABLE_ROWS = (
    2048  # pixels whose tables are built at once: small enough that their temporaries come from recycled memory
)


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
