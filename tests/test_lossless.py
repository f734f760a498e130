from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dqcodec
from dqcodec import codec, container, exact, pixel_codec, pixel_model, pixel_tables, surgery
from dqcodec.point import Kind
from dqcodec.recorder import Recorder
from dqcodec.stack import LayerStack

from .conftest import photo_like, tiny_model


def test_coding_tables_multiply_to_the_training_likelihood():
    torch.manual_seed(0)
    n, k = 500, 3
    raw = 0.1 * torch.randn(n, pixel_model.PARAMS_PER_COMPONENT * k)
    base = 20 + 200 * torch.rand(n, 3)
    x = (base + 3 * torch.randn(n, 3)).round()
    raw, base = exact.to_fixed(raw), exact.to_fixed(base)  # what the exact networks hand the coder
    expected = pixel_model.mixture_log_prob(
        exact.to_float(raw)[..., None, None], exact.to_float(base)[..., None, None], x[..., None, None]
    )
    chunk = pixel_tables.ChunkDistribution(raw, base)
    coded = torch.zeros(n, dtype=torch.float64)
    for c in range(3):
        table = chunk.table(c)
        symbols, _, _ = table.split(x[:, c].long())
        assert ((symbols > 0) & (symbols <= pixel_tables.WINDOW)).all()  # every value inside its window
        assert (table.frequencies >= 1).all()
        probabilities = torch.from_numpy(table.frequencies / table.frequencies.sum(1, keepdims=True))
        coded += probabilities.gather(1, symbols[:, None]).squeeze(1).log()
        chunk.push(c, x[:, c].long())
    # the integer tables (interpolated sigmoid and exp, 2^-16 arguments) stay within 1% of the float mixture
    assert torch.allclose(coded, expected.flatten().double(), atol=1e-2)


def test_tables_do_not_depend_on_how_their_rows_are_split_or_threaded(monkeypatch):
    torch.manual_seed(3)
    n = 300
    raw = exact.to_fixed(0.5 * torch.randn(n, pixel_model.PARAMS_PER_COMPONENT * 3))
    base = exact.to_fixed(torch.cat([torch.rand(100, 3), 255 - torch.rand(100, 3), 255 * torch.rand(100, 3)]))
    x = (exact.to_float(base) + 3 * torch.randn(n, 3)).round().clamp(0, 255).long()
    whole, split = pixel_tables.ChunkDistribution(raw, base), pixel_tables.ChunkDistribution(raw, base)
    monkeypatch.setattr(pixel_tables, "TABLE_ROWS", 7)
    with pixel_codec._table_builders(2) as pool:
        for c in range(3):
            with monkeypatch.context() as patch:
                patch.setattr(pixel_tables, "TABLE_ROWS", 1 << 14)
                expected = whole.table(c)
            table = split.table(c, pool.map)
            assert table.frequencies.tobytes() == expected.frequencies.tobytes() and torch.equal(
                table.low, expected.low
            )
            # windows that reach 0 or 255 leave nothing to the tail beyond them: the floor frequency 1
            assert (table.frequencies[table.low == 0, 0] == 1).all() and (
                table.frequencies[table.low == 256 - pixel_tables.WINDOW, -1] == 1
            ).all()
            assert (table.low == 0).sum() > 50 and (table.low == 256 - pixel_tables.WINDOW).sum() > 50
            whole.push(c, x[:, c])
            split.push(c, x[:, c])


def test_window_symbols_and_tail_offsets_give_back_every_value():
    values = torch.arange(256).repeat(3)
    low = torch.tensor([0, 77, 256 - pixel_tables.WINDOW]).repeat_interleave(256)
    table = pixel_tables.WindowTable(low, np.ones((len(values), pixel_tables.WINDOW + 2)))
    symbols, offsets, sizes = table.split(values)
    assert ((offsets >= 0) & (offsets < sizes)).all()
    assert torch.equal(table.join(symbols, offsets), values)


@pytest.mark.parametrize("tolerance", [1, 4, 12, pixel_tables.MAX_TOLERANCE])
def test_bins_decode_within_twice_the_tolerance_and_as_the_encoder_predicts(tolerance):
    torch.manual_seed(tolerance)
    width, bins = pixel_tables.window_bins(tolerance)
    values = torch.arange(256).repeat(4)
    low = torch.tensor([0, 77, 130, 256 - bins * width]).repeat_interleave(256)
    mass = torch.randint(0, 1 << 20, (len(values), bins, width))
    mass[:256, 0] = 0  # a bin without mass decodes to its middle

    def value_masses(chosen):
        return mass.gather(1, chosen.view(-1, 1, 1).expand(-1, 1, width)).squeeze(1)

    table = pixel_tables.WindowTable(low, np.ones((len(values), bins + 2)), width, value_masses)
    symbols, offsets, sizes = table.split(values)
    assert ((offsets >= 0) & (offsets < sizes)).all()
    decoded = table.join(symbols, offsets)
    assert torch.equal(decoded, table.quantize(values))
    assert ((decoded - values).abs() <= 2 * tolerance).all() and ((decoded >= 0) & (decoded <= 255)).all()
    assert torch.equal(table.bin_of(decoded), table.bin_of(values))  # a decoded value lies in its bin


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (17, 33), (64, 48)])
def test_lossless_round_trip_is_exact(tiny_zoo, size):
    original = photo_like(*size)
    data = dqcodec.compress(original, model=tiny_zoo, lossless=True)
    assert np.array_equal(np.asarray(dqcodec.decompress(data)), original)


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (64, 48)])
def test_near_lossless_qualities_decode_within_twice_their_tolerance(tiny_zoo, size):
    original = photo_like(*size, seed=1)
    model = dqcodec.zoo.load(tiny_zoo)[0]
    lossless = dqcodec.compress(original, model=tiny_zoo, lossless=True)
    sizes = []
    for point in [p for p in model.ladder.rungs() if p.kind == Kind.NEAR_LOSSLESS]:
        data = dqcodec.compress(original, quality=point.quality, model=tiny_zoo)
        bound = 2 * point.tolerance
        info = dqcodec.inspect(data)
        assert info.near_lossless_bound == bound > 0 and not info.lossless and "near-lossless" in info.coding
        error = np.abs(np.asarray(dqcodec.decompress(data)).astype(int) - original)
        assert error.max() <= bound
        sizes.append(len(data))
    if size[0] * size[1] > 1:  # a wider tolerance, a smaller file than lossless
        assert len(lossless) > sizes[0] > sizes[1]


def test_a_near_lossless_file_carries_the_codes_of_the_lossless_quality(tiny_zoo):
    original = photo_like(40, 56)
    model = dqcodec.zoo.load(tiny_zoo)[0]
    near = dqcodec.compress(original, quality=len(model.ladder), model=tiny_zoo)
    exact_file = dqcodec.compress(original, model=tiny_zoo, lossless=True)
    assert container.unpack(near)[1][:2] == container.unpack(exact_file)[1][:2]
    assert np.array_equal(
        np.asarray(dqcodec.decompress(near, preview=True)), np.asarray(dqcodec.decompress(exact_file, preview=True))
    )


def test_near_lossless_options_that_make_no_sense_are_errors(tiny_zoo):
    model = dqcodec.zoo.load(tiny_zoo)[0]
    with pytest.raises(dqcodec.ArgumentError, match="effort applies to lossy and residual qualities"):
        dqcodec.compress(photo_like(16, 16), quality=len(model.ladder), model=tiny_zoo, effort=1)
    with pytest.raises(dqcodec.ArgumentError, match="lossless file's codes"):
        dqcodec.compress(photo_like(16, 16), quality=len(model.ladder), model=tiny_zoo, lossless=True)


def test_a_near_lossless_header_without_a_pixel_stream_is_refused(tiny_zoo):
    data = dqcodec.compress(photo_like(24, 24), quality=5, model=tiny_zoo)  # tolerance 1
    header, streams = container.unpack(data)
    with pytest.raises(dqcodec.ContainerError, match="no pixels stream"):
        dqcodec.decompress(container.pack(header, streams[:2]))


def test_lossless_grayscale_stays_grayscale_and_exact(tiny_zoo):
    original = photo_like(20, 30)[..., 0]
    decoded = dqcodec.decompress(dqcodec.compress(original, model=tiny_zoo, lossless=True))
    assert decoded.mode == "L" and np.array_equal(np.asarray(decoded), original)


def test_preview_is_the_lossy_image_of_the_same_quality(tiny_zoo):
    original = photo_like(40, 56)
    data = dqcodec.compress(original, quality=2, model=tiny_zoo, lossless=True)
    preview = dqcodec.decompress(data, preview=True)
    lossy = dqcodec.decompress(dqcodec.compress(original, quality=2, model=tiny_zoo))
    assert np.array_equal(np.asarray(preview), np.asarray(lossy))
    assert not np.array_equal(np.asarray(preview), original)


def test_preview_does_not_decode_the_pixel_stream(tiny_zoo):
    original = photo_like(40, 56)
    data = dqcodec.compress(original, quality=2, model=tiny_zoo, lossless=True)
    header, streams = container.unpack(data)
    garbled = container.pack(header, [*streams[:2], bytes(len(streams[2]))])
    try:  # a full decode reads the garbled pixel stream: it fails or gives other pixels...
        damaged = np.asarray(dqcodec.decompress(garbled))
    except (ValueError, AssertionError):  # constriction may reject the stream outright
        damaged = None
    assert damaged is None or not np.array_equal(damaged, original)
    # ...while a preview, which must not read it, gives the image of the intact file's codes
    assert np.array_equal(
        np.asarray(dqcodec.decompress(garbled, preview=True)), np.asarray(dqcodec.decompress(data, preview=True))
    )


def test_lossless_tables_do_not_depend_on_the_thread_count():
    model = tiny_model()
    image = photo_like(36, 52)
    x = codec.pad(codec.to_tensor(Image.fromarray(image)))
    previous = torch.get_num_threads()
    tables = {}
    stack = LayerStack(model, model.ladder.resolve(2, lossless=True))
    try:
        torch.set_num_threads(2)
        strings = stack.compress(x, (36, 52), 0)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            recorder = Recorder(keep_tables=True)
            assert np.array_equal(stack.decompress(strings, (36, 52), 0, recorder), image)
            tables[threads] = recorder.tables
    finally:
        torch.set_num_threads(previous)
    assert len(tables[1]) == len(tables[2]) > 6
    for (f1, s1), (f2, s2) in zip(tables[1], tables[2]):
        assert f1.tobytes() == f2.tobytes() and np.array_equal(s1, s2)


def test_lossless_coding_leaves_the_thread_counts_as_it_found_them(tiny_zoo):
    """The table builders run on one thread each; the caller's thread, and threads started later, keep the count."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        dqcodec.compress(photo_like(20, 24), model=tiny_zoo, lossless=True)
        assert torch.get_num_threads() == 2
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(torch.get_num_threads).result() == 2
    finally:
        torch.set_num_threads(previous)


def test_lossless_payload_matches_its_ideal_code_length(tiny_zoo):
    info = dqcodec.inspect(dqcodec.compress(photo_like(64, 80), model=tiny_zoo, lossless=True))
    assert info.lossless and list(info.streams) == ["stride16", "stride8", "pixels"]
    # constriction re-quantizes the tables to its own fixed point, so the two differ a little either way
    assert abs(info.payload_bits - info.ideal_payload_bits) <= 0.01 * info.ideal_payload_bits + 3 * 64


def test_a_corrupted_lossless_file_is_a_clean_error(tiny_zoo):
    data = bytearray(dqcodec.compress(photo_like(32, 32), model=tiny_zoo, lossless=True))
    data[-10] ^= 0xFF
    with pytest.raises(dqcodec.ContainerError):
        dqcodec.decompress(bytes(data))


def test_a_lossy_model_refuses_lossless_coding(tmp_path, monkeypatch):
    from dqcodec import zoo

    model = tiny_model()
    surgery.drop_pixel_model(model)
    zoo.export(model, "lossy", tmp_path)
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path))
    with pytest.raises(ValueError, match="no pixel likelihood"):
        dqcodec.compress(photo_like(16, 16), model="lossy", lossless=True)


def test_widening_the_pixel_likelihood_keeps_what_it_computes():
    torch.manual_seed(0)
    narrow = pixel_model.PixelModel(feature_channels=6, mixtures=2, hidden=8).double()
    for p in narrow.parameters():  # no zero weights to hide a misplaced copy
        p.data.normal_(0, 0.2)
    wide = pixel_model.widen(narrow, pixel_model.PixelModel(feature_channels=6, mixtures=2, hidden=12))
    x = torch.randint(0, 256, (1, 3, 16, 24)).double()
    x_hat = (x / 255 + 0.05 * torch.randn_like(x)).clamp(0, 1)
    features = torch.randn(1, 6, 8, 12, dtype=torch.float64)
    expected = narrow.log_prob(narrow.context(features, x_hat), x_hat, x)
    assert torch.allclose(wide.log_prob(wide.context(features, x_hat), x_hat, x), expected, rtol=0, atol=1e-8)
    assert wide.inputs.out_channels == 12 and wide.steps[4][2].weight.shape[:2] == (12, 12)
    with pytest.raises(ValueError, match="narrow"):
        pixel_model.widen(wide, pixel_model.PixelModel(feature_channels=6, mixtures=2, hidden=8))


def test_the_folded_neighbour_convolution_gives_the_full_resolution_one_exactly():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 5, padding=2)
    x = exact.to_fixed(torch.randn(1, 4, 16, 24))
    full = F.pixel_unshuffle(exact.ExactConv.of(conv)(x), pixel_model.BLOCK)
    folded = exact.ExactConv(*pixel_tables.folded_neighbours(conv), padding=1)(F.pixel_unshuffle(x, pixel_model.BLOCK))
    assert torch.equal(full, folded)
