"""Which files decode, and to what, under other kernels: a table of file kind x kernel setting.

    python benchmarks/portability.py [IMAGE ...]      (default: examples/photo.png)

Encodes each image with the shipped model here (lossy q1, q4, q6, lossless, and grayscale lossy q4
and lossless), by torch's encoder and, for the lossy and residual qualities, by the torch-free runtime's
(DQCODEC_BACKEND), then decodes every file in fresh processes under each setting of dqcodec/testing/kernels.py
(ATen without SIMD, ATen at AVX2, oneDNN off, ATen and oneDNN at AVX2, 1 and 2 threads; the runtime, with
numpy's OpenBLAS on this machine's kernel and forced to its SSE3 (Prescott) and AVX2 (Haswell) ones). A cell
says whether the decoder built the encoder's tables ("tables ok"), and for lossless files whether
the pixels are the original ones, for lossy files the largest difference from this process's decode
(torch's) and how many pixels differ.
"""

from __future__ import annotations

import os
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
SETTINGS = {
    name: (name, None) for name in ["native", "default", "avx2", "onednn-off", "avx2-machine", "1-thread", "2-threads"]
}
SETTINGS["runtime"] = ("runtime", None)
SETTINGS["runtime, SSE3 BLAS"] = ("runtime", {"OPENBLAS_CORETYPE": "Prescott"})
SETTINGS["runtime, AVX2 BLAS"] = ("runtime", {"OPENBLAS_CORETYPE": "Haswell"})


def main(paths: list[str]) -> None:
    paths = paths or [str(ROOT / "examples" / "photo.png")]
    folder = Path(tempfile.mkdtemp(prefix="dq-portability-"))
    files = {}
    for i, path in enumerate(paths):
        for kind, (mode, options) in KINDS.items():
            image = Image.open(path).convert(mode)
            for writer in ("torch", "runtime") if "lossless" not in kind else ("torch",):
                file = folder / f"{i}-{kind.replace(' ', '-')}-{writer}.dq"
                os.environ["DQCODEC_BACKEND"] = writer
                file.write_bytes(dqcodec.compress(image, **options))
                os.environ["DQCODEC_BACKEND"] = "torch"  # "here" is torch's decode
                files[file] = (
                    Path(path).name,
                    f"{kind}, {writer}-encoded",
                    np.asarray(image),
                    kernels.describe(file, "here"),
                )
    results = {}
    for label, (setting, extra) in SETTINGS.items():
        for r in kernels.run(setting, list(files), extra=extra):
            results.setdefault(label, {})[Path(r["file"])] = r
            Path(f"{r['file']}.{setting}.npy").rename(_decoded(r["file"], label))
    print("| image | file | bytes | " + " | ".join(SETTINGS) + " |")
    print("|---|---|---|" + "---|" * len(SETTINGS))
    for file, (name, kind, original, here) in files.items():
        cells = [_cell(file, kind, original, here, results[s][file], s) for s in SETTINGS]
        print(f"| {name} | {kind} | {file.stat().st_size} | " + " | ".join(cells) + " |")


def _cell(file, kind, original, here, there, setting) -> str:
    tables = "tables ok" if there["tables_sha256"] == here["tables_sha256"] else "TABLES DIFFER"
    pixels = np.load(_decoded(file, setting)).astype(int)
    if "lossless" in kind:
        return f"{tables}, {'exact' if np.array_equal(pixels, original) else 'NOT EXACT'}"
    difference = np.abs(pixels - np.load(f"{file}.here.npy"))
    return f"{tables}, max diff {difference.max()} ({int((difference > 0).sum())} values)"


def _decoded(file, label: str) -> str:
    """Where the pixels a setting decoded are kept (a label per setting; the runtime's share one setting)."""
    return f"{file}.as-{label.replace(', ', '-').replace(' ', '-')}.npy"


if __name__ == "__main__":
    main(sys.argv[1:])
