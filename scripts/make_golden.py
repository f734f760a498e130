#!/usr/bin/env python3
"""Write tests/golden/: small .dq files from the shipped models and what they decode to.

Every test run decodes them (tests/test_portable.py), so a change to the format, the exact
arithmetic or the shipped weights that would break files already written cannot land unnoticed.
Lossless files are pinned by the SHA-256 of their pixels; lossy files by the SHA-256 of their
probability tables and decoded indices (exact everywhere) and by their decoded pixels as a PNG,
which another platform may reproduce to within one level (docs/bitstream.md).

Usage: python scripts/make_golden.py   (it writes the cases golden.json does not have yet, and never
rewrites one it has: the first five were written with dq-hier for format version 3, the residual ones with
dq-2 49448f56 when residual qualities came, the dq-3 ones with dq-3 87879186, the dq3a ones with dq-3 0843ddc3)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dqcodec
from dqcodec.testing import kernels

OUT = ROOT / "tests" / "golden"
# name: (crop box of examples/photo.png, mode, quality or "lossless", model); the first eight are files of
# format version 3, the v4 ones of version 4 (docs/bitstream.md)
CASES = {
    "q1-rgb-67x45": ((300, 200, 367, 245), "RGB", 1, "dq-hier"),
    "q6-rgb-50x33": ((100, 300, 150, 333), "RGB", 6, "dq-hier"),
    "q4-gray-31x29": ((500, 100, 531, 129), "L", 4, "dq-hier"),
    "lossless-rgb-40x24": ((600, 400, 640, 424), "RGB", "lossless", "dq-hier"),
    "lossless-gray-21x19": ((20, 20, 41, 39), "L", "lossless", "dq-hier"),
    "dq2-residual-q5-rgb-61x37": ((400, 250, 461, 287), "RGB", 5, "dq-2"),  # step 40
    "dq2-residual-q9-rgb-45x38": ((150, 100, 195, 138), "RGB", 9, "dq-2"),  # step 10
    "dq2-residual-q7-gray-29x33": ((650, 50, 679, 83), "L", 7, "dq-2"),  # step 20
    "v4-dq2-q3-rgb-53x41": ((250, 330, 303, 371), "RGB", 3, "dq-2"),
    "v4-dq2-residual-q6-gray-38x27": ((560, 420, 598, 447), "L", 6, "dq-2"),  # step 28
    "v4-dq2-near-lossless-q10-rgb-27x22": ((80, 460, 107, 482), "RGB", 10, "dq-2"),  # within 8
    "v4-dq2-lossless-rgb-26x19": ((700, 10, 726, 29), "RGB", "lossless", "dq-2"),
    # dq-3: residual qualities over quality 2's codes, deblocked (residual.deblock)
    "v4-dq3-residual-q4-rgb-57x43": ((330, 120, 387, 163), "RGB", 4, "dq-3"),  # step 88
    "v4-dq3-residual-q6-rgb-48x40": ((420, 380, 468, 420), "RGB", 6, "dq-3"),  # step 61, the default
    "v4-dq3-residual-q12-gray-41x35": ((50, 200, 91, 235), "L", 12, "dq-3"),  # step 21
    # dq-3 0843ddc3: its levels' first groups coded over a checkerboard (anchor contexts)
    "v4-dq3a-q2-rgb-59x45": ((120, 40, 179, 85), "RGB", 2, "dq-3"),
    "v4-dq3a-residual-q6-gray-44x37": ((610, 300, 654, 337), "L", 6, "dq-3"),
    "v4-dq3a-lossless-rgb-23x21": ((360, 460, 383, 481), "RGB", "lossless", "dq-3"),
}


def main() -> None:
    index = OUT / "golden.json"
    OUT.mkdir(parents=True, exist_ok=True)
    photo = Image.open(ROOT / "examples" / "photo.png").convert("RGB")
    entries = json.loads(index.read_text()) if index.exists() else {}
    for name, (box, mode, quality, model) in CASES.items():
        path = OUT / f"{name}.dq"
        if path.name in entries:
            continue
        if path.exists():
            sys.exit(f"{path} exists but golden.json does not list it: remove it or list it by hand")
        image = photo.crop(box).convert(mode)
        lossless = quality == "lossless"
        data = dqcodec.compress(image, lossless=lossless, model=model, **({} if lossless else {"quality": quality}))
        path.write_bytes(data)
        decoded = kernels.describe(path)
        point = dqcodec.inspect(data).point
        if lossless:
            assert np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(image))
        elif not point.codes_pixels:
            dqcodec.decompress(data).save(OUT / f"{name}.png")
        # the pixels of a file that codes them are the same on every CPU, so their digest pins them
        entries[path.name] = {k: decoded[k] for k in ("pixels_sha256", "tables_sha256")} | {
            "pixels_pinned": point.codes_pixels
        }
        print(name, len(data), "bytes")
    index.write_text(json.dumps(entries, indent=2) + "\n")


if __name__ == "__main__":
    main()
