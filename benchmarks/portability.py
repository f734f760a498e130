"""Which files decode, and to what, under other kernels: a table of file kind x kernel setting.

    python benchmarks/portability.py [IMAGE ...]      (default: examples/photo.png)

Encodes each image with the shipped model here (lossy q1, q4, q6, lossless, and grayscale lossy q4
and lossless), then decodes every file in fresh processes under each setting of dqcodec/testing/kernels.py
(ATen without SIMD, ATen at AVX2, oneDNN off, ATen and oneDNN at AVX2, 1 and 2 threads). A cell
says whether the decoder built the encoder's tables ("tables ok"), and for lossless files whether
the pixels are the original ones, for lossy files the largest difference from this process's decode
and how many pixels differ.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dqcodec
from dqcodec.testing import kernels

KINDS = {
    "lossy q1": ("RGB", {"quality": 1}),
    "lossy q4": ("RGB", {"quality": 4}),
    "lossy q6": ("RGB", {"quality": 6}),
    "lossless": ("RGB", {"lossless": True}),
    "grayscale q4": ("L", {"quality": 4}),
    "grayscale lossless": ("L", {"lossless": True}),
}
SETTINGS = ["native", "default", "avx2", "onednn-off", "avx2-machine", "1-thread", "2-threads"]


def main(paths: list[str]) -> None:
    paths = paths or [str(ROOT / "examples" / "photo.png")]
    folder = Path(tempfile.mkdtemp(prefix="dq-portability-"))
    files = {}
    for i, path in enumerate(paths):
        for kind, (mode, options) in KINDS.items():
            image = Image.open(path).convert(mode)
            file = folder / f"{i}-{kind.replace(' ', '-')}.dq"
            file.write_bytes(dqcodec.compress(image, **options))
            files[file] = (Path(path).name, kind, np.asarray(image), kernels.describe(file, "here"))
    results = {setting: {Path(r["file"]): r for r in kernels.run(setting, list(files))} for setting in SETTINGS}
    print("| image | file | bytes | " + " | ".join(SETTINGS) + " |")
    print("|---|---|---|" + "---|" * len(SETTINGS))
    for file, (name, kind, original, here) in files.items():
        cells = [_cell(file, kind, original, here, results[s][file], s) for s in SETTINGS]
        print(f"| {name} | {kind} | {file.stat().st_size} | " + " | ".join(cells) + " |")


def _cell(file, kind, original, here, there, setting) -> str:
    tables = "tables ok" if there["tables_sha256"] == here["tables_sha256"] else "TABLES DIFFER"
    pixels = np.load(f"{file}.{setting}.npy").astype(int)
    if "lossless" in kind:
        return f"{tables}, {'exact' if np.array_equal(pixels, original) else 'NOT EXACT'}"
    difference = np.abs(pixels - np.load(f"{file}.here.npy"))
    return f"{tables}, max diff {difference.max()} ({int((difference > 0).sum())} values)"


if __name__ == "__main__":
    main(sys.argv[1:])
