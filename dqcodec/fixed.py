"""The exact arithmetic's constants and the integer operations that need numpy alone.

``dqcodec.exact`` runs the exact arithmetic on torch tensors; what is here is the part of it that the
residual layer (and, as issue 30's runtime grows, every decoder) needs without torch. Both modules use these
definitions, so the two cannot drift apart (docs/bitstream.md gives the exactness argument).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from .errors import FixedPointError

FRAC = 12  # activations: integer counts of 2^-12
WEIGHT_FRAC = 14  # weights: integer counts of 2^-14
LIMIT = 1 << 20  # activations are clamped to ±LIMIT counts (±256.0)
EXACT = 1 << 53  # float64 holds every integer below this exactly
SCALE = float(1 << FRAC)

TABLES_PATH = Path(__file__).with_name("fixed_tables.npz")
# SHA-256 of the table file's arrays; a different file would write files no other dqcodec reads
TABLES_SHA256 = "d53a5c78571e70fa91df53a9a24634f549894310d806deda9fd1cfe73eecc888"
SOFTMAX_RANGE = 32  # logits more than 32 below the row's largest get the floor frequency


def frequencies(weights: np.ndarray, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """Non-negative whole-number weights (N, K), integer or float64, each below 2^(52 - bits) and every row's
    sum positive and below 2^52 -> frequencies floor(w * 2^bits / sum) + 1 as float64, for constriction.

    Computed in float64, which is exact: for whole numbers a, b > 0 with a + b < 2^53 the rounded quotient
    a / b never reaches the next integer above a / b (its distance to it, at least 1 / b, exceeds half a
    unit in the last place), so its floor is the integer quotient; and the row sums, of whole numbers below
    2^52, are exact in any order. ``out``: a float64 array of the same shape to write them to."""
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum(-1, keepdims=True)
    out = np.multiply(weights, float(1 << bits), out=out)
    np.divide(out, total, out=out)
    np.floor(out, out=out)
    out += 1
    return out


# ---- values ------------------------------------------------------------------------------------------------


def to_fixed(x: np.ndarray) -> np.ndarray:
    """Float array -> integer counts of 2^-FRAC (float64), clamped to ±LIMIT."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * SCALE), -LIMIT, LIMIT)


def to_float(x: np.ndarray) -> np.ndarray:
    return (x / SCALE).astype(np.float32)


def rescale(sums: np.ndarray) -> np.ndarray:
    """A layer's integer sums, counts of 2^-(FRAC + WEIGHT_FRAC) -> counts of 2^-FRAC, rounded half up, clamped."""
    out = sums * 2.0**-WEIGHT_FRAC
    out += 0.5
    np.floor(out, out=out)
    return np.clip(out, -LIMIT, LIMIT, out=out)


def fixed_weight(weight: np.ndarray) -> np.ndarray:
    """Weights -> integer counts of 2^-WEIGHT_FRAC (float64)."""
    return np.round(np.asarray(weight, dtype=np.float64) * 2.0**WEIGHT_FRAC)


def fixed_bias(bias: np.ndarray) -> np.ndarray:
    """Biases -> integer counts of 2^-(FRAC + WEIGHT_FRAC), the unit of a layer's sums (float64)."""
    return np.round(np.asarray(bias, dtype=np.float64) * 2.0 ** (FRAC + WEIGHT_FRAC))


def check_exact_range(weight: np.ndarray, bias: np.ndarray, transposed: bool = False) -> None:
    """Every output's largest possible partial sum, with inputs within ±LIMIT, is below 2^53."""
    per_output = np.abs(weight).sum(axis=(0, 2, 3) if transposed else (1, 2, 3))
    worst = float((per_output * LIMIT + np.abs(bias)).max()) if len(bias) else 0.0
    if worst >= EXACT:
        raise FixedPointError(f"a layer's sums can reach {worst:.3g}, past float64's exact integers")


# ---- tables ------------------------------------------------------------------------------------------------


def tables_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name], dtype="<i8").tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def table_arrays() -> dict[str, tuple[np.ndarray, tuple[int, ...]]]:
    """The shipped tables, checked against their hash: {name: (entries, (low, high, out_frac, step_bits))}."""
    with np.load(TABLES_PATH) as data:
        arrays = {name: data[name] for name in sorted(data.files)}
    digest = tables_digest(arrays)
    if digest != TABLES_SHA256:
        raise FixedPointError(f"{TABLES_PATH} is damaged (SHA-256 {digest})")
    return {
        name: (array, tuple(int(v) for v in arrays[name + "_range"]))
        for name, array in arrays.items()
        if not name.endswith("_range")
    }


class Table:
    """f(x) for x in integer counts of 2^-in_frac, as integer counts of 2^-out_frac: the entries hold f at
    every 2^-step_bits of x over [low, high]; between them, linear interpolation in integers; outside, the end
    values. int64 throughout (``exact.Table`` is the same on torch tensors)."""

    def __init__(self, values: np.ndarray, low: int, high: int, out_frac: int, step_bits: int):
        entries = np.asarray(values, dtype=np.int64)
        self.values = np.concatenate([entries, entries[-1:]])  # so that the last entry's step is 0
        self.steps = np.diff(self.values, append=self.values[-1:])
        self.low, self.high, self.out_frac, self.step_bits = low, high, out_frac, step_bits

    def __call__(self, x: np.ndarray, in_frac: int) -> np.ndarray:
        """x: integer counts of 2^-in_frac (in_frac >= step_bits) -> int64 counts of 2^-out_frac."""
        u = np.clip(np.asarray(x, dtype=np.int64), self.low << in_frac, self.high << in_frac) - (self.low << in_frac)
        return self.above_low(u, in_frac)

    def above_low(self, u: np.ndarray, in_frac: int) -> np.ndarray:
        """f(low + u) for int64 u from 0 to (high - low) in counts of 2^-in_frac."""
        shift = in_frac - self.step_bits
        i = u >> shift
        if not shift:
            return self.values[i]
        return self.values[i] + ((self.steps[i] * (u & ((1 << shift) - 1))) >> shift)


@functools.lru_cache(maxsize=1)
def tables() -> dict[str, Table]:
    return {name: Table(entries, *bounds) for name, (entries, bounds) in table_arrays().items()}


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh of fixed-point values, as int64 fixed-point values."""
    return tables()["tanh"](x, FRAC)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU of fixed-point values (float64 counts of 2^-FRAC): x above 8, 0 below -8 (the table's end values)."""
    xi = x.astype(np.int64)
    return np.where(xi > 8 << FRAC, xi, tables()["gelu"](xi, FRAC)).astype(np.float64)


# ---- probabilities -----------------------------------------------------------------------------------------


def softmax_weights(logits: np.ndarray) -> np.ndarray:
    """Fixed-point logits (N, K) -> int64 weights proportional to exp(logit), the largest 2^30: each logit's
    distance below its row's largest, rounded down to 2^-8, reads the exp table directly."""
    xi = logits.astype(np.int64)
    exp_neg = tables()["exp_neg"]
    below_max = (xi.max(-1, keepdims=True) - xi) >> (FRAC - exp_neg.step_bits)  # whole table steps
    return exp_neg(np.minimum(below_max, SOFTMAX_RANGE << exp_neg.step_bits), exp_neg.step_bits)


def logits_to_frequencies(logits: np.ndarray, bits: int) -> np.ndarray:
    """Fixed-point logits (H, W, K) -> integer frequencies (H * W, K), rows in (H, W) order."""
    return frequencies(softmax_weights(logits.reshape(-1, logits.shape[-1])), bits)
