"""The shipped model on the sample photo (slower: a real model on a 768x512 image)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dqcodec
from dqcodec import zoo
from dqcodec.evaluate import metrics

PHOTO = Path(__file__).resolve().parent.parent / "examples" / "photo.png"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photo():
    return Image.open(PHOTO).convert("RGB")


@pytest.fixture(scope="module")
def files(photo):
    model, _ = zoo.load()
    return {q: dqcodec.compress(photo, quality=q) for q in range(1, model.num_qualities + 1)}


def test_every_quality_round_trips_and_rates_rise_with_quality(photo, files):
    sizes = []
    for q, data in files.items():
        decoded = dqcodec.decompress(data)
        assert decoded.size == photo.size and decoded.mode == "RGB"
        psnr, _ = metrics(photo, decoded)
        assert psnr > 20, f"quality {q}: {psnr:.2f} dB"
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


@pytest.mark.parametrize("quality", [1, 6])
def test_payload_is_within_half_a_percent_of_the_ideal(files, quality):
    info = dqcodec.inspect(files[quality])
    assert 0.995 * info.ideal_payload_bits <= info.payload_bits <= 1.005 * info.ideal_payload_bits


def test_decoding_is_deterministic(files):
    data = files[3]
    assert np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(dqcodec.decompress(data)))
