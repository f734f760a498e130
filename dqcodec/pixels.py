"""The per-pixel likelihood given the codes, which makes a .dq file lossless.

The image is split into its four 2x2 polyphase components ("phases") and they are coded
one after another: phase 0 (even rows and columns) from the codes alone, phase 1 (odd,
odd) from the codes and phase 0, phases 2 and 3 from everything before them. The codes
enter through the decoder's last feature map (stride 2, the phase grid) and its lossy
reconstruction x_hat.

Each pixel's three channels follow a discretized mixture of logistics with coupled
channels, as in PixelCNN++: one set of component weights shared by R, G and B; G's mean
shifted by R's residual, B's by R's and G's. Coding walks R, then G given R, then B given
R and G, re-weighting the components by what was coded, which is exactly the joint
mixture. Tables are built for chunks of pixels, so memory stays bounded for any image
size, over a window of values around the mixture mean; a value outside the window is coded
as "below" or "above" and then uniformly among the values on that side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))  # (row, column) offset inside each 2x2 block
MEAN_SCALE = 32.0  # raw mean outputs are in units of 32 grey levels around x_hat
WINDOW = 96  # values per table computed exactly
CHUNK = 1 << 14  # pixels per batch of tables
PARAMS_PER_COMPONENT = 10  # weight logit, and per channel a mean, a log-scale and a coupling coefficient


def phase(x: torch.Tensor, k: int) -> torch.Tensor:
    """Phase k of (B, C, H, W), H and W even: (B, C, H/2, W/2)."""
    di, dj = PHASES[k]
    return x[..., di::2, dj::2]


def _phase_net(cin: int, hidden: int, cout: int) -> nn.Sequential:
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
        self.mixtures = mixtures
        self.inputs = nn.Conv2d(feature_channels + 12, hidden, 1)
        self.phases = nn.ModuleList(
            _phase_net(hidden + 3 * k, hidden, PARAMS_PER_COMPONENT * mixtures) for k in range(len(PHASES))
        )

    def context(self, features: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Decoder features (B, F, H/2, W/2) and x_hat (B, 3, H, W) -> the phase nets' shared input."""
        return self.inputs(torch.cat([features, F.pixel_unshuffle(x_hat, 2)], 1))

    def params(self, context: torch.Tensor, k: int, residuals: list[torch.Tensor]) -> torch.Tensor:
        """Raw mixture parameters (B, 10K, H/2, W/2) of phase k from the residuals of phases 0..k-1."""
        return self.phases[k](torch.cat([context, *residuals[:k]], 1))

    def log_prob(self, context: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
        """ln p(x | codes) per pixel, (B, 4, H/2, W/2) by phase; x holds integers 0..255 as floats.
        ``inside`` (1, 1, H, W) marks the image within its padding, as coding sees it."""
        base = 255 * x_hat.clamp(0, 1)
        mask = torch.ones_like(x[:, :1]) if inside is None else inside
        residuals = [(phase(x, k) - phase(base, k)) / MEAN_SCALE * phase(mask, k) for k in range(len(PHASES))]
        return torch.stack(
            [mixture_log_prob(self.params(context, k, residuals), phase(base, k), phase(x, k)) for k in range(len(PHASES))], 1
        )


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
    """One channel's table for N pixels over WINDOW + 2 symbols: 0 means "below the
    window", 1..WINDOW the window's values from ``low`` on, WINDOW + 1 "above it". A value
    outside the window is then sent uniformly among the values on its side."""

    probabilities: torch.Tensor  # (N, WINDOW + 2) float64, rows summing to one
    low: torch.Tensor  # (N,) first value of each window

    def split(self, values: torch.Tensor):
        """Values -> (symbols, and for tails with a choice to make: offsets and sizes)."""
        symbols = (values - self.low + 1).clamp(0, WINDOW + 1)
        sizes = self.tail_sizes(symbols)
        below = symbols == 0
        offsets = torch.where(below, values, values - self.low - WINDOW)
        coded = sizes >= 2
        return symbols, offsets[coded], sizes[coded]

    def tail_sizes(self, symbols: torch.Tensor) -> torch.Tensor:
        """How many values the tail of each symbol holds (0 for symbols inside the window)."""
        inside = torch.zeros_like(symbols)
        return torch.where(symbols == 0, self.low, torch.where(symbols == WINDOW + 1, 256 - WINDOW - self.low, inside))

    def join(self, symbols: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Values from the symbols and the offsets of the tails with sizes >= 2."""
        values = symbols + self.low - 1
        tail = torch.zeros_like(symbols)
        tail[self.tail_sizes(symbols) >= 2] = offsets
        values = torch.where(symbols == 0, tail, values)
        return torch.where(symbols == WINDOW + 1, self.low + WINDOW + tail, values)


class ChunkDistribution:
    """The mixture for N pixels, walked channel by channel when coding.

    ``table(c)`` gives channel c's table given the channels already pushed;
    ``push(c, values)`` records the coded values and re-weights the components.
    """

    def __init__(self, raw: torch.Tensor, base: torch.Tensor):
        mixtures = raw.shape[1] // PARAMS_PER_COMPONENT
        logits, self.means, log_scales, self.coeffs = split_params(raw, mixtures)
        self.inv_scales = torch.exp(-log_scales)
        self.weights = torch.softmax(logits.double(), 1)
        self.base = base
        self.residual = torch.zeros_like(base)
        self._window = None

    def table(self, c: int) -> WindowTable:
        mean = coupled_means(self.means, self.coeffs, self.base, self.residual, c)  # (N, K)
        centre = (self.weights * mean.double()).sum(1).round()
        low = (centre - WINDOW // 2).clamp(0, 256 - WINDOW).long()  # (N,)
        # edges of the bins "below", each value of the window, "above"; the window's outer
        # edges are infinite where it reaches 0 or 255
        edges = low.unsqueeze(1) + torch.arange(-1, WINDOW + 2) - 0.5  # (N, W+3)
        edges[:, 0] = -torch.inf
        edges[:, -1] = torch.inf
        edges[:, 1] = torch.where(low == 0, -torch.inf, edges[:, 1])
        edges[:, -2] = torch.where(low + WINDOW == 256, torch.inf, edges[:, -2])
        cdf = torch.sigmoid((edges.unsqueeze(1) - mean.unsqueeze(2)) * self.inv_scales[:, c].unsqueeze(2))  # (N, K, W+3)
        component = cdf.diff(dim=-1)  # (N, K, W+2): each component's mass per symbol
        self._window = (low, component)
        probabilities = (self.weights.float().unsqueeze(2) * component).sum(1).double()
        return WindowTable(probabilities / probabilities.sum(1, keepdim=True), low)

    def push(self, c: int, values: torch.Tensor) -> None:
        low, component = self._window
        symbols = (values - low + 1).clamp(0, WINDOW + 1)
        p = component.gather(2, symbols.view(-1, 1, 1).expand(-1, component.shape[1], 1)).squeeze(2)
        weights = self.weights * (p.double() + 1e-12)  # a tail's even split is the same factor for every component
        self.weights = weights / weights.sum(1, keepdim=True)
        self.residual[:, c] = values.to(self.base.dtype) - self.base[:, c]


CodeChannel = Callable[[WindowTable, int, int, torch.Tensor], torch.Tensor]


def code_pixels(model: PixelModel, context, x_hat, size: tuple[int, int], code_channel: CodeChannel) -> torch.Tensor:
    """Walk phases, chunks of pixels and channels, in the order both directions share.

    ``code_channel(table, phase_index, channel, positions)`` encodes or decodes one
    channel of a chunk (positions index the flattened phase grid) and returns its values.
    Returns the coded image (1, 3, H, W) as floats, zero outside ``size``.
    """
    height, width = size
    base = 255 * x_hat.clamp(0, 1)
    image = torch.zeros_like(base)
    residuals = []
    for k, (di, dj) in enumerate(PHASES):
        raw = model.params(context, k, residuals)[0].flatten(1).T  # (h*w, 10K)
        phase_base = phase(base, k)[0].flatten(1).T  # (h*w, 3)
        h, w = phase(base, k).shape[-2:]
        rows = torch.arange(h).unsqueeze(1) * 2 + di < height
        cols = torch.arange(w).unsqueeze(0) * 2 + dj < width
        valid = (rows & cols).flatten().nonzero().squeeze(1)
        coded = torch.zeros(h * w, 3)
        for positions in valid.split(CHUNK):
            chunk = ChunkDistribution(raw[positions], phase_base[positions])
            for c in range(3):
                values = code_channel(chunk.table(c), k, c, positions)
                chunk.push(c, values)
                coded[positions, c] = values.float()
        coded = coded.T.reshape(1, 3, h, w)
        image[..., di::2, dj::2] = coded
        residuals.append((coded - phase(base, k)) / MEAN_SCALE * (rows & cols).float())
    return image
