"""The exact arithmetic's constants and the integer operations that need numpy alone.

``dqcodec.exact`` runs the exact arithmetic on torch tensors; what is here is the part of it that the
residual layer (and, as issue 30's runtime grows, every decoder) needs without torch. Both modules use these
definitions, so the two cannot drift apart (docs/bitstream.md gives the exactness argument).
"""

from __future__ import annotations

import numpy as np

FRAC = 12  # activations: integer counts of 2^-12
WEIGHT_FRAC = 14  # weights: integer counts of 2^-14
LIMIT = 1 << 20  # activations are clamped to ±LIMIT counts (±256.0)
EXACT = 1 << 53  # float64 holds every integer below this exactly
SCALE = float(1 << FRAC)


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
