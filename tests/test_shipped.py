"""The shipped model on the sample photo (slower: a real model on a 768x512 image)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dqcodec
from dqcodec import zoo
from dqcodec.evaluate import metrics
from dqcodec.point import Kind

PHOTO = Path(__file__).resolve().parent.parent / "examples" / "photo.png"
pytestmark = [pytest.mark.slow, pytest.mark.shipped]


@pytest.fixture(scope="module")
def photo():
    return Image.open(PHOTO).convert("RGB")


@pytest.fixture(scope="module")
def files(photo):
    model, _ = zoo.load()
    return {
        p.quality: dqcodec.compress(photo, quality=p.quality)
        for p in model.ladder.rungs()
        if p.kind in (Kind.LOSSY, Kind.RESIDUAL)
    }


def test_every_lossy_and_residual_quality_round_trips_and_rates_rise_with_quality(photo, files):
    sizes = []
    for q, data in files.items():
        decoded = dqcodec.decompress(data)
        assert decoded.size == photo.size and decoded.mode == "RGB"
        psnr, _ = metrics(photo, decoded)
        assert psnr > 20, f"quality {q}: {psnr:.2f} dB"
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_qualities_after_the_lossy_ones_rise_in_rate_and_psnr_and_near_lossless_ones_stay_within_their_bound(photo):
    """Residual qualities rise in rate and PSNR; a near-lossless quality costs more than all of them and holds
    its bound on every sample (its PSNR may be below the finest residual quality's: dq-3's is)."""
    model, _ = zoo.load()
    crop = photo.crop((320, 192, 448, 288))
    original = np.asarray(crop).astype(int)
    sizes, psnrs = [], []
    for point in model.ladder.rungs()[model.ladder.lossy_count - 1 :]:
        data = dqcodec.compress(crop, quality=point.quality)
        decoded = dqcodec.decompress(data)
        if point.tolerance:
            assert np.abs(np.asarray(decoded).astype(int) - original).max() <= point.bound
        else:
            psnrs.append(metrics(crop, decoded)[0])
        sizes.append(len(data))
    assert len(psnrs) >= 2 and sizes == sorted(sizes) and psnrs == sorted(psnrs), (sizes, psnrs)


@pytest.mark.parametrize("quality", [1, 4, 7])
def test_payload_is_within_half_a_percent_of_the_ideal(files, quality):
    info = dqcodec.inspect(files[quality])
    assert 0.995 * info.ideal_payload_bits <= info.payload_bits <= 1.005 * info.ideal_payload_bits


def test_decoding_is_deterministic(files):
    data = files[3]
    assert np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(dqcodec.decompress(data)))


def test_encoder_effort_lowers_distortion_plus_rate(photo):
    """Refinement descends on MSE + RATE_LAMBDA * bpp; on a real model and photo it must end lower."""
    from dqcodec import refine

    crop = photo.crop((256, 128, 384, 256))

    def cost(data):
        decoded = np.asarray(dqcodec.decompress(data), dtype=np.float64) / 255
        mse = np.mean((decoded - np.asarray(crop, dtype=np.float64) / 255) ** 2)
        return mse + refine.RATE_LAMBDA * 8 * len(data) / (crop.width * crop.height)

    # dq-2's quality 4 (6 stride-8 groups): dq-3's lossy qualities have 1 or 2, where refinement gains under 1%
    plain, refined = (cost(dqcodec.compress(crop, model="dq-2", quality=4, effort=e)) for e in (0, 1))
    assert refined < 0.98 * plain, (plain, refined)


def test_files_name_the_default_lossy_and_lossless_models(photo):
    """Without a model named, lossy and lossless files are written by dq-3, and both decode; dq-hier still
    writes lossless files when asked to."""
    from dqcodec import defaults

    crop = photo.crop((0, 0, 48, 32))
    lossy, lossless = dqcodec.compress(crop), dqcodec.compress(crop, lossless=True)
    assert (dqcodec.inspect(lossy).header.model, dqcodec.inspect(lossless).header.model) == ("dq-3", "dq-3")
    assert (defaults.default_model(), defaults.default_model(lossless=True)) == ("dq-3", "dq-3")
    assert np.array_equal(np.asarray(dqcodec.decompress(lossless)), np.asarray(crop))
    assert metrics(crop, dqcodec.decompress(lossy))[0] > 20
    exact = dqcodec.compress(crop, model="dq-hier", lossless=True)
    assert np.array_equal(np.asarray(dqcodec.decompress(exact)), np.asarray(crop))
