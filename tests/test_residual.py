"""Residual qualities: a lossy quality's codes, then what their image misses as quantized DCTs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import dqcodec
import dqcodec.recorder
from dqcodec import container, residual
from dqcodec.entropy import StreamDecoder, StreamEncoder
from dqcodec.errors import ArgumentError, CorruptStreamError
from dqcodec.model import DQConfig

from .conftest import TINY, photo_like

RESIDUAL_QUALITY = 4  # the tiny model's: quality 2's codes, step 16


def _coded(original: np.ndarray, base: np.ndarray, step: int, rate_weight: float = residual.RATE_WEIGHT) -> bytes:
    stream = StreamEncoder()
    residual.encode(original, base, step, stream, rate_weight)
    return stream.to_bytes()


def _coded_coefficients(quantized: np.ndarray, step: int) -> bytes:
    stream = StreamEncoder()
    residual.encode_quantized(quantized, step, stream)
    return stream.to_bytes()


def _decoded(data: bytes, shape, step: int) -> np.ndarray:
    stream = StreamDecoder(data)
    difference = residual.decode(*shape, step, stream)
    stream.finish()
    return difference


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 16, 60, residual.MAX_STEP]), st.integers(0, 2**31)
)
def test_the_decoder_gets_the_encoders_coefficients_back(height, width, step, seed):
    """Whatever the size (blocks cut by the edge) and step, the stream decodes to the integer inverse of
    exactly the coefficients the encoder chose, by dead-zone rounding or by rate and distortion."""
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    difference = original.astype(np.int64) - base
    plain = residual.quantize(difference, step)
    chosen = residual.rate_distortion_round(residual.forward(difference) / step, plain, residual.RATE_WEIGHT)
    for quantized in (plain, chosen):
        assert np.array_equal(
            _decoded(_coded_coefficients(quantized, step), (height, width), step),
            residual.inverse(quantized, step)[:height, :width],
        )
    assert np.array_equal(_coded(original, base, step), _coded_coefficients(chosen, step))


@pytest.mark.parametrize("step", [6, 20, 60])
def test_rate_distortion_rounding_lowers_the_cost_it_weighs(step):
    """Each coefficient is rounded to 0, the floor or the ceiling of its magnitude, and the whole stream
    costs less in squared error (in steps) + weight x bits than dead-zone rounding's."""
    original = photo_like(64, 72)
    base = np.clip(original.astype(int) + np.random.default_rng(2).integers(-40, 41, original.shape), 0, 255)
    difference = original.astype(np.int64) - base
    coefficients = residual.forward(difference) / step
    plain = residual.quantize(difference, step)
    chosen = residual.rate_distortion_round(coefficients, plain, residual.RATE_WEIGHT)
    magnitude = np.abs(coefficients)
    assert np.all(
        (np.abs(chosen) == 0) | (np.abs(chosen) == np.floor(magnitude)) | (np.abs(chosen) == np.floor(magnitude) + 1)
    )
    assert np.all(chosen * coefficients >= 0)

    def cost(quantized):
        bits = 8 * len(_coded_coefficients(quantized, step))
        return ((coefficients - quantized) ** 2).sum() + residual.RATE_WEIGHT * bits

    assert cost(chosen) < cost(plain)


def test_deblocking_smooths_a_small_step_at_a_block_edge_only():
    """A step of 6 where two blocks meet, in a flat difference, is halved at step 20 (limit 2 a side); a
    flat difference, a step inside a block and a large step at an edge (an edge of the picture) stay."""
    flat = np.full((16, 24, 3), -7, dtype=np.int64)
    assert np.array_equal(residual.deblock(flat, 20), flat)
    at_edge = flat.copy()
    at_edge[:, 8:] += 6
    smoothed = residual.deblock(at_edge, 20)
    assert np.all(smoothed[:, 7] == -5) and np.all(smoothed[:, 8] == -3)
    assert np.array_equal(smoothed[:, :7], at_edge[:, :7]) and np.array_equal(smoothed[:, 9:], at_edge[:, 9:])
    inside = flat.copy()
    inside[:, 5:] += 6
    assert np.array_equal(residual.deblock(inside, 20), inside)
    large = flat.copy()
    large[:, 8:] += 120
    assert np.array_equal(residual.deblock(large, 20), large)


def test_a_residual_codec_deblocks_its_difference_only_when_its_point_says_so():
    original = photo_like(40, 48)
    noise = np.random.default_rng(3).integers(-30, 31, original.shape)
    base = np.clip(original.astype(int) + noise, 0, 255).astype(np.uint8)
    stream = StreamEncoder()
    residual.ResidualCodec(30).compress(original, base, stream)
    data = stream.to_bytes()
    difference = _decoded(data, base.shape[:2], 30)
    plain = residual.ResidualCodec(30).decompress(base, StreamDecoder(data), dqcodec.recorder.Recorder())
    smoothed = residual.ResidualCodec(30, deblocking=True).decompress(
        base, StreamDecoder(data), dqcodec.recorder.Recorder()
    )
    assert np.array_equal(plain, residual.add(base, difference))
    assert np.array_equal(smoothed, residual.add(base, residual.deblock(difference, 30)))
    assert not np.array_equal(smoothed, plain)


def test_a_residual_codec_rounds_for_rate_with_its_points_weight_and_plainly_without_one():
    """dq-2's point has no rate weight, so its encoder writes what it always wrote; dq-3's rounds for rate."""
    original = photo_like(48, 56)
    noise = np.random.default_rng(4).integers(-30, 31, original.shape)
    base = np.clip(original.astype(int) + noise, 0, 255).astype(np.uint8)
    coded = {}
    for weight in (0.0, residual.RATE_WEIGHT):
        stream = StreamEncoder()
        residual.ResidualCodec(20, rate_weight=weight).compress(original, base, stream)
        coded[weight] = stream.to_bytes()
    assert coded[0.0] == _coded(original, base, 20, rate_weight=0)
    assert coded[residual.RATE_WEIGHT] == _coded(original, base, 20)
    assert coded[residual.RATE_WEIGHT] != coded[0.0]


def test_the_residual_layer_codes_without_torch(tmp_path):
    """The residual layer needs numpy and constriction only (issue 30): with torch unimportable, a tile codes
    and decodes to the bytes and pixels this process gets."""
    from dqcodec.testing import kernels

    original = photo_like(40, 48)
    base = np.clip(original.astype(int) + np.random.default_rng(5).integers(-30, 31, original.shape), 0, 255)
    base = base.astype(np.uint8)
    np.savez(tmp_path / "tile.npz", original=original, base=base)
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from dqcodec import residual\n"
        "from dqcodec.entropy import StreamDecoder, StreamEncoder\n"
        "from dqcodec.recorder import Recorder\n"
        "tile = np.load(sys.argv[1])\n"
        "codec = residual.ResidualCodec(20, deblocking=True, rate_weight=residual.RATE_WEIGHT)\n"
        "stream = StreamEncoder()\n"
        "codec.compress(tile['original'], tile['base'], stream)\n"
        "data = stream.to_bytes()\n"
        "np.savez(sys.argv[2], data=np.frombuffer(data, np.uint8), decoded=codec.decompress(tile['base'], StreamDecoder(data), Recorder()))\n"
    )
    done = kernels.without_torch(code, tmp_path / "tile.npz", tmp_path / "out.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    codec = residual.ResidualCodec(20, deblocking=True, rate_weight=residual.RATE_WEIGHT)
    stream = StreamEncoder()
    codec.compress(original, base, stream)
    data = stream.to_bytes()
    out = np.load(tmp_path / "out.npz")
    assert out["data"].tobytes() == data
    assert np.array_equal(out["decoded"], codec.decompress(base, StreamDecoder(data), dqcodec.recorder.Recorder()))


def test_the_integer_inverse_is_within_a_level_of_the_float_one():
    rng = np.random.default_rng(1)
    quantized = rng.integers(-40, 41, (3, 4, 5, 64)) * (rng.random((3, 4, 5, 64)) < 0.3)
    values = np.empty(quantized.shape)
    values[..., residual.ZIGZAG] = quantized * 7
    spatial = residual.DCT.T @ values.reshape(3, 4, 5, 8, 8) @ residual.DCT
    planes = spatial.transpose(0, 1, 3, 2, 4).reshape(3, 32, 40)
    exact = np.einsum("cr,chw->hwr", residual.COLOUR, planes)
    assert np.abs(residual.inverse(quantized, 7) - exact).max() <= 1


def _int64_inverse(quantized: np.ndarray, step: int) -> np.ndarray:
    """docs/bitstream.md's definition of the decoded difference, in int64 throughout."""
    _, bh, bw, _ = quantized.shape
    values = np.empty_like(quantized)
    values[..., residual.ZIGZAG] = quantized * step
    spatial = residual.DCT_FIXED.T @ values.reshape(3, bh, bw, 8, 8) @ residual.DCT_FIXED
    spatial = (spatial + (1 << 13)) >> 14
    planes = spatial.transpose(0, 1, 3, 2, 4).reshape(3, bh * 8, bw * 8)
    return (np.einsum("cr,chw->hwr", residual.COLOUR_FIXED, planes) + (1 << 23)) >> 24


@pytest.mark.parametrize("step", [1, 7, residual.MAX_STEP])
def test_the_float64_inverse_is_the_int64_definition_even_at_the_largest_coefficients(step):
    """The decoder's float64 products are exact: the same integers as int64, for the largest magnitudes a
    table may hold at a step, of either sign, and random ones."""
    rng = np.random.default_rng(step)
    largest = residual.max_magnitude(step)
    extremes = rng.choice([-largest, largest], (3, 2, 3, 64))
    random = rng.integers(-largest, largest + 1, (3, 2, 3, 64))
    for quantized in (extremes, random, np.full((3, 1, 1, 64), largest), np.full((3, 1, 1, 64), -largest)):
        assert np.array_equal(residual.inverse(quantized, step), _int64_inverse(quantized, step))


def test_a_fine_step_comes_close_to_the_original_and_a_coarse_one_costs_less():
    original = photo_like(40, 56)
    base = np.clip(original.astype(int) + np.random.default_rng(0).integers(-30, 31, original.shape), 0, 255).astype(
        np.uint8
    )
    errors, sizes = [], []
    for step in (2, 8, 32):
        data = _coded(original, base, step)
        decoded = residual.add(base, _decoded(data, original.shape[:2], step))
        errors.append(np.abs(decoded.astype(int) - original).mean())
        sizes.append(len(data))
    assert errors[0] < errors[1] < errors[2] < np.abs(base.astype(int) - original).mean()
    assert sizes[0] > sizes[1] > sizes[2]
    assert errors[0] < 1


@pytest.mark.parametrize(
    "largest, zero, decay", [(1, 1, 0), (5, 200, 3000), (300, 128, 4095), (residual.max_magnitude(1), 255, 4095)]
)
def test_tables_are_symmetric_whole_positive_and_geometric_in_the_magnitude(largest, zero, decay):
    table = residual.table(largest, zero, decay)[0]
    assert table.shape == (2 * largest + 1,) and (table >= 1).all() and np.array_equal(table, table[::-1])
    assert (np.diff(table[largest + 1 :]) <= 0).all() and (table == np.floor(table)).all()
    assert abs(table[largest] / table.sum() - zero / residual.ZERO_LEVELS) < 0.01


def test_a_damaged_residual_stream_is_refused():
    original, base = photo_like(24, 32), photo_like(24, 32, seed=1)
    data = _coded(original, base, 4)
    with pytest.raises(CorruptStreamError):
        _decoded(data[: len(data) // 2 // 4 * 4], (24, 32), 4)
    with pytest.raises(CorruptStreamError):
        _decoded(data + bytes(4), (24, 32), 4)


@pytest.mark.parametrize("pairs", [[[0, 8]], [[4, 8]], [[2, 0]], [[2, residual.MAX_STEP + 1]], [[2]]])
def test_a_config_with_a_residual_quality_it_cannot_code_is_refused(pairs):
    with pytest.raises(ArgumentError):
        DQConfig(**{**TINY.__dict__, "residual_steps": pairs})


def test_a_residual_quality_codes_its_base_codes_then_the_difference(tiny_zoo):
    original = photo_like(53, 70, seed=2)
    model_file = dqcodec.compress(original, quality=RESIDUAL_QUALITY, model=tiny_zoo)
    base_file = dqcodec.compress(original, quality=2, model=tiny_zoo)
    header, streams = container.unpack(model_file)
    assert streams[:2] == container.unpack(base_file)[1]
    info = dqcodec.inspect(model_file)
    assert list(info.streams) == ["stride16", "stride8", "residual"] and info.residual_step == 16
    assert "residual" in info.coding and not info.lossless and info.payload_bits >= info.ideal_payload_bits > 0
    decoded = np.asarray(dqcodec.decompress(model_file)).astype(int)
    base = np.asarray(dqcodec.decompress(base_file)).astype(int)
    assert np.abs(decoded - original).mean() < np.abs(base - original).mean()
    with pytest.raises(dqcodec.ContainerError, match="no residual stream"):
        dqcodec.decompress(container.pack(header, streams[:2]))
    refined = dqcodec.compress(original, quality=RESIDUAL_QUALITY, model=tiny_zoo, effort=1)
    assert container.unpack(refined)[0] == header and dqcodec.decompress(refined).size == (
        original.shape[1],
        original.shape[0],
    )


def test_a_garbled_residual_stream_in_a_file_is_one_of_dqcodecs_errors(tiny_zoo):
    header, streams = container.unpack(dqcodec.compress(photo_like(40, 40), quality=RESIDUAL_QUALITY, model=tiny_zoo))
    for garbled in (bytes(len(streams[2])), streams[2][:-4], streams[2][4:]):
        with pytest.raises(dqcodec.CorruptStreamError):
            dqcodec.decompress(container.pack(header, [*streams[:2], garbled]))


def test_a_gray_image_at_a_residual_quality_comes_back_gray(tiny_zoo):
    gray = Image.fromarray(photo_like(30, 45)[..., 1])
    decoded = dqcodec.decompress(dqcodec.compress(gray, quality=RESIDUAL_QUALITY, model=tiny_zoo))
    assert decoded.mode == "L" and decoded.size == gray.size
