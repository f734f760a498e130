"""The pixel likelihood's networks in exact fixed point on numpy arrays (``pixel_tables.ExactPixelModel``'s),
channels last: the context from the codes, and each coarse-to-fine step's raw mixture parameters."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import fixed, graph
from ..entropy import PIXEL_PROBABILITY_BITS
from ..graph import BLOCK, STEPS
from ..point import MAX_TOLERANCE
from . import kernels, network

WINDOW = 64  # values per table computed exactly
MEAN_SCALE_INT = 32  # raw mean outputs are in units of 32 grey levels around x_hat (pixel_model.MEAN_SCALE)


def pixel_unshuffle(x: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) -> (H / r, W / r, C * r^2), torch's pixel_unshuffle channels last (channel c * r^2 + i * r + j)."""
    h, w, c = x.shape
    return (
        x.reshape(h // factor, factor, w // factor, factor, c)
        .transpose(0, 2, 4, 1, 3)
        .reshape(h // factor, w // factor, c * factor * factor)
    )


def folded_neighbours(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weights of a 3x3 convolution over 4x4-folded inputs (``pixel_unshuffle``) that computes the folded
    output of a 5x5 convolution at full resolution: the same products, a sixteenth of the positions."""
    out_channels, in_channels, k, _ = weight.shape
    reach = k // 2
    folded = np.zeros((out_channels, BLOCK * BLOCK, in_channels, BLOCK * BLOCK, 3, 3), dtype=weight.dtype)
    for pi, pj, qi, qj, by, bx in itertools.product(
        range(BLOCK), range(BLOCK), range(BLOCK), range(BLOCK), (-1, 0, 1), (-1, 0, 1)
    ):
        dy, dx = BLOCK * by + qi - pi, BLOCK * bx + qj - pj
        if abs(dy) <= reach and abs(dx) <= reach:
            folded[:, pi * BLOCK + pj, :, qi * BLOCK + qj, by + 1, bx + 1] = weight[:, :, dy + reach, dx + reach]
    return folded.reshape(out_channels * BLOCK * BLOCK, in_channels * BLOCK * BLOCK, 3, 3), np.repeat(
        bias, BLOCK * BLOCK
    )


class ExactPixelModel:
    """A model's pixel likelihood (its arrays under "pixels.") in exact fixed point: integer counts of 2^-FRAC
    in float64 arrays, in and out."""

    def __init__(self, arrays: Mapping[str, np.ndarray], feature_channels: int, mixtures: int, hidden: int):
        named = graph.pixel_likelihood(feature_channels, mixtures, hidden)
        self.inputs = network.exact_layers(named["inputs"], arrays, "pixels.inputs.")
        weight, bias = folded_neighbours(arrays["pixels.neighbours.weight"], arrays["pixels.neighbours.bias"])
        folded = {"pixels.neighbours.weight": weight, "pixels.neighbours.bias": bias}
        self.neighbours = network.exact_layers(
            graph.Conv(weight.shape[1], weight.shape[0], 3), folded, "pixels.neighbours."
        )
        self.steps = [
            network.exact_layers(named[f"steps.{s}"], arrays, f"pixels.steps.{s}.") for s in range(len(STEPS))
        ]

    def context(self, features: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        """The steps' shared input (H / 4, W / 4, hidden) from the synthesis' last features (H / 2, W / 2, F) and
        image (H, W, 3), all fixed point."""
        return network.run(
            self.inputs, np.concatenate([pixel_unshuffle(features, 2), pixel_unshuffle(x_hat, BLOCK)], -1)
        )

    def params(self, context: np.ndarray, step: int, residual: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """Raw mixture parameters (H / 4, W / 4, len(step), 10K) of a step's positions, from the fixed-point
        residuals (x - x_hat) / MEAN_SCALE (H, W, 3), of which it sees those known before the step, and ``inside``
        (H, W), 1 in the image and 0 in its padding."""
        h, w = inside.shape
        known = np.tile(graph.known_before(step), (h // BLOCK, w // BLOCK)).astype(np.float64) * inside
        residual = pixel_unshuffle(residual * known[..., None], BLOCK)
        known = pixel_unshuffle((known * fixed.SCALE)[..., None], BLOCK)
        local = network.run(self.neighbours, np.concatenate([residual, known], -1))  # already folded
        raw = network.run(self.steps[step], np.concatenate([context, residual, local], -1))
        return raw.reshape(*raw.shape[:2], len(STEPS[step]), -1)

    def base(self, x_hat: np.ndarray) -> np.ndarray:
        """The image the residuals are taken from: 255 x_hat in fixed point."""
        return 255 * np.clip(x_hat, 0, ONE)

    def residual(self, image: np.ndarray, base: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """What ``params`` reads of the pixels coded so far (int64 8-bit values, zero where not yet coded)."""
        return np.floor((image * ONE - base) / MEAN_SCALE_INT + 0.5) * inside[..., None]

    def distribution(self, raw: np.ndarray, base: np.ndarray, tolerance: int) -> ChunkDistribution:
        """The mixture of N pixels from their raw parameters (N, 10K) and bases (N, 3)."""
        return ChunkDistribution(raw, base, tolerance)


# ---- the integer tables (``pixel_tables``' on numpy) ---------------------------------------------------------

ONE = 1 << fixed.FRAC  # one grey level, in fixed point
WEIGHT_BITS = 16  # mixture weights sum to about 2^16
T_FRAC = 16  # the logistic's argument enters the sigmoid table in counts of 2^-16
TABLE_ROWS = 2048  # pixels whose tables are built at once


@dataclass
class WindowTable:
    """``pixel_tables.WindowTable`` on numpy arrays: one channel's table for N pixels over B + 2 symbols, 0 "below
    the window", 1..B its bins of ``width`` values from ``low`` on, B + 1 "above it"."""

    low: np.ndarray  # (N,) int64
    frequencies: np.ndarray  # (N, B + 2)
    width: int = 1
    value_masses: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def bins(self) -> int:
        return self.frequencies.shape[1] - 2

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        return (values - self.low) // self.width

    def split(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bins = self.bin_of(values)
        symbols = np.clip(bins + 1, 0, self.bins + 1)
        sizes = self.tail_sizes(symbols)
        offsets = np.where(symbols == 0, bins + self._bins_below(), bins - self.bins)
        coded = sizes >= 2
        return symbols, offsets[coded], sizes[coded]

    def _bins_below(self) -> np.ndarray:
        return (self.low + self.width - 1) // self.width

    def tail_sizes(self, symbols: np.ndarray) -> np.ndarray:
        above = (256 - self.low - self.bins * self.width + self.width - 1) // self.width
        inside = np.zeros_like(symbols)
        return np.where(symbols == 0, self._bins_below(), np.where(symbols == self.bins + 1, above, inside))

    def join(self, symbols: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        tail = np.zeros_like(symbols)
        tail[self.tail_sizes(symbols) >= 2] = offsets
        bins = np.where(
            symbols == 0, tail - self._bins_below(), np.where(symbols == self.bins + 1, self.bins + tail, symbols - 1)
        )
        return self.reconstruct(bins)

    def reconstruct(self, bins: np.ndarray) -> np.ndarray:
        first = self.low + bins * self.width
        if self.width == 1:
            return first
        assert self.value_masses is not None
        middle = (np.maximum(first, 0) + np.minimum(first + self.width - 1, 255)) // 2
        inside = (bins >= 0) & (bins < self.bins)
        mass = self.value_masses(np.clip(bins, 0, self.bins - 1))
        total = mass.sum(1)
        weighted = (mass * np.arange(self.width)).sum(1)
        mean = first + (2 * weighted + total) // (2 * np.maximum(total, 1))
        return np.where(inside & (total > 0), mean, middle)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        return values if self.width == 1 else self.reconstruct(self.bin_of(values))


class ChunkDistribution:
    """``pixel_tables.ChunkDistribution`` on numpy arrays: the mixture for N pixels, walked channel by channel."""

    def __init__(self, raw: np.ndarray, base: np.ndarray, tolerance: int = 0):
        k = raw.shape[1] // graph.PARAMS_PER_COMPONENT
        raw = raw.astype(np.int64)
        logits, means, log_scales, coeffs = np.split(raw, [k, 4 * k, 7 * k], axis=1)
        shape = (raw.shape[0], 3, k)
        self.means = MEAN_SCALE_INT * means.reshape(shape)
        log_scales = np.clip(log_scales.reshape(shape), -6 * ONE, 4 * ONE) + 2 * ONE
        self.inv_scales = fixed.tables()["inv_scale"](log_scales, fixed.FRAC)  # counts of 2^-20
        self.coeffs = fixed.tanh(coeffs.reshape(shape))
        self.weights = _normalized(fixed.softmax_weights(logits))
        self.base = base.astype(np.int64)
        self.residual = np.zeros_like(self.base)
        self.tolerance = tolerance
        self.width, self.bins = window_bins(tolerance)
        self._window: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def mean(self, c: int) -> np.ndarray:
        mean = self.base[:, c, None] + self.means[:, c]
        coupled = [(0, 0)] if c == 1 else [(1, 0), (2, 1)] if c == 2 else []
        for coeff, channel in coupled:
            product = self.coeffs[:, coeff] * self.residual[:, channel, None]
            mean = mean + (product + ONE // 2) // ONE
        return mean

    def table(self, c: int, map_blocks: Callable = map) -> WindowTable:
        mean = self.mean(c)
        weighted = (self.weights * mean).sum(1)
        total = self.weights.sum(1)
        centre = (2 * weighted + total * ONE) // (2 * total * ONE)
        span = self.bins * self.width
        low = np.clip(centre - (self.bins // 2) * self.width - self.tolerance, 0, 256 - span)
        inv_scale = self.inv_scales[:, c]
        first = ((low * ONE - ONE // 2)[:, None] - mean) * inv_scale  # (N, K), int64
        step = ((ONE * inv_scale).T.astype(np.float64) * 2.0**-16)[:, :, None]  # (K, N, 1)
        first = (first.T.astype(np.float64) * 2.0**-16)[:, :, None]
        self._window = (low, first, step)
        edges = _edge_steps(self.bins, self.width)
        frequencies = np.empty((len(low), len(edges) - 1))

        def fill(rows: slice) -> None:
            mass = _window_masses(first[:, rows], step[:, rows], self.weights[rows], edges, low[rows], span)
            fixed.frequencies(mass, PIXEL_PROBABILITY_BITS, out=frequencies[rows])

        list(map_blocks(fill, [slice(s, s + TABLE_ROWS) for s in range(0, len(low), TABLE_ROWS)]))
        value_masses = None
        if self.width > 1:
            value_masses = functools.partial(self._value_masses, low, first, step, self.weights)
        return WindowTable(low, frequencies, self.width, value_masses)

    def _value_masses(self, low, first, step, weights, bins: np.ndarray) -> np.ndarray:
        edges = (bins[:, None] * self.width + np.arange(self.width + 1)).astype(np.float64)
        return _window_masses(first, step, weights, edges, low, self.bins * self.width).astype(np.int64)

    def push(self, c: int, values: np.ndarray) -> None:
        assert self._window is not None
        low, first, step = self._window
        symbols = np.clip((values - low) // self.width + 1, 0, self.bins + 1)
        edges = _edge_steps(self.bins, self.width)[np.stack([symbols, symbols + 1], 1)]  # (N, 2)
        cdf = _window_cdf(first, step, edges, low, self.bins * self.width)
        p = (cdf[..., 1] - cdf[..., 0]).T.astype(np.int64)
        self.weights = _normalized(((self.weights * p) >> 14) + 1)
        self.residual[:, c] = values * ONE - self.base[:, c]


def window_bins(tolerance: int) -> tuple[int, int]:
    """``pixel_tables.window_bins``: (values per bin, bins per window) for a tolerance."""
    if not 0 <= tolerance <= MAX_TOLERANCE:
        raise ValueError(f"a tolerance is 0 to {MAX_TOLERANCE}, got {tolerance}")
    width = 2 * tolerance + 1
    return (1, WINDOW) if width == 1 else (width, (WINDOW // width) | 1)


@functools.cache
def _edge_steps(bins: int, width: int) -> np.ndarray:
    inner = np.arange(bins + 1, dtype=np.float64) * width
    return np.concatenate([[-math.inf], inner, [math.inf]])


def _window_masses(first, step, weights, edges, low, span: int) -> np.ndarray:
    cdf = _window_cdf(first, step, edges, low, span).astype(np.float64)  # (K, N, E)
    weights = weights.T.astype(np.float64)[:, :, None]
    mixed = cdf[0] * weights[0]
    for k in range(1, cdf.shape[0]):
        mixed += cdf[k] * weights[k]
    return np.floor(np.diff(mixed, axis=-1) * 2.0**-WEIGHT_BITS)


def _window_cdf(first: np.ndarray, step: np.ndarray, k: np.ndarray, low: np.ndarray, span: int) -> np.ndarray:
    k = _window_ends(k, low, span)
    sigmoid = fixed.tables()["sigmoid"]
    bottom, top = float(sigmoid.low << T_FRAC), float(sigmoid.high << T_FRAC)
    t = np.clip((first - bottom) + k * step, 0, top - bottom)
    return sigmoid.above_low(t.astype(np.int64), T_FRAC)


def _window_ends(k: np.ndarray, low: np.ndarray, span: int) -> np.ndarray:
    at_bottom, at_top = (low == 0)[:, None], (low + span == 256)[:, None]
    if not (at_bottom.any() or at_top.any()):
        return k
    k = np.broadcast_to(k, (len(low), k.shape[-1]))
    return np.where(at_bottom & (k == 0), -math.inf, np.where(at_top & (k == span), math.inf, k))


def _normalized(weights: np.ndarray) -> np.ndarray:
    return (weights << WEIGHT_BITS) // weights.sum(1, keepdims=True)


# ---- the pixel layer's walk (``pixel_codec`` on numpy) -------------------------------------------------------

CHUNK = 1 << 14  # pixels per batch of tables

CodeChannel = Callable[[WindowTable, int, int, np.ndarray], np.ndarray]


def fold(x: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (16, H / 4 * W / 4, C): every pixel by its position di * 4 + dj in its block."""
    h, w, c = x.shape
    grid = pixel_unshuffle(x, BLOCK).reshape(h // BLOCK, w // BLOCK, c, BLOCK * BLOCK)
    return grid.transpose(3, 0, 1, 2).reshape(BLOCK * BLOCK, -1, c)


def code_pixels(
    model: ExactPixelModel | Any,
    context: np.ndarray,
    x_hat: np.ndarray,
    size: tuple[int, int],
    code_channel: CodeChannel,
    on_position: Callable[[], None] | None = None,
    tolerance: int = 0,
) -> np.ndarray:
    """``pixel_codec.code_pixels``: walk steps, block positions, channels and chunks of pixels in the order both
    directions share; ``code_channel(table, position, channel, pixels)`` encodes or decodes one channel of a chunk
    and returns its decoded values. Returns the image (H, W, 3) of 8-bit values as int64, zero outside ``size``."""
    base = model.base(x_hat)
    height, width = base.shape[:2]
    inside = np.zeros((height, width))
    inside[: size[0], : size[1]] = 1
    folded_base = fold(base)
    folded_inside = fold(inside[..., None])[..., 0] > 0
    image = np.zeros((height, width, 3), dtype=np.int64)
    for s, step in enumerate(STEPS):
        raw = model.params(context, s, model.residual(image, base, inside), inside)
        for i, (di, dj) in enumerate(step):
            p = di * BLOCK + dj
            step_raw = raw[:, :, i].reshape(-1, raw.shape[-1])
            positions = np.flatnonzero(folded_inside[p])
            pieces = [positions[k : k + CHUNK] for k in range(0, len(positions), CHUNK)]
            chunks = [model.distribution(step_raw[px], folded_base[p][px], tolerance) for px in pieces]
            coded = np.zeros((len(step_raw), 3), dtype=np.int64)
            for c in range(3):
                for px, chunk in zip(pieces, chunks):
                    coded[px, c] = code_channel(chunk.table(c, kernels.map_in_threads), p, c, px)
                    chunk.push(c, coded[px, c])
            image[di::BLOCK, dj::BLOCK] = coded.reshape(height // BLOCK, width // BLOCK, 3)
            if on_position:
                on_position()
    return image


class PixelCodec:
    """``pixel_codec.PixelCodec`` on numpy arrays: a tile's 8-bit pixels given the exact synthesis' last features
    (H / 2, W / 2, F) and image (H, W, 3), exactly or within 2 * tolerance. ``model``: an ``ExactPixelModel``, or
    a ``lowbit_pixels.LowbitPixelModel`` (lossless format 2), which offer the same methods."""

    def __init__(self, model: ExactPixelModel | Any, tolerance: int = 0):
        window_bins(tolerance)
        self.model, self.tolerance = model, tolerance

    def compress(
        self, features: np.ndarray, x_hat: np.ndarray, x: np.ndarray, size: tuple[int, int], stream, recorder=None
    ) -> None:
        """Encode the pixels (H, W, 3), 8-bit values, of the top-left ``size`` into ``stream``."""
        folded = fold(np.asarray(x, dtype=np.int64))

        def encode(table: WindowTable, position: int, c: int, pixels: np.ndarray) -> np.ndarray:
            values = folded[position, pixels, c]
            symbols, tail_offsets, tail_sizes = table.split(values)
            stream.encode(symbols, table.frequencies)
            if len(tail_sizes):
                stream.encode_uniform(tail_offsets, tail_sizes)
            return table.quantize(values)

        self._code(features, x_hat, size, encode, recorder)

    def decompress(
        self, features: np.ndarray, x_hat: np.ndarray, size: tuple[int, int], stream, recorder=None
    ) -> np.ndarray:
        """The pixels (H, W, 3), int64 8-bit values inside the top-left ``size`` and 0 outside it."""

        def decode(table: WindowTable, position: int, c: int, pixels: np.ndarray) -> np.ndarray:
            frequencies = table.frequencies
            symbols = stream.decode(frequencies)
            tail_sizes = table.tail_sizes(symbols)
            tail_sizes = tail_sizes[tail_sizes >= 2]
            offsets = stream.decode_uniform(tail_sizes)
            if recorder is not None:
                recorder.record(frequencies, symbols)
                recorder.record((np.arange(256) < tail_sizes[:, None]).astype(np.float64), offsets)
            return table.join(symbols, offsets)

        return self._code(features, x_hat, size, decode, recorder)

    def _code(self, features, x_hat, size, code_channel: CodeChannel, recorder) -> np.ndarray:
        on_position = None if recorder is None else recorder.advance
        context = self.model.context(features, x_hat)
        return code_pixels(self.model, context, x_hat, size, code_channel, on_position, self.tolerance)
