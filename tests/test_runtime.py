"""The torch-free runtime (dqcodec.runtime) against the torch path: the same tables integer for integer, images
within a level, and decoding with torch unimportable."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dqcodec
from dqcodec import codec, exact, fixed, graph, images, point, tiling
from dqcodec.config import DQConfig, LevelConfig
from dqcodec.model import DQCodec
from dqcodec.recorder import Recorder
from dqcodec.runtime import kernels, network
from dqcodec.runtime.model import RuntimeModel
from dqcodec.stack import LayerStack
from dqcodec.testing import kernels as kernel_settings

from .conftest import TINY, TINY_3, photo_like, tiny_model

GOLDEN = Path(__file__).parent / "golden"


def _hwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("channels", [(6, 4), (4, 9)])  # fewer outputs than inputs, and more
@pytest.mark.parametrize("block_bytes", [kernels.BLOCK_BYTES, 1])  # one block, or one output row per block
def test_a_convolution_of_whole_numbers_is_torchs_exactly(stride, kernel, channels, block_bytes, monkeypatch):
    monkeypatch.setattr(kernels, "BLOCK_BYTES", block_bytes)
    cin, cout = channels
    g = torch.Generator().manual_seed(kernel * 10 + stride)
    x = torch.randint(-fixed.LIMIT, fixed.LIMIT + 1, (1, cin, 13, 11), generator=g).double()
    w = torch.randint(-3000, 3001, (cout, cin, kernel, kernel), generator=g).double()
    b = torch.randint(-(10**9), 10**9, (cout,), generator=g).double()
    expected = F.conv2d(x, w, b, stride=stride, padding=kernel // 2)
    got = kernels.conv2d(_hwc(x), kernels.conv_weight(w.numpy()), b.numpy(), kernel, stride, kernel // 2)
    assert np.array_equal(got, _hwc(expected))


def test_a_transposed_convolution_and_a_shuffle_are_torchs():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-1000, 1001, (1, 5, 6, 7), generator=g).double()
    w = torch.randint(-3000, 3001, (5, 8, 5, 5), generator=g).double()
    b = torch.randint(-1000, 1001, (8,), generator=g).double()
    expected = F.conv_transpose2d(x, w, b, stride=2, padding=2, output_padding=1)
    flat = kernels.transposed_taps(w.numpy())
    assert np.array_equal(kernels.conv_transpose2d(_hwc(x), flat, b.numpy(), 5, 2, 2, 1), _hwc(expected))
    y = torch.randn(1, 12, 4, 5, generator=g)
    assert np.array_equal(kernels.pixel_shuffle(_hwc(y), 2), _hwc(F.pixel_shuffle(y, 2)))


def test_gelu_is_torchs_to_float32s_precision():
    x = torch.linspace(-12, 12, 200_001)
    assert np.abs(kernels.gelu(x.numpy()) - F.gelu(x).numpy()).max() < 1e-5
    big = torch.randn(3, 70_001) * 4  # more than one chunk, so both threads work
    assert np.abs(kernels.gelu(big.numpy()) - F.gelu(big).numpy()).max() < 1e-5


def test_the_exact_tables_are_the_torch_ones():
    x = torch.arange(-fixed.LIMIT, fixed.LIMIT + 1, 37, dtype=torch.float64)
    assert np.array_equal(fixed.gelu(x.numpy()), exact.gelu(x).numpy())
    logits = torch.randint(-(40 << fixed.FRAC), 40 << fixed.FRAC, (500, 64), generator=torch.Generator().manual_seed(1))
    from_torch = exact.logits_to_frequencies(logits.double().T.reshape(1, 64, 500, 1), 16)
    assert np.array_equal(fixed.logits_to_frequencies(logits.double().numpy()[:, None], 16), from_torch)


def test_the_networks_run_as_torchs(tmp_path):
    net = tiny_model(config=TINY_3)
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    named = graph.networks(net.config)
    g = torch.Generator().manual_seed(0)
    context = exact.to_fixed(torch.randn(1, net.levels[0].out_channels, 5, 6, generator=g))
    expected = exact.run_module(net.contexts[0], context)
    got = network.run(network.exact_layers(named["contexts.0"], arrays, "contexts.0."), _hwc(context))
    assert np.array_equal(got, _hwc(expected))  # exact: integer for integer
    x = torch.randn(1, net.synthesis[0].in_channels, 5, 6, generator=g)
    image = torch.rand(1, 3, 32, 48, generator=g)
    with torch.no_grad():
        expected = net.synthesis(x)
        analysed = net.analysis[0](image)
    got = network.run(network.float_layers(named["synthesis"], arrays, "synthesis."), _hwc(x))
    assert np.abs(got - _hwc(expected)).max() < 1e-4
    got = network.run(network.float_layers(named["analysis.0"], arrays, "analysis.0."), _hwc(image))
    assert np.abs(got - _hwc(analysed)).max() < 1e-4  # GDN and strided convolutions (the encoder's)


def _decoded(net, opened, recorder):
    """A file's image decoded by ``net`` (torch's or the runtime's), its tables in the recorder."""
    return LayerStack(net, opened.point).decompress(opened.streams, opened.size, opened.header.tile, recorder)


@pytest.mark.parametrize(
    "size, settings",
    [
        ((45, 71), {"quality": 1}),
        ((45, 71), {"quality": 3}),
        ((45, 71), {"quality": 4}),  # the residual quality
        ((150, 170), {"quality": 4}),  # tiled: several tiles with a residual
    ],
)
def test_the_runtime_decodes_what_torch_decodes(tiny_zoo, size, settings, monkeypatch):
    """Every table integer for integer, the image within a level: the float synthesis differs in its last bits."""
    monkeypatch.setattr(point, "LOSSY_TILE", 64)  # the larger image is coded in 3 x 3 tiles
    data = dqcodec.compress(Image.fromarray(photo_like(*size)), model=tiny_zoo, **settings)
    opened = codec.open_file(data)
    arrays = {k: v.numpy() for k, v in opened.torch_model().state_dict().items()}
    runtime = RuntimeModel(opened.config, arrays)
    with_torch, with_runtime = Recorder(keep_tables=True), Recorder(keep_tables=True)
    a = _decoded(opened.torch_model(), opened, with_torch)
    b = _decoded(runtime, opened, with_runtime)
    assert len(with_torch.tables) == len(with_runtime.tables) > 0
    for (fa, sa), (fb, sb) in zip(with_torch.tables, with_runtime.tables):
        assert np.array_equal(fa, fb) and np.array_equal(sa, sb)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert opened.header.tile == 64 and len(tiling.cut(opened.size, 64)) == (9 if size[0] > 64 else 2)


@pytest.mark.slow
def test_every_golden_file_decodes_without_torch(tmp_path):
    """Each golden file's tables hash to what golden.json pins, and its image is the pinned one (exactly for the
    files that code their pixels, within a level for the others), in a process where ``import torch`` fails."""
    golden = json.loads((GOLDEN / "golden.json").read_text())
    names = sorted(golden)
    assert len(names) >= 18
    code = (
        "import hashlib, json, sys\n"
        "from pathlib import Path\n"
        "import numpy as np\n"
        "import dqcodec\n"
        "from dqcodec import codec\n"
        "from dqcodec.recorder import Recorder\n"
        "out = {}\n"
        "for path in map(Path, sys.argv[2:]):\n"
        "    data = path.read_bytes()\n"
        "    opened = codec.open_file(data)\n"
        "    recorder = Recorder(keep_tables=True)\n"
        "    if opened.point.residual_step:\n"
        "        opened.stack.decompress(opened.streams, opened.size, opened.header.tile, recorder)\n"
        "    else:\n"
        "        opened.stack.decode_codes(opened.streams, opened.size, opened.header.tile, recorder)\n"
        "    digest = hashlib.sha256()\n"
        "    for frequencies, symbols in recorder.tables:\n"
        "        digest.update(frequencies.tobytes())\n"
        "        digest.update(symbols.astype('<i8').tobytes())\n"
        "    np.save(f'{sys.argv[1]}/{path.stem}.npy', np.asarray(dqcodec.decompress(data)))\n"
        "    out[path.name] = digest.hexdigest()\n"
        "print(json.dumps(out))\n"
    )
    done = kernel_settings.without_torch(code, tmp_path, *(GOLDEN / name for name in names))
    assert done.returncode == 0, done.stderr[-3000:]
    tables = json.loads(done.stdout.strip().splitlines()[-1])
    for name in names:
        decoded = np.load(tmp_path / f"{Path(name).stem}.npy")
        assert tables[name] == golden[name]["tables_sha256"], name
        if golden[name]["pixels_pinned"]:  # lossless and near-lossless: the pixels themselves
            assert hashlib.sha256(decoded.tobytes()).hexdigest() == golden[name]["pixels_sha256"], name
            continue
        reference = np.asarray(Image.open((GOLDEN / name).with_suffix(".png")))
        assert np.abs(decoded.astype(int) - reference).max() <= 1, name


@pytest.mark.parametrize("settings", [{"lossless": True}, {"quality": 6}])  # lossless; near-lossless (within 6)
def test_lossless_and_near_lossless_files_code_without_torch_to_torchs_bytes(tiny_zoo, tmp_path, settings):
    """The runtime's pixel layer writes the bytes torch's does, and its files decode to the pixels torch's decoder
    gives (the original ones, for a lossless file), in a process where ``import torch`` fails."""
    image = Image.fromarray(photo_like(37, 29, seed=3))
    image.save(tmp_path / "a.png")
    code = (
        "import sys\n"
        "import json\n"
        "import numpy as np\n"
        "import dqcodec\n"
        "data = dqcodec.compress(sys.argv[1], model='tiny', **json.loads(sys.argv[3]))\n"
        "open(sys.argv[2], 'wb').write(data)\n"
        "np.save(sys.argv[2] + '.npy', np.asarray(dqcodec.decompress(data)))\n"
    )
    done = kernel_settings.without_torch(code, tmp_path / "a.png", tmp_path / "a.dq", json.dumps(settings))
    assert done.returncode == 0, done.stderr[-3000:]
    written = (tmp_path / "a.dq").read_bytes()
    assert written == dqcodec.compress(image, model=tiny_zoo, **settings)  # this process: torch's encoder
    decoded = np.load(tmp_path / "a.dq.npy")
    assert np.array_equal(decoded, np.asarray(dqcodec.decompress(written)))  # torch's decoder
    bound = dqcodec.inspect(written).near_lossless_bound
    assert np.abs(decoded.astype(int) - np.asarray(image)).max() <= bound


@pytest.mark.parametrize("quality", [1, 3, 4])
def test_the_runtime_encodes_what_torch_encodes(tiny_zoo, quality):
    """The same level streams byte for byte (lossy files are identical); a residual stream codes the original
    minus the base image, the float synthesis, so the two encoders' residual streams may differ where their base
    images differ by a level, and each decodes to within a level of the other."""
    image = Image.fromarray(photo_like(70, 90, seed=2))
    opened = codec.open_file(dqcodec.compress(image, model=tiny_zoo, quality=quality))
    size = (image.height, image.width)
    torch_streams = LayerStack(opened.torch_model(), opened.point).compress(
        images.pad(images.to_tensor(image)), size, opened.point.tile
    )
    runtime_streams = LayerStack(opened.runtime_model(), opened.point).compress(
        images.pad_array(images.to_array(image)), size, opened.point.tile
    )
    levels = opened.config.stream_names
    assert torch_streams[: len(levels)] == runtime_streams[: len(levels)] == opened.streams[: len(levels)]
    if not opened.point.residual_step:
        assert torch_streams == runtime_streams
    decoded = [
        LayerStack(opened.runtime_model(), opened.point).decompress(streams, size, opened.point.tile)
        for streams in (torch_streams, runtime_streams)
    ]
    assert np.abs(decoded[0].astype(int) - decoded[1].astype(int)).max() <= 1


def test_the_command_line_encodes_and_decodes_without_torch(tiny_zoo, tmp_path):
    Image.fromarray(photo_like(40, 56)).save(tmp_path / "a.png")
    code = (
        "import sys\n"
        "from dqcodec_cli.main import cli\n"
        "folder = sys.argv[1]\n"
        "for quality in ('1', '4'):\n"
        "    for args in (['encode', f'{folder}/a.png', '-q', quality, '--model', 'tiny', '-o', f'{folder}/a{quality}.dq'],\n"
        "                 ['decode', f'{folder}/a{quality}.dq', '-o', f'{folder}/a{quality}.png']):\n"
        "        try:\n"
        "            cli(args)\n"
        "        except SystemExit as done:\n"
        "            assert done.code == 0, done.code\n"
        "print('torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    done = kernel_settings.without_torch(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for quality in (1, 4):
        expected = dqcodec.decompress((tmp_path / f"a{quality}.dq").read_bytes())
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"a{quality}.png")), np.asarray(expected))
    assert dqcodec.inspect((tmp_path / "a4.dq").read_bytes()).point.residual_step  # quality 4 is the residual one


def _anchored_model() -> DQCodec:
    """A tiny model whose levels code their first groups over a checkerboard, its anchor contexts random."""
    config = DQConfig(
        **{
            **TINY.__dict__,
            "levels": [LevelConfig(2, 8, 2, anchors=2), LevelConfig(4, 8, 2, anchors=1)],
            "anchor_hidden": 8,
            "residual_steps": [[2, 16]],
        }
    )
    torch.manual_seed(0)
    net = DQCodec(config)
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 64, 64))
        for level in net.levels:
            for anchor in level.prior.anchors:
                anchor.out.weight.normal_(0, 0.5)
                anchor.out.bias.normal_(0, 0.5)
    return net.eval()


@pytest.mark.parametrize("quality", [1, 2, 4])
def test_anchored_levels_code_alike_in_both(quality):
    """Checkerboard contexts: the torch encoder's streams decode in the runtime with the same tables, and the
    runtime's encoder writes the same level streams."""
    net = _anchored_model()
    runtime = RuntimeModel(net.config, {k: v.numpy() for k, v in net.state_dict().items()})
    point = net.ladder.resolve(quality, False)
    image = Image.fromarray(photo_like(50, 70, seed=4))
    size = (image.height, image.width)
    from_torch = LayerStack(net, point).compress(images.pad(images.to_tensor(image)), size, point.tile)
    from_runtime = LayerStack(runtime, point).compress(images.pad_array(images.to_array(image)), size, point.tile)
    levels = len(net.config.levels)
    assert from_torch[:levels] == from_runtime[:levels]
    with_torch, with_runtime = Recorder(keep_tables=True), Recorder(keep_tables=True)
    a = LayerStack(net, point).decompress(from_torch, size, point.tile, with_torch)
    b = LayerStack(runtime, point).decompress(from_torch, size, point.tile, with_runtime)
    assert len(with_torch.tables) == len(with_runtime.tables) > 0
    for (fa, sa), (fb, sb) in zip(with_torch.tables, with_runtime.tables):
        assert np.array_equal(fa, fb) and np.array_equal(sa, sb)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_an_anchor_context_changes_the_tables_of_the_other_half_only():
    """Anchors keep the group-causal tables; the other positions get their anchor context's, which the float
    prior (training's) also gives, to within the fixed point's rounding."""
    net = _anchored_model()
    level = net.levels[1]
    g = torch.Generator().manual_seed(1)
    context = exact.to_fixed(torch.randn(1, net.config.channels, 6, 8, generator=g))
    indices = torch.randint(0, 8, (1, level.num_groups, 6, 8), generator=g)
    codes = level.codes(indices, level.num_groups)
    with torch.no_grad():
        float_logits = level.prior(exact.to_float(context), codes)
    sequence = level.prior.sequential(context, (1, 6, 8))
    logits = sequence.logits(0)
    anchors = torch.from_numpy(graph.anchor_mask(6, 8))
    given = sequence.anchor_logits(0, logits, exact.to_fixed(codes[:, :2]) * anchors)
    assert not torch.equal(given[..., ~anchors], logits[..., ~anchors])  # the context does change them
    assert (exact.to_float(given)[0][:, ~anchors] - float_logits[0, 0][:, ~anchors]).abs().max() < 0.05
    assert (exact.to_float(logits)[0][:, anchors] - float_logits[0, 0][:, anchors]).abs().max() < 0.05


def test_the_backend_is_the_environments_choice(tiny_zoo, monkeypatch):
    data = dqcodec.compress(Image.fromarray(photo_like(20, 24)), model=tiny_zoo, quality=1)
    lossless = dqcodec.compress(Image.fromarray(photo_like(20, 24)), model=tiny_zoo, lossless=True)
    monkeypatch.setenv("DQCODEC_BACKEND", "runtime")
    assert isinstance(codec.open_file(data).stack.net, RuntimeModel)
    assert isinstance(codec.open_file(lossless).stack.net, RuntimeModel)
    monkeypatch.setenv("DQCODEC_BACKEND", "torch")
    assert isinstance(codec.open_file(data).stack.net, DQCodec)
    monkeypatch.setenv("DQCODEC_BACKEND", "auto")  # torch is imported in this process, and faster in it
    assert isinstance(codec.open_file(data).stack.net, DQCodec)
    monkeypatch.setenv("DQCODEC_BACKEND", "numpy")
    with pytest.raises(dqcodec.ArgumentError, match="DQCODEC_BACKEND"):
        dqcodec.decompress(data)


def test_the_pixel_likelihoods_networks_give_torchs_integers():
    """The runtime's exact pixel likelihood (its context and every step's raw parameters) is the torch path's,
    integer for integer: the first piece of lossless decoding without torch."""
    from dqcodec.pixel_tables import ExactPixelModel
    from dqcodec.runtime.pixels import ExactPixelModel as RuntimePixelModel

    net = tiny_model()
    config = net.config
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    ours = RuntimePixelModel(arrays, config.channels, config.pixel_mixtures, config.pixel_hidden)
    theirs = ExactPixelModel(net.pixels)
    g = torch.Generator().manual_seed(2)
    features = exact.to_fixed(torch.randn(1, config.channels, 8, 12, generator=g))
    x_hat = exact.to_fixed(torch.rand(1, 3, 16, 24, generator=g))
    context = theirs.context(features, x_hat)
    assert np.array_equal(ours.context(_hwc(features), _hwc(x_hat)), _hwc(context))
    residual = exact.to_fixed(torch.randn(1, 3, 16, 24, generator=g))
    inside = torch.ones(1, 1, 16, 24)
    inside[..., 13:, :] = 0
    for step in range(5):
        expected = theirs.params(context, step, residual, inside)  # (1, positions, 10K, h, w)
        got = ours.params(_hwc(context), step, _hwc(residual), inside[0, 0].numpy())
        assert np.array_equal(got, expected[0].permute(2, 3, 0, 1).numpy()), step
