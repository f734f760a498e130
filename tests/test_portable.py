"""Files decode the same on other CPUs and torch builds, emulated here in subprocesses.

Each file is encoded in this process and decoded in fresh processes that run other kernels
(dqcodec/testing/kernels.py): ATen without SIMD, ATen with AVX2 only, oneDNN switched off, ATen and
oneDNN both limited to AVX2, 1 and 2 threads, and the torch-free runtime (DQCODEC_BACKEND=runtime, which decodes
the lossy and residual files; this process decodes with torch). Lossless and near-lossless files must come back as the
same pixels (exact, or within the bound, here), and every file's probability tables bit-identical;
lossy pixels may differ by one level (the synthesis is float, docs/bitstream.md). The committed
golden files pin what today's format decodes to.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dqcodec
from dqcodec import container, zoo
from dqcodec.testing import kernels

from .conftest import photo_like

GOLDEN = Path(__file__).parent / "golden"
OTHER_KERNELS = ["default", "avx2", "onednn-off", "avx2-machine", "1-thread", "2-threads", "runtime"]


def _cases(tiny: str):
    photo = Image.open(Path(__file__).parent.parent / "examples" / "photo.png").convert("RGB")
    crop = photo.crop((200, 150, 263, 197))  # 63 x 47, odd both ways
    yield "shipped-q1", crop, {"quality": 1}
    yield "shipped-q6", crop, {"quality": 6}
    yield "shipped-gray-q4", crop.convert("L"), {"quality": 4}
    yield "shipped-lossless", crop.crop((0, 0, 37, 29)), {"lossless": True}
    yield "shipped-lossless-gray", crop.convert("L").crop((0, 0, 23, 19)), {"lossless": True}
    yield "tiny-q3", Image.fromarray(photo_like(45, 71)), {"quality": 3, "model": tiny}
    yield "tiny-lossless", Image.fromarray(photo_like(33, 19)), {"lossless": True, "model": tiny}
    yield "tiny-lossless-gray", Image.fromarray(photo_like(17, 40)[..., 0]), {"lossless": True, "model": tiny}
    yield (
        "tiny-near-lossless",
        Image.fromarray(photo_like(37, 29, seed=3)),
        {"quality": 6, "model": tiny},
    )  # tolerance 3
    # lossless format 2: a low-bit pixel likelihood, its products in float32 (numpy's BLAS whatever the backend)
    yield (
        "tiny-lowbit-lossless",
        Image.fromarray(photo_like(41, 27, seed=5)),
        {"lossless": True, "model": "tiny-lowbit"},
    )
    yield (
        "tiny-lowbit-near-lossless",
        Image.fromarray(photo_like(30, 35, seed=6)),
        {"quality": 6, "model": "tiny-lowbit"},
    )


@pytest.fixture(scope="module")
def coded(tiny_models_dir, tmp_path_factory):
    """(models folder holding tiny, dq-hier and dq-2, {file: (expected description, original image, bound)},
    copies of the golden files: decoded from there, so the decoders' outputs stay out of the source tree)."""
    models = tmp_path_factory.mktemp("both-models")
    # every version of every shipped model a golden file names (dq-hier's legacy one among them), laid out
    # as in models/: encoding uses the current one
    for path in tiny_models_dir.glob("*.dqw"):
        zoo.install(path, models)
    for name in sorted({container.read_header(path.read_bytes())[0].model for path in GOLDEN.glob("*.dq")}):
        for version in zoo.versions(name):
            zoo.install(version.path, models / zoo.PREVIOUS if version.previous else models)
    folder = tmp_path_factory.mktemp("coded")
    files = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DQCODEC_MODELS", str(models))
        for name, image, options in _cases("tiny"):
            path = folder / f"{name}.dq"
            path.write_bytes(dqcodec.compress(image, **options))
            details = dqcodec.inspect(path.read_bytes())
            # how far its decoded samples may be from the original's; None: a lossy file, no bound
            bound = details.near_lossless_bound if details.lossless or details.near_lossless_bound else None
            files[path] = (kernels.describe(path, "here"), image, bound)
    golden = tmp_path_factory.mktemp("golden")
    return models, files, [Path(shutil.copy(path, golden)) for path in sorted(GOLDEN.glob("*.dq"))]


@pytest.mark.slow
@pytest.mark.shipped
@pytest.mark.parametrize("setting", OTHER_KERNELS)
def test_files_decode_alike_under_other_kernels(coded, setting):
    models, files, golden = coded
    results = kernels.run(setting, list(files) + golden, models)
    expected = {**{p: d for p, (d, _, _) in files.items()}, **{p: _golden(p) for p in golden}}
    for result in results:
        path = Path(result["file"])
        assert result["tables_sha256"] == expected[path]["tables_sha256"], f"{path.name}: other tables under {setting}"
        pixels_coded = files[path][2] is not None if path in files else _golden(path)["pixels_pinned"]
        if pixels_coded:
            assert result["pixels_sha256"] == expected[path]["pixels_sha256"], f"{path.name}: not exact under {setting}"
        else:
            here = np.load(f"{path}.here.npy") if path in files else np.asarray(Image.open(GOLDEN / f"{path.stem}.png"))
            there = np.load(f"{path}.{setting}.npy")
            assert np.abs(here.astype(int) - there).max() <= 1, f"{path.name}: pixels differ by more than one level"
    assert len(results) == len(expected)


@pytest.mark.slow
@pytest.mark.shipped
def test_lossless_files_are_exact_here_and_near_lossless_ones_within_their_bound(coded):
    _, files, _ = coded
    assert sorted(bound for _, _, bound in files.values() if bound is not None) == [0, 0, 0, 0, 0, 6, 6]
    for path, (_, image, bound) in files.items():
        if bound is not None:
            error = np.abs(np.load(f"{path}.here.npy").astype(int) - np.asarray(image))
            assert error.max() <= bound, path.name


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["default", "onednn-off", "avx2-machine"])
def test_the_emulated_kernels_do_change_float_arithmetic(setting):
    """Without this, the tests above could pass because the settings change nothing. The settings that
    limit MKL must also change its float64 matrix products, where the exact convolutions' products run."""
    native = kernels.run("native", [], fingerprint=True)[0]
    other = kernels.run(setting, [], fingerprint=True)[0]
    if native["capability"] == "DEFAULT":
        pytest.skip("this CPU runs ATen's default kernels natively")
    if native["capability"].lower() == kernels.SETTINGS[setting].get("ATEN_CPU_CAPABILITY", "").lower():
        pytest.skip(f"this CPU's best kernels are {native['capability']} (no AVX-512), which the setting emulates")
    assert other["float_sha256"] != native["float_sha256"]
    if "MKL_ENABLE_INSTRUCTIONS" in kernels.SETTINGS[setting] and _intel_cpu():
        # MKL picks its kernels by instruction set on Intel CPUs only; elsewhere the setting changes nothing
        assert other["blas_sha256"] != native["blas_sha256"]


def _intel_cpu() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "GenuineIntel" in cpuinfo.read_text()


@pytest.mark.slow
@pytest.mark.shipped
def test_golden_files_decode_to_what_they_decoded_to_when_written():
    golden = sorted(GOLDEN.glob("*.dq"))
    versions = {container.read_header(path.read_bytes())[1] for path in golden}
    assert len(golden) >= 4 and versions >= {3, 4}, versions
    for path in golden:
        expected = _golden(path)
        got = kernels.describe(path)
        assert got["tables_sha256"] == expected["tables_sha256"], path.name
        if expected["pixels_pinned"]:
            assert got["pixels_sha256"] == expected["pixels_sha256"], path.name
        else:
            reference = np.asarray(Image.open(path.with_suffix(".png")))
            assert np.abs(np.asarray(dqcodec.decompress(path.read_bytes())).astype(int) - reference).max() <= 1


def _golden(path: Path) -> dict:
    return json.loads((GOLDEN / "golden.json").read_text())[path.name]
