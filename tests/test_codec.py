import numpy as np
import pytest
import torch
from PIL import Image

import dqcodec
from dqcodec import codec, exact, zoo
from dqcodec.container import ContainerError, unpack
from dqcodec.point import Kind
from dqcodec.recorder import Recorder
from dqcodec.stack import LayerStack

from .conftest import TINY, TINY_3, photo_like, tiny_model


def _decoded_codes(model, out, quality, recorder=None):
    """The codes ``model.compress`` wrote for a region, decoded as a decoder does."""
    size = (out["shape"][0] * 16, out["shape"][1] * 16)
    return LayerStack(model, model.ladder.resolve(quality)).decode_codes(out["strings"], size, 0, recorder)[0]


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (17, 33), (48, 64)])
@pytest.mark.parametrize("quality", [1, 2, 3])
def test_round_trip_keeps_size_and_mode(tiny_zoo, size, quality):
    h, w = size
    data = dqcodec.compress(photo_like(h, w), quality=quality, model=tiny_zoo)
    image = dqcodec.decompress(data)
    assert image.size == (w, h) and image.mode == "RGB"
    assert unpack(data)[0].quality == quality


def test_grayscale_decodes_to_grayscale(tiny_zoo):
    gray = Image.fromarray(photo_like(20, 30)[..., 0])
    image = dqcodec.decompress(dqcodec.compress(gray, quality=2, model=tiny_zoo))
    assert image.mode == "L" and image.size == (30, 20)


def test_inputs_may_be_paths_arrays_or_images(tiny_zoo, tmp_path):
    array = photo_like(16, 24)
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    results = {dqcodec.compress(x, model=tiny_zoo, quality=3) for x in (array, Image.fromarray(array), path, str(path))}
    assert len(results) == 1


@pytest.mark.parametrize("config", [TINY, TINY_3], ids=["2 levels", "3 levels"])
def test_decoder_gets_exactly_the_encoders_indices_and_image(config):
    model = tiny_model(config=config)
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(40, 56))))
    quality = model.ladder.lossy_count  # the top lossy quality codes every group
    features, context, expected = model.analyse(x), None, []
    for i, level in enumerate(model.levels):
        float_context = None if context is None else exact.to_float(context)
        _, indices, _, _ = level.quantizer(model.level_input(i, features[i], float_context))
        expected.append(indices)
        if i < model.num_levels - 1:
            context = model.next_context(i, level.fixed_codes(indices, level.num_groups), context, exact.run_module)
    out = model.compress(x, quality=quality)
    decoded = _decoded_codes(model, out, quality)
    for got, want in zip(decoded.indices, expected):
        assert torch.equal(got, want)
    # the lossy image: the synthesis of those codes with the context of the levels above, which the
    # decoder recomputes in float (here it is the priors' fixed-point one): equal to well within a level
    codes = model.levels[-1].quantizer.decode_indices(expected[-1])
    image = model.synthesis(model.synthesis_input(model.num_levels - 1, codes, exact.to_float(context))).clamp(0, 1)
    assert torch.allclose(model.decompress(out["strings"], out["shape"], quality)["x_hat"], image, atol=1e-3)


def test_a_quality_that_codes_no_group_of_a_level_leaves_its_stream_empty():
    model = tiny_model(config=TINY_3)
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(48, 64))))
    sizes = [[len(s) for s in model.compress(x, quality=q)["strings"]] for q in (2, 3, 4)]
    assert sizes[0][2] == 0 < sizes[1][2] < sizes[2][2]
    assert sizes[0][:2] == sizes[1][:2] == sizes[2][:2]  # the levels above are coded alike


def test_higher_quality_spends_more_bits_on_the_bottom_level():
    model = tiny_model()
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(64, 64))))
    sizes = [len(model.compress(x, quality=q)["strings"][1]) for q in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_a_rate_weight_trades_distortion_for_fewer_bits():
    model = tiny_model()
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(64, 64))))
    plain = model.compress(x, quality=3, rate_weight=0.0)
    constrained = model.compress(x, quality=3, rate_weight=5.0)
    assert sum(map(len, constrained["strings"])) < sum(map(len, plain["strings"]))
    decoded = model.decompress(constrained["strings"], constrained["shape"], 3)["x_hat"]
    assert decoded.shape == x.shape


def test_refinement_moves_the_codes_and_the_decoder_reads_them_as_coded():
    model = tiny_model()
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(48, 64))))
    plain = model.compress(x, quality=3)
    refined = model.compress(x, quality=3, refine_steps=10)
    assert refined["strings"][0] == plain["strings"][0]  # the top level is not refined
    assert refined["strings"][1] != plain["strings"][1]
    decoded = model.decompress(refined["strings"], refined["shape"], 3)["x_hat"]
    assert decoded.shape == x.shape
    assert not any(p.grad is not None for p in model.parameters())


def test_effort_is_checked(tiny_zoo):
    with pytest.raises(ValueError, match="effort must be between 0 and 2"):
        dqcodec.compress(photo_like(8, 8), model=tiny_zoo, effort=3)
    with pytest.raises(ValueError, match="lossy"):
        dqcodec.compress(photo_like(8, 8), model=tiny_zoo, lossless=True, effort=1)


def test_probability_tables_do_not_depend_on_the_thread_count():
    model = tiny_model()
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(48, 80))))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = model.compress(x, quality=3)
        two_threads = Recorder(keep_tables=True)
        two = _decoded_codes(model, out, 3, two_threads)
        torch.set_num_threads(1)
        one_thread = Recorder(keep_tables=True)
        one = _decoded_codes(model, out, 3, one_thread)
    finally:
        torch.set_num_threads(previous)
    tables_one, tables_two = one_thread.tables, two_threads.tables
    assert all(torch.equal(a, b) for a, b in zip(one.indices, two.indices))
    assert len(tables_one) == len(tables_two) == 2 + 4
    for (f1, s1), (f2, s2) in zip(tables_one, tables_two):
        assert f1.tobytes() == f2.tobytes()
        assert np.array_equal(s1, s2)


@pytest.mark.parametrize("effort", [0, 2])
def test_thread_count_of_encoder_and_decoder_may_differ(tiny_zoo, effort):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = dqcodec.compress(photo_like(33, 47), quality=3, model=tiny_zoo, effort=effort)
        image_two = np.asarray(dqcodec.decompress(data))
        torch.set_num_threads(1)
        image_one = np.asarray(dqcodec.decompress(data))
        data_one = dqcodec.compress(photo_like(33, 47), quality=3, model=tiny_zoo, effort=effort)
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(image_one, image_two)
    if (
        not effort
    ):  # refinement's float gradient steps may pick other codes on another thread count; any file decodes the same
        assert data_one == data


def test_payload_matches_the_ideal_code_length(tiny_zoo):
    info = dqcodec.inspect(dqcodec.compress(photo_like(128, 192), quality=3, model=tiny_zoo))
    assert info.ideal_payload_bits <= info.payload_bits <= 1.02 * info.ideal_payload_bits + 2 * 64


@pytest.mark.parametrize("mode", ["RGBA", "LA", "I;16", "I", "F", "CMYK"])
def test_modes_that_would_lose_data_are_refused_by_name(tiny_zoo, mode):
    image = Image.new(mode, (8, 8))
    with pytest.raises(dqcodec.UnsupportedImageError, match=mode.replace(";", ".")):
        dqcodec.compress(image, model=tiny_zoo)


@pytest.mark.parametrize("quality", [0, -1, 9])
def test_bad_quality_is_refused(tiny_zoo, quality):
    with pytest.raises(ValueError, match="quality"):
        dqcodec.compress(photo_like(8, 8), quality=quality, model=tiny_zoo)


def test_corrupt_and_truncated_files_raise_clean_errors(tiny_zoo):
    data = dqcodec.compress(photo_like(32, 32), quality=2, model=tiny_zoo)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    for bad in (bytes(flipped), data[:-5], data[:10], b""):
        with pytest.raises(ContainerError):
            dqcodec.decompress(bad)


def test_a_well_formed_file_with_the_wrong_streams_is_refused(tiny_zoo):
    from dqcodec.container import pack

    header, streams = unpack(dqcodec.compress(photo_like(16, 16), model=tiny_zoo, quality=1))
    with pytest.raises(dqcodec.ContainerError, match="1 streams; model 'tiny' writes 2"):
        dqcodec.decompress(pack(header, streams[:1]))
    with pytest.raises(dqcodec.CorruptStreamError):
        dqcodec.decompress(pack(header, [streams[0], streams[1] + b"\x01\x02\x03\x04" * 3]))


def test_files_from_other_weights_are_refused(tiny_zoo, tmp_path, monkeypatch):
    data = dqcodec.compress(photo_like(16, 16), model=tiny_zoo, quality=1)
    other = tmp_path / "other"
    zoo.export(tiny_model(seed=1), "tiny", other)
    monkeypatch.setenv("DQCODEC_MODELS", str(other))
    with pytest.raises(zoo.ModelError, match="other weights"):
        dqcodec.decompress(data)


def test_a_damaged_weights_file_is_refused(tmp_path, monkeypatch):
    path = zoo.export(tiny_model(), "tiny", tmp_path)
    damaged = bytearray(path.read_bytes())
    damaged[-10] ^= 1
    path.write_bytes(bytes(damaged))
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path))
    with pytest.raises(zoo.ModelError, match="damaged"):
        zoo.load("tiny")


def test_the_model_interface_codes_every_point_of_its_ladder():
    """CompressAI's compress/decompress honour residual, near-lossless and lossless points: a residual
    quality's strings are its base quality's and one more, and every point decodes to what it promises."""
    model = tiny_model()
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(32, 48))))
    pixels = (x * 255).round()
    ladder = model.ladder
    base = model.compress(x, quality=2)
    for point in ladder.rungs():
        out = model.compress(x, quality=point.quality)
        assert len(out["strings"]) == model.num_levels + (point.kind != Kind.LOSSY)
        x_hat = model.decompress(out["strings"], out["shape"], point.quality)["x_hat"]
        assert x_hat.shape == x.shape
        if point.kind == Kind.RESIDUAL:
            assert out["strings"][:2] == base["strings"] and out["strings"] != base["strings"]
        if point.kind == Kind.NEAR_LOSSLESS:
            assert (x_hat * 255 - pixels).abs().max() <= point.bound
    exact_out = model.compress(x, quality=1, lossless=True)
    assert torch.equal(
        model.decompress(exact_out["strings"], exact_out["shape"], 1, lossless=True)["x_hat"] * 255, pixels
    )
    with pytest.raises(dqcodec.ArgumentError, match="quality"):
        model.compress(x, quality=len(ladder) + 1)
    with pytest.raises(
        dqcodec.CorruptStreamError, match="expected 3 streams"
    ):  # a residual quality's, without its residual
        model.decompress(base["strings"], base["shape"], quality=ladder.lossy_count + 1)


def test_plain_vq_configuration_codes_too():
    model = tiny_model(depthwise=False)
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(32, 48))))
    out = model.compress(x, quality=2)
    assert model.decompress(out["strings"], out["shape"], 2)["x_hat"].shape == x.shape


def test_bd_rate_leaves_out_a_point_the_curve_dominates():
    """A point with more bits and less PSNR than another (dq-3's near-lossless quality against its finest
    residual one) is off the rate-distortion curve, and does not bend the fit."""
    from dqcodec.evaluate import bd_rate, undominated

    rates, psnrs = [0.2, 0.4, 0.8, 1.6], [30.0, 33.0, 36.0, 39.0]
    cheaper = ([r * 0.9 for r in rates], psnrs)
    assert undominated(rates + [2.0], psnrs + [37.0]) == (rates, psnrs)
    assert bd_rate((rates, psnrs), (cheaper[0] + [2.0], cheaper[1] + [37.0])) == bd_rate((rates, psnrs), cheaper)
    assert abs(bd_rate((rates, psnrs), cheaper) + 10) < 1e-6


def test_bd_rate_of_a_curve_against_itself_and_a_cheaper_copy():
    from dqcodec.evaluate import bd_rate

    rates, psnrs = [0.2, 0.4, 0.8, 1.6], [26.0, 29.0, 32.0, 35.0]
    assert abs(bd_rate((rates, psnrs), (rates, psnrs))) < 1e-9
    assert abs(bd_rate((rates, psnrs), ([r * 0.8 for r in rates], psnrs)) + 20) < 1e-6
    assert bd_rate((rates, psnrs), (rates, [p + 20 for p in psnrs])) is None
