#!/usr/bin/env python3
"""Write tests/golden/: small .dq files from the shipped dq-hier and what they decode to.

Every test run decodes them (tests/test_portable.py), so a change to the format, the exact
arithmetic or the shipped weights that would break files already written cannot land unnoticed.
Lossless files are pinned by the SHA-256 of their pixels; lossy files by the SHA-256 of their
probability tables and decoded indices (exact everywhere) and by their decoded pixels as a PNG,
which another platform may reproduce to within one level (docs/bitstream.md).

Usage: python scripts/make_golden.py   (run once per format version; it refuses to overwrite)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dqcodec  # noqa: E402
from tests import kernels  # noqa: E402

OUT = ROOT / "tests" / "golden"
# name: (crop box of examples/photo.png, mode, quality or "lossless")
CASES = {
    "q1-rgb-67x45": ((300, 200, 367, 245), "RGB", 1),
    "q6-rgb-50x33": ((100, 300, 150, 333), "RGB", 6),
    "q4-gray-31x29": ((500, 100, 531, 129), "L", 4),
    "lossless-rgb-40x24": ((600, 400, 640, 424), "RGB", "lossless"),
    "lossless-gray-21x19": ((20, 20, 41, 39), "L", "lossless"),
}


def main() -> None:
    index = OUT / "golden.json"
    if index.exists():
        sys.exit(f"{index} exists: golden files are written once per format version")
    OUT.mkdir(parents=True, exist_ok=True)
    photo = Image.open(ROOT / "examples" / "photo.png").convert("RGB")
    entries = {}
    for name, (box, mode, quality) in CASES.items():
        image = photo.crop(box).convert(mode)
        lossless = quality == "lossless"
        data = dqcodec.compress(image, lossless=lossless, **({} if lossless else {"quality": quality}))
        path = OUT / f"{name}.dq"
        path.write_bytes(data)
        decoded = kernels.describe(path)
        if lossless:
            assert np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(image))
        else:
            dqcodec.decompress(data).save(OUT / f"{name}.png")
        entries[path.name] = {k: decoded[k] for k in ("pixels_sha256", "tables_sha256")} | {"lossless": lossless}
        print(name, len(data), "bytes")
    index.write_text(json.dumps(entries, indent=2) + "\n")


if __name__ == "__main__":
    main()
