"""Decode .dq files in a fresh process that runs other kernels, as another CPU or torch build would.

    python -m dqcodec.testing.kernels SETTING FILE...    prints one JSON line per file

Settings: ``native``; ``avx2`` and ``default`` (ATen's kernels for a CPU with AVX2 only, or with
no SIMD at all, through ATEN_CPU_CAPABILITY; ``default`` also limits MKL, torch's BLAS, to SSE4.2);
``onednn-off`` (torch.backends.mkldnn disabled, so convolutions take ATen's own path);
``avx2-machine`` (ATen, oneDNN and MKL all limited to AVX2, as on a CPU without AVX-512: oneDNN reads
ONEDNN_MAX_CPU_ISA and MKL reads MKL_ENABLE_INSTRUCTIONS, not ATEN_CPU_CAPABILITY; the exact
convolutions' matrix products run in MKL);
``1-thread`` and ``2-threads``. Each file's decoded pixels
are saved next to it as FILE.SETTING.npy, and its line gives their SHA-256 and that of every
probability table the decoder built for the code streams (and a residual quality's residual stream). ``--float-fingerprint`` prints the
SHA-256 of a float convolution and softmax instead, which shows whether a setting changes float
arithmetic at all (if it does not, a test that passes under it proves nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "onednn-off": {"DQCODEC_KERNELS_MKLDNN": "0"},
    "avx2-machine": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "1-thread": {"DQCODEC_KERNELS_THREADS": "1"},
    "2-threads": {"DQCODEC_KERNELS_THREADS": "2"},
    # the torch-free runtime where it decodes (lossy and residual files), numpy's BLAS as this machine picks it
    "runtime": {"DQCODEC_BACKEND": "runtime"},
}
EMULATION_VARIABLES = {name for variables in SETTINGS.values() for name in variables}  # none inherited from the caller
ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the dqcodec package


def run(
    setting: str,
    files: list[Path],
    models_dir: Path | None = None,
    fingerprint: bool = False,
    extra: dict[str, str] | None = None,
) -> list[dict]:
    """Decode ``files`` in a subprocess under ``setting`` (and the ``extra`` environment variables, for a
    benchmark's settings); one dict per file (or the fingerprint)."""
    env = {k: v for k, v in os.environ.items() if k not in EMULATION_VARIABLES}
    env.update(SETTINGS[setting])
    env.update(extra or {})
    if models_dir is not None:
        env["DQCODEC_MODELS"] = str(models_dir)
    args = (
        [sys.executable, "-m", "dqcodec.testing.kernels", setting]
        + (["--float-fingerprint"] if fingerprint else [])
        + [str(f) for f in files]
    )
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"decoding under {setting} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def without_torch(code: str, *args) -> subprocess.CompletedProcess:
    """Python ``code`` run in a fresh process where ``import torch`` fails (what the torch-free runtime must
    survive), with ``args`` as sys.argv[1:]; its output captured as text."""
    guarded = "import sys; sys.modules['torch'] = None\n" + code
    return subprocess.run(
        [sys.executable, "-c", guarded, *map(str, args)], cwd=ROOT, capture_output=True, text=True, check=False
    )


def _apply(setting: str) -> None:
    import torch

    if os.environ.get("DQCODEC_KERNELS_MKLDNN") == "0":
        torch.backends.mkldnn.enabled = False
    if "DQCODEC_KERNELS_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["DQCODEC_KERNELS_THREADS"]))


def _float_fingerprint() -> dict:
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 96, 24, 32, generator=generator)
    w = torch.randn(64, 96, 3, 3, generator=generator) / 30
    y = torch.softmax(F.gelu(F.conv2d(x, w, padding=1)), 1)
    a, b = (
        torch.randn(777, 513, dtype=torch.float64, generator=generator),
        torch.randn(513, 301, dtype=torch.float64, generator=generator),
    )
    return {
        "float_sha256": hashlib.sha256(y.numpy().tobytes()).hexdigest(),
        "blas_sha256": hashlib.sha256((a @ b).numpy().tobytes()).hexdigest(),  # MKL's float64 matrix product
        "capability": torch.backends.cpu.get_cpu_capability(),
    }


def describe(path: Path, setting: str | None = None) -> dict:
    """Decode one file here and now: the SHA-256 of its pixels and of its code tables and indices.
    With a ``setting``, the pixels are also saved as FILE.SETTING.npy."""
    import numpy as np

    import dqcodec
    from dqcodec import codec
    from dqcodec.recorder import Recorder

    data = path.read_bytes()
    pixels = np.asarray(dqcodec.decompress(data))
    if setting is not None:
        np.save(f"{path}.{setting}.npy", pixels)
    opened = codec.open_file(data)
    recorder = Recorder(keep_tables=True)
    if opened.point.residual_step:  # the codes' tables, then the residual's
        opened.stack.decompress(opened.streams, opened.size, opened.header.tile, recorder)
    else:  # the codes' tables (a file's pixels are pinned by their digest)
        opened.stack.decode_codes(opened.streams, opened.size, opened.header.tile, recorder)
    digest = hashlib.sha256()
    for frequencies, symbols in recorder.tables or []:
        digest.update(frequencies.tobytes())
        digest.update(symbols.astype("<i8").tobytes())
    return {
        "file": str(path),
        "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "tables_sha256": digest.hexdigest(),
    }


def main(argv: list[str]) -> None:
    setting, *rest = argv
    _apply(setting)
    if rest and rest[0] == "--float-fingerprint":
        print(json.dumps(_float_fingerprint()))
        return
    for name in rest:
        print(json.dumps(describe(Path(name), setting)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
