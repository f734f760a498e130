#!/usr/bin/env python3
"""Write dqcodec/fixed_tables.npz: the integer function tables of dqcodec.exact.

Each table holds round(f(x) * 2^out_frac) at every multiple of 2^-step_bits of x from low to high,
computed with mpmath at 40 significant digits and rounded to the nearest integer, so the
file is the same wherever it is made. The file is part of the .dq format: changing it
changes the probability tables, and so which files decode (tests/test_exact.py pins its hash).

Usage: python scripts/make_fixed_tables.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import mpmath
import numpy as np

mpmath.mp.dps = 40

# name: (function, low, high, out_frac, step_bits); GELU is read at every activation value (2^-12)
TABLES = {
    "gelu": (lambda x: x / 2 * (1 + mpmath.erf(x / mpmath.sqrt(2))), -8, 8, 12, 12),
    "tanh": (mpmath.tanh, -8, 8, 12, 8),
    "sigmoid": (lambda x: 1 / (1 + mpmath.exp(-x)), -24, 24, 30, 8),
    "exp_neg": (lambda x: mpmath.exp(-x), 0, 32, 30, 8),
    "inv_scale": (lambda x: mpmath.exp(-x), -4, 6, 20, 8),
}


def table(function, low: int, high: int, out_frac: int, step_bits: int) -> np.ndarray:
    scale, step = mpmath.mpf(2) ** out_frac, 1 << step_bits
    return np.array(
        [int(mpmath.nint(function(mpmath.mpf(i) / step) * scale)) for i in range(low * step, high * step + 1)],
        dtype=np.int64,
    )


def main() -> None:
    out = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parent.parent / "dqcodec" / "fixed_tables.npz"
    )
    arrays = {}
    for name, (function, low, high, out_frac, step_bits) in TABLES.items():
        arrays[name] = table(function, low, high, out_frac, step_bits)
        arrays[name + "_range"] = np.array([low, high, out_frac, step_bits], dtype=np.int64)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
