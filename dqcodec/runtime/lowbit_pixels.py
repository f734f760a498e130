"""The low-bit pixel likelihood of lossless format 2 (issue 31) on numpy arrays, channels last: its networks in
float32 matrix products of small integers (``lowbit``), and its mixtures' tables read from a bank of
precomputed distributions (``bank``), selected by each component's log-scale and the sixteenth of its mean.

It offers what ``pixels.code_pixels`` walks (``params``, ``base``, ``residual``, ``distribution``), so files code
by the same walk, symbols and tails as format 1's; what differs is how each table is computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import fixed, graph, lowbit
from ..entropy import PIXEL_PROBABILITY_BITS
from ..graph import STEPS
from . import kernels
from .pixels import ONE, WindowTable, pixel_unshuffle, window_bins

LOG_SCALE_FRAC = 4  # pixel_model.LOG_SCALE_FRAC: log-scales in steps of 1/16 over [-4, 6]
LOG_SCALES = 10 << LOG_SCALE_FRAC  # log-scale -4 is row 0, 6 is row 160
MEAN_FRAC = 4  # pixel_model.MEAN_FRAC: means in sixteenths of a grey level
COEFF_FRAC = 8  # pixel_model.COEFF_FRAC
REACH = 320  # a window may start up to 320 grey levels either side of a component's mean (beyond, it is moved in)
SPAN = 128  # and reaches at most this far past its start (64 values, or fewer bins of up to 31 values)
CDF_BITS = 20  # the bank's CDFs are counts of 2^-20
WEIGHT_BITS = 16  # mixture weights sum to about 2^16
MIXED_BITS = 31  # mixed CDFs are counts of 2^-31, so a bin's mass stays below 2^(52 - PIXEL_PROBABILITY_BITS)
MIXED_SHIFT = CDF_BITS + WEIGHT_BITS - MIXED_BITS


class LowbitConv:
    """A convolution of activations on the grid 2^-input_frac (float32 integers, channels last) to the next grid:
    through GELU (``gelu_frac``), or as it is to ``output_frac`` within ``limit``."""

    def __init__(
        self,
        integers: np.ndarray,
        exponents: np.ndarray,
        bias: np.ndarray,
        input_frac: int,
        input_limits: np.ndarray,
        gelu_frac: int | None = None,
        output_frac: int = 0,
        limit: int = lowbit.ACTIVATION_LIMIT,
    ):
        self.kernel = integers.shape[-1]
        bias_sums = lowbit.integer_bias(bias, exponents, input_frac)
        blocks = lowbit.channel_blocks(integers, bias_sums, input_limits)
        self.parts = [
            (
                block,
                kernels.conv_weight(integers[:, block].astype(np.float32)),
                bias_sums.astype(np.float32) if i == 0 else None,
            )
            for i, block in enumerate(blocks)
        ]
        target = lowbit.PRE_ACTIVATION_FRAC if gelu_frac is not None else output_frac
        self.shifts = exponents + input_frac - target
        self.gelu_frac = gelu_frac
        self.limit = lowbit.PRE_ACTIVATION_LIMIT if gelu_frac is not None else limit

    @classmethod
    def of(
        cls, weight: np.ndarray, bias: np.ndarray, input_frac: int, input_limits: np.ndarray, **kwargs
    ) -> LowbitConv:
        """From a model file's float weights, rounded as ``lowbit.integer_weights`` does."""
        integers, exponents = lowbit.integer_weights(weight)
        return cls(integers, exponents, bias, input_frac, input_limits, **kwargs)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        sums: np.ndarray | None = None
        for block, weight, bias in self.parts:
            inputs = x if len(self.parts) == 1 else np.ascontiguousarray(x[..., block])
            part = kernels.conv2d(inputs, weight, bias, self.kernel, 1, self.kernel // 2)
            sums = part if sums is None else sums.astype(np.float64) + part
        assert sums is not None
        out = lowbit.requantize(sums, self.shifts, self.limit)
        if self.gelu_frac is not None:
            out = lowbit.gelu(out, self.gelu_frac)
        return out.astype(np.float32)


def _limits(count: int, limit: int = lowbit.ACTIVATION_LIMIT) -> np.ndarray:
    return np.full(count, float(limit))


class LowbitPixelModel:
    """A model's low-bit pixel likelihood (its arrays under "pixels.", ``DQConfig.pixel_grids``)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], feature_channels: int, mixtures: int, hidden: int, grids):
        plan = lowbit.Plan(list(grids), len(STEPS))
        self.inputs_frac = plan.inputs_frac
        named = graph.pixel_likelihood(feature_channels, mixtures, hidden)
        frac = lowbit.STEP_INPUT_FRAC

        def conv(name: str, **kwargs) -> LowbitConv:
            weight, bias = arrays[f"pixels.{name}.weight"], arrays[f"pixels.{name}.bias"]
            return LowbitConv.of(weight, bias, **kwargs)

        inputs = named["inputs"]
        assert isinstance(inputs, graph.Conv)
        self.inputs = conv("inputs", input_frac=plan.inputs_frac, input_limits=_limits(inputs.cin), output_frac=frac)
        # the 5x5 convolution over the residuals (x - base) / 32 and the 0-or-1 mask, on 2^-6, at full resolution
        residual_limit, known = 2 * 255, 1 << frac
        self.neighbours = conv(
            "neighbours", input_frac=frac, input_limits=np.array([residual_limit] * 3 + [known]), output_frac=frac
        )
        step_inputs = hidden + 3 * graph.BLOCK**2 + graph.NEIGHBOUR_FEATURES * graph.BLOCK**2
        self.steps = []
        for s, (first, second) in enumerate(plan.hidden_fracs):
            self.steps.append(
                (
                    conv(f"steps.{s}.0", input_frac=frac, input_limits=_limits(step_inputs), gelu_frac=first),
                    conv(f"steps.{s}.2", input_frac=first, input_limits=_limits(hidden), gelu_frac=second),
                    conv(
                        f"steps.{s}.4",
                        input_frac=second,
                        input_limits=_limits(hidden),
                        output_frac=lowbit.OUTPUT_FRAC,
                        limit=lowbit.OUTPUT_LIMIT,
                    ),
                )
            )

    def context(self, features: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        """The steps' shared input (H / 4, W / 4, hidden) on the grid 2^-6, from the exact synthesis' last features
        (H / 2, W / 2, F) and image (H, W, 3), fixed point (counts of 2^-12)."""
        inputs = np.concatenate([pixel_unshuffle(features, 2), pixel_unshuffle(x_hat, graph.BLOCK)], -1)
        on_grid = lowbit.requantize(inputs, np.int64(fixed.FRAC - self.inputs_frac), lowbit.ACTIVATION_LIMIT)
        return self.inputs(on_grid.astype(np.float32))

    def base(self, x_hat: np.ndarray) -> np.ndarray:
        """Whole grey levels: 255 x_hat rounded half up, within 0..255 (int64)."""
        return np.clip((255 * x_hat.astype(np.int64) + ONE // 2) >> fixed.FRAC, 0, 255)

    def residual(self, image: np.ndarray, base: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """(x - base) / 32 on the grid 2^-6 where pixels are inside (float32); ``params`` masks what is unknown."""
        return ((image - base) * 2 * inside[..., None]).astype(np.float32)

    def params(self, context: np.ndarray, step: int, residual: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """Raw mixture parameters (H / 4, W / 4, len(step), 10K), counts of 2^-9, of a step's positions."""
        h, w = inside.shape
        known = (np.tile(graph.known_before(step), (h // graph.BLOCK, w // graph.BLOCK)) * inside).astype(np.float32)
        residual = residual * known[..., None]
        local = self.neighbours(np.concatenate([residual, (known * (1 << lowbit.STEP_INPUT_FRAC))[..., None]], -1))
        folded = [pixel_unshuffle(residual, graph.BLOCK), pixel_unshuffle(local, graph.BLOCK)]
        first, second, last = self.steps[step]
        raw = last(second(first(np.concatenate([context, *folded], -1))))
        return raw.reshape(*raw.shape[:2], len(STEPS[step]), -1)

    def distribution(self, raw: np.ndarray, base: np.ndarray, tolerance: int) -> BankDistribution:
        return BankDistribution(raw, base, tolerance)


# ---- the bank of distributions and the mixtures read from it ------------------------------------------------


@functools.lru_cache(maxsize=1)
def bank() -> np.ndarray:
    """CDFs of the discretized logistic, counts of 2^-20 (int32), flat: entry ((scale * 16 + phase) * COLUMNS + d)
    is P(value < m + d - REACH) for a logistic of log-scale (scale / 16 - 4) and mean m + phase / 16. Integer
    arithmetic on the shipped tables alone (the inverse scale and the sigmoid, as format 1's), so every machine
    builds the same bank."""
    tables = fixed.tables()
    log_scales = (np.arange(LOG_SCALES + 1, dtype=np.int64) - (4 << LOG_SCALE_FRAC)) << (fixed.FRAC - LOG_SCALE_FRAC)
    inv_scale = tables["inv_scale"](log_scales, fixed.FRAC)  # counts of 2^-20
    phase = np.arange(1 << MEAN_FRAC, dtype=np.int64)
    offset = np.arange(-REACH, REACH + SPAN + 1, dtype=np.int64)
    # the edge below value m + d lies d - 1/2 - phase / 16 from the mean: in sixteenths, 16 d - 8 - phase
    distance = (offset[None, :] << MEAN_FRAC) - (1 << (MEAN_FRAC - 1)) - phase[:, None]  # (16, COLUMNS)
    argument = (distance[None] * inv_scale[:, None, None]) >> (MEAN_FRAC + 20 - T_FRAC)  # counts of 2^-16
    sigmoid = tables["sigmoid"]
    cdf = sigmoid(argument, T_FRAC)  # counts of 2^-30
    return ((cdf + (1 << 9)) >> 10).reshape(-1).astype(np.int32)


T_FRAC = 16  # the sigmoid's argument in counts of 2^-16
COLUMNS = 2 * REACH + SPAN + 1


class BankDistribution:
    """The mixture of N pixels (``pixels.ChunkDistribution``'s interface): integer parameters on the bank's grids,
    each channel's table a weighted sum of bank rows over its window's edges, walked channel by channel."""

    def __init__(self, raw: np.ndarray, base: np.ndarray, tolerance: int = 0):
        k = raw.shape[1] // graph.PARAMS_PER_COMPONENT
        raw = raw.astype(np.int64)
        logits, means, log_scales, coeffs = np.split(raw, [k, 4 * k, 7 * k], axis=1)
        shape = (raw.shape[0], 3, k)
        shift = lowbit.OUTPUT_FRAC - LOG_SCALE_FRAC
        clamped = np.clip(log_scales.reshape(shape), -6 << lowbit.OUTPUT_FRAC, 4 << lowbit.OUTPUT_FRAC)
        # log-scale + 2 in sixteenths, then its row: -4 is row 0
        self.scale_rows = ((clamped + (1 << (shift - 1))) >> shift) + (2 << LOG_SCALE_FRAC) + (4 << LOG_SCALE_FRAC)
        self.means = means.reshape(shape)  # counts of 2^-9 of 32 grey levels: sixteenths of a grey level
        tanh = fixed.tanh(coeffs.reshape(shape) << (fixed.FRAC - lowbit.OUTPUT_FRAC))  # counts of 2^-12
        self.coeffs = (tanh + (1 << 3)) >> (fixed.FRAC - COEFF_FRAC)
        self.weights = _normalized(fixed.softmax_weights(logits << (fixed.FRAC - lowbit.OUTPUT_FRAC)))
        self.base = base.astype(np.int64)
        self.residual = np.zeros_like(self.base)
        self.tolerance = tolerance
        self.width, self.bins = window_bins(tolerance)
        self._rows: tuple[np.ndarray, np.ndarray] | None = None
        self._low: np.ndarray | None = None

    def mean(self, c: int) -> np.ndarray:
        """Each component's mean (N, K) of channel c in sixteenths of a grey level."""
        mean = (self.base[:, c, None] << MEAN_FRAC) + self.means[:, c]
        coupled = [(0, 0)] if c == 1 else [(1, 0), (2, 1)] if c == 2 else []
        for coeff, channel in coupled:
            product = self.coeffs[:, coeff] * self.residual[:, channel, None]  # counts of 2^-8
            mean = mean + ((product + (1 << 3)) >> (COEFF_FRAC - MEAN_FRAC))
        return mean

    def table(self, c: int, map_blocks: Callable = map) -> WindowTable:
        mean = np.clip(self.mean(c), -REACH << MEAN_FRAC, (255 + REACH) << MEAN_FRAC)
        whole, phase = mean >> MEAN_FRAC, mean & ((1 << MEAN_FRAC) - 1)
        rows = (self.scale_rows[:, c] * (1 << MEAN_FRAC) + phase) * COLUMNS + REACH  # + value - whole: the entry
        self._rows = (rows, whole)
        total = self.weights.sum(1)
        centre = (2 * (self.weights * mean).sum(1) + (total << MEAN_FRAC)) // (total << (MEAN_FRAC + 1))
        span = self.bins * self.width
        low = np.clip(centre - (self.bins // 2) * self.width - self.tolerance, 0, 256 - span)
        self._low = low
        cdf = self.mixed_cdf(self.window_cdf(low, self.bins + 1, self.width))  # at the window's bins' edges
        ends = np.zeros((len(low), 1), dtype=np.int64), np.full((len(low), 1), 1 << MIXED_BITS, dtype=np.int64)
        masses = np.diff(np.concatenate([ends[0], cdf, ends[1]], 1), axis=1)
        frequencies = fixed.frequencies(masses, PIXEL_PROBABILITY_BITS)
        value_masses = None
        if self.width > 1:
            value_masses = functools.partial(self._value_masses, low)
        return WindowTable(low, frequencies, self.width, value_masses)

    def window_cdf(self, start: np.ndarray, count: int, stride: int) -> np.ndarray:
        """P_k(value < v) (N, K, count), counts of 2^-20, at the values v = start + i * stride (start (N,)): each
        component's run of bank entries, read as one slice of its row (a window more than REACH from a component's
        mean reads the bank as if it were REACH away). 0 at 0 and 1 at 256, the image's ends."""
        assert self._rows is not None
        rows, whole = self._rows
        first = rows + np.clip(start[:, None] - whole, -REACH, REACH)  # (N, K)
        flat = bank()
        runs = as_strided(flat, (len(flat) - (count - 1) * stride, count), (flat.strides[0], flat.strides[0] * stride))
        cdf = runs[first]
        cdf[start <= 0, :, 0] = 0
        cdf[start + (count - 1) * stride >= 256, :, -1] = 1 << CDF_BITS
        return cdf

    def component_cdf(self, values: np.ndarray) -> np.ndarray:
        """P_k(value < v) (N, K, E), counts of 2^-20, for any values (N, E) (as ``window_cdf`` reads them)."""
        assert self._rows is not None
        rows, whole = self._rows
        entries = rows[:, :, None] + np.clip(values[:, None, :] - whole[:, :, None], -REACH, REACH + SPAN)
        cdf = bank()[entries]
        cdf = np.where(values[:, None, :] <= 0, 0, cdf)
        return np.where(values[:, None, :] >= 256, 1 << CDF_BITS, cdf)

    def mixed_cdf(self, cdf: np.ndarray) -> np.ndarray:
        """The mixture's P(value < v) (N, E), counts of 2^-31, from its components' (N, K, E)."""
        mixed = cdf[:, 0] * self.weights[:, :1]
        for k in range(1, cdf.shape[1]):
            mixed += cdf[:, k] * self.weights[:, k : k + 1]
        return mixed >> MIXED_SHIFT

    def _value_masses(self, low: np.ndarray, bins: np.ndarray) -> np.ndarray:
        return np.diff(self.mixed_cdf(self.window_cdf(low + bins * self.width, self.width + 1, 1)), axis=1)

    def push(self, c: int, values: np.ndarray) -> None:
        """Re-weight the components by the coded values' bins (or tails) of channel c."""
        assert self._low is not None
        low, span = self._low, self.bins * self.width
        bins = np.clip((values - low) // self.width, -1, self.bins)
        start = np.where(bins < 0, 0, np.where(bins >= self.bins, low + span, low + bins * self.width))
        end = np.where(bins < 0, low, np.where(bins >= self.bins, 256, start + self.width))
        cdf = self.component_cdf(np.stack([start, end], 1))
        p = cdf[..., 1] - cdf[..., 0]  # (N, K), counts of 2^-20
        self.weights = _normalized(((self.weights * p) >> 20) + 1)
        self.residual[:, c] = values - self.base[:, c]


def _normalized(weights: np.ndarray) -> np.ndarray:
    return (weights << WEIGHT_BITS) // weights.sum(1, keepdims=True)
