"""Low-bit exact arithmetic for the pixel likelihood of lossless format 2 (issue 31): integer weights of at most
8 bits and 10-bit activations, whose sums float32 holds exactly, and mixture tables read from a bank of
precomputed distributions instead of evaluated edge by edge. numpy only: the training side (``pixel_model``'s
fake quantization) and the coder (``runtime.lowbit_pixels``) use these definitions, so they cannot drift apart.

The arithmetic, layer by layer:

* An activation is an integer count of 2^-f on its grid (``Grid``), within ±ACTIVATION_LIMIT.
* A convolution's weights are integers of at most WEIGHT_LIMIT in magnitude, each output channel j with its own
  power-of-two step 2^-e_j (``weight_exponents``). The model file stores them exactly as those multiples.
* A layer's sums, in counts of 2^-(e_j + f), are whole numbers. Float32 holds every whole number below 2^24, so
  a float32 matrix product of such integers is exact in any summation order, with or without fused
  multiply-adds, as long as the sum of the absolute values of every output's terms (``channel_terms``) stays
  below 2^24. ``channel_blocks`` splits a layer's input channels into blocks that each keep that bound; the
  blocks' sums are added in float64, which is exact too.
* A sum goes to the next grid by a power of two and ``floor(· + 1/2)`` in float64, exact (``requantize``), then
  through GELU (a table over the pre-activation grid, read from the shipped correctly rounded one) or as it is.
"""

from __future__ import annotations

import functools

import numpy as np

from . import fixed
from .errors import FixedPointError

WEIGHT_LIMIT = 127  # weights are integers in [-127, 127] times their output channel's power-of-two step
ACTIVATION_BITS = 10
ACTIVATION_LIMIT = (1 << (ACTIVATION_BITS - 1)) - 1  # activations are integers in [-511, 511] on their grid
FLOAT32_EXACT = 1 << 24  # float32 holds every integer below this exactly
PRE_ACTIVATION_FRAC = 8  # a GELU's input: counts of 2^-8 within [-8, 8)
PRE_ACTIVATION_LIMIT = 8 << PRE_ACTIVATION_FRAC
STEP_INPUT_FRAC = 6  # the step nets' inputs (context, residuals, neighbours) share the grid 2^-6: the residuals,
# multiples of 1/32 (grey levels / MEAN_SCALE) within ±8, are exact on it
OUTPUT_FRAC = 9  # raw mixture parameters: counts of 2^-9 (a mean's unit, 32 grey levels, in 1/16 grey levels)
OUTPUT_LIMIT = 1 << 14  # raw parameters within ±32


class Grid:
    """Values as integer counts of 2^-frac within ±limit."""

    def __init__(self, frac: int, limit: int = ACTIVATION_LIMIT):
        self.frac, self.limit = frac, limit

    @property
    def step(self) -> float:
        return 2.0**-self.frac

    def __repr__(self) -> str:
        return f"Grid(2^-{self.frac}, ±{self.limit})"


def grid_for(magnitude: float, limit: int = ACTIVATION_LIMIT, finest: int = 12) -> int:
    """The finest grid 2^-f (f <= ``finest``) whose range ±limit * 2^-f holds ``magnitude``."""
    if magnitude <= 0:
        return finest
    return int(min(finest, np.floor(np.log2(limit / magnitude))))


def weight_exponents(weight: np.ndarray) -> np.ndarray:
    """Each output channel's exponent e_j (int64, (cout,)): the largest with max |w_j| * 2^e_j <= WEIGHT_LIMIT + 1/2,
    so round(w * 2^e_j) stays within ±WEIGHT_LIMIT. Computed from the exponent of a float64 quotient, exact: the
    same on every machine for the same weights, and for weights already on their grid it gives the grid's own."""
    largest = np.abs(weight.reshape(weight.shape[0], -1).astype(np.float64)).max(1)
    largest = np.where(largest > 0, largest, 1.0)
    mantissa, exponent = np.frexp((WEIGHT_LIMIT + 0.5) / largest)  # quotient = mantissa * 2^exponent, m in [1/2, 1)
    return (exponent - 1).astype(np.int64)


def integer_weights(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float weights (cout, ...) -> their integers round(w * 2^e_j) (float64) and the exponents e_j."""
    exponents = weight_exponents(weight)
    scale = np.ldexp(1.0, exponents).reshape(-1, *([1] * (weight.ndim - 1)))
    return np.clip(np.rint(weight.astype(np.float64) * scale), -WEIGHT_LIMIT, WEIGHT_LIMIT), exponents


def integer_bias(bias: np.ndarray, exponents: np.ndarray, input_frac: int) -> np.ndarray:
    """A bias in the unit of its output's sums, 2^-(e_j + f): round(b * 2^(e_j + f)) (float64)."""
    return np.rint(np.ldexp(bias.astype(np.float64), exponents + input_frac))


def channel_terms(weights: np.ndarray, input_limits: np.ndarray) -> np.ndarray:
    """(cout, cin): the largest magnitude each input channel adds to each output's sum, over all its taps, for
    integer ``weights`` (cout, cin, kh, kw) and inputs within ``input_limits`` (cin,)."""
    return np.abs(weights).sum(axis=(2, 3)) * input_limits.astype(np.float64)


def channel_blocks(weights: np.ndarray, bias: np.ndarray, input_limits: np.ndarray) -> list[slice]:
    """Contiguous blocks of input channels whose every partial sum stays below 2^24, the bias counted in the
    first: one block for the layers of a trained model, more where a layer's weights are unusually large."""
    terms = channel_terms(weights, input_limits)
    blocks, start, running = [], 0, np.abs(bias).astype(np.float64)
    for k in range(terms.shape[1]):
        if (running + terms[:, k]).max() >= FLOAT32_EXACT:
            if k == start:
                raise FixedPointError("one input channel's products can exceed float32's exact integers")
            blocks.append(slice(start, k))
            start, running = k, np.zeros_like(running)
        running = running + terms[:, k]
    blocks.append(slice(start, terms.shape[1]))
    return blocks


def requantize(sums: np.ndarray, shifts: np.ndarray | np.integer, limit: int) -> np.ndarray:
    """Whole-number sums (float32 or float64) -> counts on the output grid, floor(sums * 2^-shift + 1/2) clamped
    to ±limit, in float64: exact, since the sums are below 2^25 and a power of two keeps their 25 bits."""
    out = np.ldexp(np.asarray(sums, dtype=np.float64), -shifts)
    out += 0.5
    np.floor(out, out=out)
    return np.clip(out, -limit, limit, out=out)


@functools.lru_cache(maxsize=16)
def gelu_table(output_frac: int) -> np.ndarray:
    """GELU from the pre-activation grid (counts of 2^-8 in [-8, 8), index + 2048) to counts of 2^-output_frac
    within ±ACTIVATION_LIMIT (float64): the shipped correctly rounded table at 2^-12, rounded half up."""
    if not 0 <= output_frac <= fixed.FRAC:
        raise FixedPointError(f"a GELU's output grid is 2^-0 to 2^-{fixed.FRAC}, got 2^-{output_frac}")
    pre = np.arange(-PRE_ACTIVATION_LIMIT, PRE_ACTIVATION_LIMIT + 1, dtype=np.int64)
    at_12 = fixed.tables()["gelu"](pre << (fixed.FRAC - PRE_ACTIVATION_FRAC), fixed.FRAC)
    shift = fixed.FRAC - output_frac
    rounded = (at_12 + ((1 << shift) >> 1)) >> shift if shift else at_12
    return np.clip(rounded, -ACTIVATION_LIMIT, ACTIVATION_LIMIT).astype(np.float64)


def gelu(pre: np.ndarray, output_frac: int) -> np.ndarray:
    """GELU of pre-activations (float64 counts of 2^-8 within ±PRE_ACTIVATION_LIMIT) on the grid 2^-output_frac."""
    return gelu_table(output_frac)[pre.astype(np.int64) + PRE_ACTIVATION_LIMIT]


class Plan:
    """Where a low-bit pixel likelihood's activations live: ``DQConfig.pixel_grids`` is [the inputs' grid, then
    each step's two hidden grids], fractions f of 2^-f, chosen from calibration images when its training starts."""

    def __init__(self, grids: list[int], steps: int):
        if len(grids) != 1 + 2 * steps or not all(0 <= f <= fixed.FRAC for f in grids):
            raise FixedPointError(f"a low-bit pixel likelihood has {1 + 2 * steps} grids of 2^-0 to 2^-12, got {grids}")
        self.inputs_frac = grids[0]
        self.hidden_fracs = [(grids[1 + 2 * s], grids[2 + 2 * s]) for s in range(steps)]

    @staticmethod
    def grids(inputs_frac: int, hidden_fracs: list[tuple[int, int]]) -> list[int]:
        return [inputs_frac, *(f for pair in hidden_fracs for f in pair)]
