"""Pair files (issue 32): two views in one file, a common stream and a local stream per view."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dqcodec
from cli.main import cli
from dqcodec import codec, disparity, pairs
from dqcodec.entropy import StreamDecoder, StreamEncoder
from tests.conftest import photo_like

GOLDEN = Path(__file__).parent / "golden" / "pairs"  # not among the single-image golden files
RESIDUAL_QUALITY = 4  # the tiny model's one residual quality
NEAR_LOSSLESS = 5  # samples within 2


def textured(height, width, seed=0):
    """Blocky texture a disparity search can lock on to (photo_like is periodic along a row)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3))
    return np.repeat(np.repeat(coarse, 4, 0), 4, 1)[:height, :width].astype(np.uint8)


def stereo(height=64, width=96, shift=8):
    """A view and the same scene seen ``shift`` columns to the right: view 1's pixel x is view 0's x + shift."""
    scene = textured(height, width + shift)
    return scene[:, :width], scene[:, shift:]


def decoded_arrays(data, views=(0, 1)):
    return [np.asarray(image) for image in pairs.decompress_pair(data, views)]


@pytest.mark.parametrize("coding", list(pairs.ViewCoding))
def test_every_coding_of_view_1_round_trips_and_view_0_is_the_common_file(tiny_zoo, coding):
    first, second = stereo()
    data = pairs.compress_pair(first, second, quality=RESIDUAL_QUALITY, model=tiny_zoo, coding=coding)
    pair = pairs.unpack(data)
    assert pair.coding == coding and pair.local[0] == b""
    both = decoded_arrays(data)
    assert np.array_equal(both[0], np.asarray(dqcodec.decompress(pair.common)))
    assert np.array_equal(decoded_arrays(data, (1,))[0], both[1]) and both[1].shape == second.shape
    assert np.abs(both[1].astype(int) - second).mean() < 40


def test_a_predicted_view_costs_less_than_a_file_of_its_own_on_a_shifted_pair(tiny_zoo):
    first, second = stereo()
    predicted = pairs.compress_pair(
        first, second, quality=RESIDUAL_QUALITY, model=tiny_zoo, coding=pairs.ViewCoding.PREDICTED
    )
    own = dqcodec.compress(second, quality=RESIDUAL_QUALITY, model=tiny_zoo)
    assert len(pairs.unpack(predicted).local[1]) < 0.8 * len(own)
    chosen = pairs.compress_pair(first, second, quality=RESIDUAL_QUALITY, model=tiny_zoo)
    assert pairs.unpack(chosen).coding != pairs.ViewCoding.OWN


def test_views_of_different_sizes_and_modes_come_back_as_they_were(tiny_zoo):
    gray = Image.fromarray(photo_like(30, 70, seed=3)[..., 0])
    for quality in (1, RESIDUAL_QUALITY):
        first, second = pairs.decompress_pair(
            pairs.compress_pair(photo_like(40, 50), gray, quality=quality, model=tiny_zoo)
        )
        assert (first.mode, first.size, second.mode, second.size) == ("RGB", (50, 40), "L", (70, 30))
    for small in ((1, 1), (3, 200)):
        for coding in pairs.ViewCoding:
            data = pairs.compress_pair(photo_like(*small), photo_like(*small[::-1]), 4, tiny_zoo, coding=coding)
            assert [image.size for image in pairs.decompress_pair(data)] == [small[::-1], small]


def test_a_near_lossless_pair_codes_view_1_on_its_own_within_its_bound(tiny_zoo):
    first, second = stereo(32, 32, 4)
    data = pairs.compress_pair(first, second, quality=NEAR_LOSSLESS, model=tiny_zoo)
    assert pairs.unpack(data).coding == pairs.ViewCoding.OWN
    for decoded, original in zip(decoded_arrays(data), (first, second)):
        assert np.abs(decoded.astype(int) - original).max() <= 2
    with pytest.raises(dqcodec.ArgumentError, match="cannot be predicted"):
        pairs.compress_pair(first, second, quality=NEAR_LOSSLESS, model=tiny_zoo, coding=pairs.ViewCoding.PREDICTED)


def test_info_reports_every_streams_bytes(tiny_zoo):
    first, second = stereo()
    data = pairs.compress_pair(first, second, quality=RESIDUAL_QUALITY, model=tiny_zoo)
    info = pairs.inspect_pair(data)
    assert sum(info.stream_bytes.values()) + 18 + 4 == info.file_bytes == len(data)
    assert (info.second.width, info.second.height) == (96, 64)


# ---- hostile bytes ------------------------------------------------------------------------------


def repacked(data, **changes):
    """The pair file with fields changed, its checksum made right again."""
    pair = pairs.unpack(data)
    coding = changes.get("coding", int(pair.coding))
    common, local = changes.get("common", pair.common), changes.get("local", pair.local)
    body = (
        struct.pack("<4sBB3I", pairs.MAGIC, pairs.VERSION, coding, len(common), *map(len, local))
        + common
        + b"".join(local)
    )
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture
def pair_file(tiny_zoo):
    first, second = stereo()
    return pairs.compress_pair(first, second, quality=RESIDUAL_QUALITY, model=tiny_zoo, coding=pairs.ViewCoding.MIXED)


def test_damaged_pair_files_are_refused_with_a_dqcodec_error(pair_file):
    pair = pairs.unpack(pair_file)
    local = pair.local[1]
    bad = [
        pair_file[:-1],
        pair_file[:10],
        b"DQP\x00" + bytes(40),
        pair_file[:30] + bytes([pair_file[30] ^ 1]) + pair_file[31:],
        repacked(pair_file, coding=9),
        repacked(pair_file, local=(b"x", local)),
        repacked(pair_file, local=(b"", local[:8])),
        repacked(pair_file, local=(b"", local[:-4])),
        repacked(pair_file, local=(b"", local + bytes(4))),
        repacked(pair_file, coding=int(pairs.ViewCoding.PREDICTED)),
        repacked(pair_file, common=pair.common[:-8]),
        repacked(pair_file, local=(b"", local[:12] + bytes(4) + local[16:])),  # no codes, in a mixed view
        repacked(pair_file, local=(b"", local[:12] + struct.pack("<I", len(local)) + local[16:])),
    ]
    for data in bad:
        with pytest.raises(dqcodec.DQCodecError):
            pairs.decompress_pair(data)


def test_a_pair_file_is_not_a_single_image_file_and_the_other_way_round(pair_file, tiny_zoo):
    with pytest.raises(dqcodec.ContainerError, match="pair file"):
        dqcodec.decompress(pair_file)
    with pytest.raises(dqcodec.ContainerError, match="not a dq pair file"):
        pairs.decompress_pair(dqcodec.compress(photo_like(20, 20), model=tiny_zoo))
    with pytest.raises(dqcodec.ArgumentError):
        pairs.decompress_pair(pair_file, views=(2,))


# ---- disparity ----------------------------------------------------------------------------------


def test_the_search_finds_a_shift_and_prediction_copies_it():
    first, second = stereo(96, 128, 12)
    vectors = disparity.estimate(first, second)
    inner = vectors[1:-1, 1:-2]  # blocks whose match lies inside view 0
    assert (inner == (0, 24)).all(axis=-1).mean() > 0.9  # in halves of a pixel
    prediction = disparity.predict(first, vectors, *second.shape[:2])
    assert np.array_equal(prediction[16:-16, 16:-32], second[16:-16, 16:-32])


@pytest.mark.parametrize("seed", range(4))
def test_vectors_decode_to_what_was_coded(seed):
    rng = np.random.default_rng(seed)
    vectors = rng.integers(-300, 300, (5, 7, 2)) if seed else np.zeros((3, 4, 2), dtype=np.int64)
    stream = StreamEncoder()
    disparity.encode_vectors(vectors, stream)
    decoder = StreamDecoder(stream.to_bytes())
    assert np.array_equal(disparity.decode_vectors(vectors.shape[:2], decoder), vectors)
    decoder.finish()


def test_a_vector_beyond_the_limit_is_refused():
    stream = StreamEncoder()
    disparity.encode_vectors(np.full((2, 3, 2), disparity.MAX_VECTOR + 5), stream)  # what no encoder writes
    with pytest.raises(dqcodec.CorruptStreamError, match="disparity vector"):
        disparity.decode_vectors((2, 3), StreamDecoder(stream.to_bytes()))


# ---- the command line ---------------------------------------------------------------------------


def test_the_command_line_encodes_decodes_and_inspects_a_pair(tiny_zoo, tmp_path):
    first, second = stereo()
    Image.fromarray(first).save(tmp_path / "left.png")
    Image.fromarray(second).save(tmp_path / "right.png")
    runner = CliRunner()
    scene = tmp_path / "scene.dq"
    args = ["encode", "--pair", str(tmp_path / "left.png"), str(tmp_path / "right.png"), "-o", str(scene)]
    result = runner.invoke(cli, [*args, "-q", str(RESIDUAL_QUALITY), "--model", tiny_zoo])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, [*args, "--model", tiny_zoo]).exit_code == 1  # exists: no overwrite
    assert runner.invoke(cli, ["decode", str(scene)]).exit_code == 0
    views = [np.asarray(Image.open(tmp_path / f"scene.{v}.png")) for v in (0, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(views, decoded_arrays(scene.read_bytes())))
    result = runner.invoke(cli, ["decode", str(scene), "--view", "1", "-o", str(tmp_path / "one.png")])
    assert result.exit_code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), views[1])
    result = runner.invoke(cli, ["info", str(scene)])
    assert result.exit_code == 0 and "common" in result.output and "local 1" in result.output
    result = runner.invoke(cli, ["decode", str(scene)])
    assert result.exit_code == 1 and "scene.0.png exists" in result.output
    assert runner.invoke(cli, ["decode", str(scene), "--preview", "--force"]).exit_code == 1
    scene.write_bytes(scene.read_bytes()[:-3])
    result = runner.invoke(cli, ["decode", str(scene), "--force"])
    assert result.exit_code == 1 and "checksum" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("coding", [pairs.ViewCoding.PREDICTED, pairs.ViewCoding.MIXED])
def test_a_reference_a_grey_level_off_changes_view_1_by_as_much_and_decodes_its_stream_the_same(tiny_zoo, coding):
    """What a machine whose float synthesis rounds view 0 differently gets (docs/bitstream.md): no desync."""
    first, second = stereo()
    data = pairs.compress_pair(first, second, quality=RESIDUAL_QUALITY, model=tiny_zoo, coding=coding)
    pair = pairs.unpack(data)
    reference, expected = (np.asarray(image) for image in pairs.decompress_pair(data))
    nudged = np.clip(reference.astype(int) + np.random.default_rng(1).integers(-1, 2, reference.shape), 0, 255)
    opened = codec.open_file(pair.common)
    view = pairs._decode_second(coding, opened, pair.local[1], Image.fromarray(nudged.astype(np.uint8)), None)
    assert np.abs(np.asarray(view).astype(int) - expected).max() <= 1


def test_a_half_pixel_vector_predicts_the_rounded_mean_of_its_neighbours():
    reference = np.array([[0, 10, 21], [30, 40, 50]], dtype=np.uint8)[..., None]
    prediction = disparity.predict(reference, np.array([[[1, 1]]]), 1, 2)[..., 0]
    assert prediction.tolist() == [[20, 30]]  # (0+10+30+40+2)>>2, (10+21+40+50+2)>>2
    assert disparity.predict(reference, np.array([[[0, -1]]]), 1, 3)[..., 0].tolist() == [[0, 5, 16]]


def test_eval_finds_pairs_and_reads_back_the_points_it_wrote(tmp_path):
    from dqcodec import evaluate_pairs

    for folder in ("stereo/a", "stereo/b", "lone", "two/deeper"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("stereo/a/0.png", "stereo/a/1.png", "stereo/b/x.png", "lone/0.png", "lone/1.png", "two/deeper/0.png"):
        Image.fromarray(photo_like(8, 8)).save(tmp_path / name)
    (tmp_path / "two/deeper/1.png").write_bytes((tmp_path / "lone/0.png").read_bytes())
    found = [(p.kind, p.name) for p in evaluate_pairs.find_pairs(tmp_path)]
    assert found == [("", "lone"), ("stereo", "stereo/a"), ("two", "two/deeper")]
    points = [
        evaluate_pairs.PairPoint(
            codec, q, "stereo/a", "stereo", 100 * q + extra, q / 10, 30 + q, 29 + q, 31 + q, 1.0, 0.5, 0.3
        )
        for codec, extra in (("dq-pair", 0), ("dq", 20))
        for q in (1, 2, 3, 4)
    ]
    evaluate_pairs.write(tmp_path / "out", points, evaluate_pairs.summarize(points))
    assert evaluate_pairs.read_points(tmp_path / "out" / "pair_points.csv") == points


@pytest.mark.parametrize("name", ["v1-pair-mixed-q6-rgb-80x56", "v1-pair-predicted-q2-rgb-80x56"])
def test_pair_files_of_version_1_still_decode(name):
    """Version 1 (session 23: two bases, no photometric correction) decodes to what its encoder decoded, within
    the level a lossy synthesis may differ by on another machine."""
    data = (GOLDEN / f"{name}.dq").read_bytes()
    assert pairs.unpack(data).version == 1
    for index, view in enumerate(pairs.decompress_pair(data)):
        expected = np.asarray(Image.open(GOLDEN / f"{name}.{index}.png")).astype(int)
        assert np.abs(np.asarray(view).astype(int) - expected).max() <= 1


def test_the_photometric_correction_finds_another_cameras_gain_and_offset_and_never_amplifies():
    prediction = textured(64, 96)
    target = np.clip(np.round(prediction * np.array([0.8, 0.9, 1.0]) + np.array([20, -10, 0])), 0, 255)
    gains = disparity.fit_gains(prediction, target.astype(np.uint8))
    assert np.abs(gains[:, 0] - [51, 58, 64]).max() <= 1 and np.abs(gains[:, 1] - [20, -10, 0]).max() <= 2
    corrected = disparity.apply_gains(prediction, gains).astype(int)
    assert np.abs(corrected - target).mean() < 1
    assert np.array_equal(disparity.apply_gains(prediction, disparity.IDENTITY_GAINS), prediction)
    brighter = np.clip(prediction * 1.5, 0, 255).astype(np.uint8)
    assert disparity.fit_gains(prediction, brighter)[:, 0].max() <= 1 << disparity.GAIN_BITS
    nudged = np.clip(prediction + np.random.default_rng(2).integers(-1, 2, prediction.shape), 0, 255).astype(np.uint8)
    moved = disparity.apply_gains(nudged, gains).astype(int) - corrected
    assert np.abs(moved).max() <= 1  # a gain of at most 1 never widens a level's difference
    stream = StreamEncoder()
    disparity.encode_gains(gains, stream)
    assert np.array_equal(disparity.decode_gains(StreamDecoder(stream.to_bytes())), gains)


def test_a_mixed_block_takes_the_closest_of_the_codes_image_the_prediction_and_their_mean():
    own = np.full((32, 48, 3), 100, dtype=np.uint8)
    prediction = np.full((32, 48, 3), 120, dtype=np.uint8)
    target = np.full((32, 48, 3), 110, dtype=np.uint8)  # the mean everywhere but where set below
    target[:16, :16], target[:16, 16:32] = 100, 120
    choices = pairs._closest_bases(prediction, own, target)
    assert choices.tolist() == [[pairs.Base.CODES, pairs.Base.PREDICTION, pairs.Base.MEAN], [pairs.Base.MEAN] * 3]
    assert np.array_equal(pairs._mixed_base(choices, prediction, own), target)
    stream = StreamEncoder()
    pairs._encode_choices(choices, stream)
    assert np.array_equal(
        pairs._decode_choices(choices.shape, StreamDecoder(stream.to_bytes()), pairs.VERSION), choices
    )
