import numpy as np
import pytest
import torch
from PIL import Image

import dqcodec
from dqcodec import codec, container, point, registry, residual, tiling
from dqcodec.recorder import Recorder
from dqcodec.stack import LayerStack

from .conftest import TINY_3, photo_like, tiny_model


def _encode(model, x, quality, tile, lossless=False, size=None, progress=None):
    stack = LayerStack(model, model.ladder.resolve(quality, lossless))
    return stack.compress(x, size or tuple(x.shape[-2:]), tile, Recorder(progress))


def _decode(model, strings, size, quality, tile, lossless=False, progress=None):
    return LayerStack(model, model.ladder.resolve(quality, lossless)).decompress(
        strings, size, tile, Recorder(progress)
    )


def _receptive_field(model) -> int:
    """The farthest any analysis output (with its level's mixer) or any decoded pixel reaches, in
    pixels, measured by gradients of random-weight copies of each architecture."""
    x = torch.rand(1, 3, 384, 384, requires_grad=True)
    reach = 0
    features = model.analyse(x)
    for f in features:
        c = f.shape[-1] // 2
        stride = 384 // f.shape[-1]
        (grad,) = torch.autograd.grad(f[0, :, c, c].sum(), x, retain_graph=True)
        rows = grad[0].abs().sum((0, 2)).nonzero()[:, 0]
        reach = max(reach, c * stride - int(rows.min()), int(rows.max()) - c * stride, stride)  # + the mixer's 3x3
    reach += 16  # a mixer's 3x3 at stride 8 or less
    for i in range(model.num_levels):
        n = 24 * 2**i
        codes = torch.randn(1, model.levels[i].out_channels, n, n, requires_grad=True)
        context = None if i == 0 else torch.randn(1, model.config.channels, n, n, requires_grad=True)
        out = model.synthesis(model.synthesis_input(i, codes, context))
        c, stride = out.shape[-1] // 2, out.shape[-1] // n
        (grad,) = torch.autograd.grad(out[0, :, c, c].sum(), [codes])
        rows = grad[0].abs().sum((0, 2)).nonzero()[:, 0]
        reach = max(reach, c - int(rows.min()) * stride, (int(rows.max()) + 1) * stride - c)
    return reach


@pytest.mark.parametrize("name,options", [("dq-hier", {}), ("dq-stride4", {}), ("dq-stride4", {"residual_blocks": 3})])
def test_the_halo_covers_every_architectures_receptive_field(name, options):
    torch.manual_seed(0)
    assert _receptive_field(registry.build(name, **options)) <= tiling.HALO


def test_tiles_cover_the_image_in_raster_order():
    boxes = tiling.tiles(160, 96, 64)
    assert [(b.top, b.left, b.height, b.width) for b in boxes] == [
        (0, 0, 64, 64),
        (0, 64, 64, 32),
        (64, 0, 64, 64),
        (64, 64, 64, 32),
        (128, 0, 32, 64),
        (128, 64, 32, 32),
    ]


def _padded(array):
    return codec.pad(codec.to_tensor(Image.fromarray(array)))


@pytest.mark.parametrize("config", [None, TINY_3], ids=["2 levels", "3 levels"])
def test_a_tiled_lossless_file_decodes_exactly(config):
    model = tiny_model(config=config) if config else tiny_model()
    array = photo_like(150, 100)
    strings = _encode(model, _padded(array), 2, 64, lossless=True, size=(150, 100))
    decoded = _decode(model, strings, (150, 100), 2, 64, lossless=True)
    assert np.array_equal(decoded, array)


def test_a_tiled_lossy_image_has_no_seams():
    """Decoding window by window gives the image the whole index map decodes to."""
    model = tiny_model()
    array = photo_like(200, 136)
    x = _padded(array)
    strings = _encode(model, x, 3, 64)
    tiled = _decode(model, strings, (200, 136), 3, 64)
    height, width = x.shape[-2:]
    maps = tiling.IndexMaps(model.config, height, width)
    streams = [dqcodec.entropy.StreamDecoder(s) for s in strings]
    quality = model.ladder.resolve(3)
    for box in tiling.tiles(height, width, 64):
        maps.put(box, model.chain.decompress(streams, box.grid, quality, Recorder()).indices)
    whole = model.reconstruct(maps.maps, quality.groups)
    whole = tiling.to_hwc(whole * 255, (200, 136))
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_an_image_within_one_tile_is_coded_as_before():
    model = tiny_model()
    x = _padded(photo_like(48, 80))
    assert _encode(model, x, 3, 1024) == model.compress(x, 3)["strings"] == _encode(model, x, 3, 0)


@pytest.mark.parametrize("tile,size", [(0, (1040, 16)), (48, (100, 100)), (1040, (100, 100)), (4096, (100, 100))])
def test_tile_sizes_a_decoder_would_not_bound_are_refused(tiny_zoo, tile, size):
    data = dqcodec.compress(photo_like(16, 16), model=tiny_zoo, quality=1)
    header, streams = container.unpack(data)
    header = container.Header(
        header.model, header.weights_hash, header.quality, header.mode, *size, tile, header.kind, header.codes_quality
    )
    with pytest.raises(dqcodec.ContainerError, match="tile"):
        dqcodec.decompress(container.pack(header, streams))


def test_the_api_writes_tiles_of_the_default_sizes(tiny_zoo):
    data = dqcodec.compress(photo_like(16, 16), model=tiny_zoo, quality=1)
    assert container.unpack(data)[0].tile == point.LOSSY_TILE == 1024
    for options in ({"lossless": True}, {"quality": 6}):  # lossless, and near-lossless
        data = dqcodec.compress(photo_like(16, 16), model=tiny_zoo, **options)
        assert container.unpack(data)[0].tile == point.PIXEL_TILE == 512


@pytest.mark.parametrize("lossless", [False, True], ids=["lossy", "lossless"])
def test_progress_counts_every_unit_of_work_up_to_its_total(lossless):
    """2 x 3 tiles of 64 px: each tile's codes, then (decoding lossy) its synthesis window or
    (lossless) its 16 pixel positions."""
    model, array = tiny_model(), photo_like(100, 150)
    seen = {"encode": [], "decode": []}
    strings = _encode(model, _padded(array), 2, 64, lossless, (100, 150), progress=lambda *a: seen["encode"].append(a))
    decoded = _decode(model, strings, (100, 150), 2, 64, lossless, progress=lambda *a: seen["decode"].append(a))
    per_tile = 17 if lossless else 1
    assert seen["encode"] == [(i, 6 * per_tile) for i in range(1, 6 * per_tile + 1)]
    per_tile = 17 if lossless else 2
    assert seen["decode"] == [(i, 6 * per_tile) for i in range(1, 6 * per_tile + 1)]
    if lossless:
        assert np.array_equal(decoded, array)


def test_the_api_passes_progress_on_and_checks_it(tiny_zoo):
    calls = []
    data = dqcodec.compress(
        Image.fromarray(photo_like(40, 50)), model=tiny_zoo, progress=lambda done, total: calls.append((done, total))
    )
    dqcodec.decompress(data, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1), (1, 2), (2, 2)]
    with pytest.raises(dqcodec.ArgumentError, match="progress"):
        dqcodec.decompress(data, progress=5)


def test_a_tiled_residual_quality_adds_each_tiles_difference_to_its_base_and_reports_progress():
    """2 x 3 tiles of 64 px: the residual stream holds every tile's difference in raster order, each
    added to the base image the codes decode to; progress counts each tile's residual too."""
    model, array = tiny_model(), photo_like(100, 150, seed=4)
    seen = {"encode": [], "decode": []}
    strings = _encode(model, _padded(array), 4, 64, size=(100, 150), progress=lambda *a: seen["encode"].append(a))
    decoded = _decode(model, strings, (100, 150), 4, 64, progress=lambda *a: seen["decode"].append(a))
    base = _decode(model, strings[:2], (100, 150), 2, 64)
    stream = dqcodec.entropy.StreamDecoder(strings[2])
    expected = base.copy()
    for box in tiling.tiles(112, 160, 64):
        rows, cols = box.inside_slices((100, 150))
        expected[rows, cols] = residual.add(base[rows, cols], residual.decode(*base[rows, cols].shape[:2], 16, stream))
    stream.finish()
    assert np.array_equal(decoded, expected)
    assert np.abs(decoded.astype(int) - array).mean() < np.abs(base.astype(int) - array).mean()
    assert seen["encode"] == [(i, 12) for i in range(1, 13)] and seen["decode"] == [(i, 18) for i in range(1, 19)]
