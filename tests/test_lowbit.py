"""Lossless format 2 (issue 31): the low-bit pixel likelihood, exact in float32 products of small integers, and its
tables read from a bank of distributions."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import dqcodec
from dqcodec import lowbit, pixel_model
from dqcodec.errors import FixedPointError
from dqcodec.runtime import kernels
from dqcodec.runtime import lowbit_pixels as numpy_pixels
from dqcodec.testing import kernels as kernel_settings
from dqcodec.testing.models import LOWBIT_GRIDS, tiny_model

from .conftest import photo_like


def _integer_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The reference: an int64 convolution, channels last, zero padding to keep the size."""
    k = weight.shape[-1]
    padded = np.pad(x.astype(np.int64), ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    h, w = x.shape[:2]
    out = np.zeros((h, w, weight.shape[0]), dtype=np.int64) + bias.astype(np.int64)
    for dy in range(k):
        for dx in range(k):
            out += padded[dy : dy + h, dx : dx + w] @ weight[:, :, dy, dx].T.astype(np.int64)
    return out


@pytest.mark.parametrize("channels", [8, 120])  # 120: a layer whose sums need several blocks of input channels
def test_a_lowbit_layer_sums_exactly_in_float32(channels):
    rng = np.random.default_rng(0)
    integers, exponents = lowbit.integer_weights(rng.uniform(-1, 1, size=(24, channels, 3, 3)))
    assert np.abs(integers).max() <= lowbit.WEIGHT_LIMIT
    bias = rng.normal(size=24)
    x = rng.integers(-511, 512, (9, 11, channels))
    layer = numpy_pixels.LowbitConv(
        integers, exponents, bias, 6, np.full(channels, 511.0), output_frac=6, limit=1 << 30
    )
    assert (len(layer.parts) > 1) == (channels == 120)
    sums = _integer_conv(x, integers, lowbit.integer_bias(bias, exponents, 6))
    expected = np.floor(np.ldexp(sums.astype(np.float64), -(exponents + 6 - 6)) + 0.5)
    assert np.array_equal(layer(x.astype(np.float32)), expected)


def test_weights_already_on_their_grid_keep_it():
    rng = np.random.default_rng(1)
    integers, exponents = lowbit.integer_weights(rng.normal(size=(8, 5, 3, 3)))
    on_grid = np.ldexp(integers, -exponents.reshape(-1, 1, 1, 1)).astype(np.float32)
    again, exponents_again = lowbit.integer_weights(on_grid)
    assert np.array_equal(again, integers) and np.array_equal(exponents_again, exponents)


def test_a_single_input_too_large_for_float32_is_refused():
    weight = np.full((1, 1, 1, 1), 127.0)
    with pytest.raises(FixedPointError):
        lowbit.channel_blocks(weight, np.zeros(1), np.array([float(1 << 20)]))


def test_the_gelu_table_is_gelu_rounded_and_what_training_reads():
    table = lowbit.gelu_table(5)
    pre = np.arange(-lowbit.PRE_ACTIVATION_LIMIT, lowbit.PRE_ACTIVATION_LIMIT + 1) / 256.0
    reference = torch.nn.functional.gelu(torch.from_numpy(pre)).numpy() * 32
    assert np.abs(table - reference).max() <= 0.5 + 2**-7  # the shipped table's 2^-12, then half up to 2^-5
    assert np.array_equal(pixel_model.lowbit_gelu(torch.from_numpy(pre), 5).numpy() * 32, table)


def test_the_bank_holds_increasing_cdfs_from_0_to_1():
    bank = numpy_pixels.bank().reshape(-1, numpy_pixels.COLUMNS)
    assert (np.diff(bank.astype(np.int64), axis=1) >= 0).all()
    narrow = bank[: (7 << 4) << 4]  # log-scales up to 3 (scales up to 20) reach 0 and 1 within 320 grey levels
    assert narrow[:, 0].max() == 0 and narrow[:, -1].min() == 1 << 20
    sharp = bank[0 * 16]  # log-scale -4, phase 0: the edge below the mean's value holds about half, not all
    centre = numpy_pixels.REACH
    assert sharp[centre - 1] < 1 << 4 and sharp[centre + 1] > (1 << 20) - (1 << 4)


def test_the_training_model_computes_the_coders_integers():
    """The fake-quantized torch likelihood (what training runs) and the numpy coder agree on the steps' inputs
    bit for bit; the raw parameters differ only where a float32 convolution in training rounds."""
    model = tiny_model(pixel_grids=LOWBIT_GRIDS)
    arrays = {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}
    config = model.config
    coder = numpy_pixels.LowbitPixelModel(arrays, config.channels, 2, 8, LOWBIT_GRIDS)
    rng = np.random.default_rng(2)
    features = np.round(rng.normal(size=(8, 8, 16)) * 4096)
    x_hat = np.round(rng.uniform(size=(16, 16, 3)) * 4096)
    context = coder.context(features, x_hat)
    with torch.no_grad():
        torch_context = model.pixels.context(
            torch.from_numpy(features / 4096).permute(2, 0, 1)[None].float(),
            torch.from_numpy(x_hat / 4096).permute(2, 0, 1)[None].float(),
        )
    assert np.array_equal(torch_context[0].permute(1, 2, 0).numpy() * 64, context)


@pytest.mark.parametrize("settings", [{"lossless": True}, {"quality": 6}])  # near-lossless: tolerance 3
def test_format_2_files_round_trip_and_code_alike_without_torch(tiny_zoo, tmp_path, settings):
    image = Image.fromarray(photo_like(37, 29, seed=3))
    data = dqcodec.compress(image, model="tiny-lowbit", **settings)
    decoded = np.asarray(dqcodec.decompress(data))
    bound = dqcodec.inspect(data).near_lossless_bound
    assert np.abs(decoded.astype(int) - np.asarray(image)).max() <= bound
    if settings.get("lossless"):
        assert np.array_equal(decoded, np.asarray(image))
    image.save(tmp_path / "a.png")
    code = (
        "import sys, json\n"
        "import numpy as np\n"
        "import dqcodec\n"
        "data = dqcodec.compress(sys.argv[1], model='tiny-lowbit', **json.loads(sys.argv[3]))\n"
        "open(sys.argv[2], 'wb').write(data)\n"
        "np.save(sys.argv[2] + '.npy', np.asarray(dqcodec.decompress(data)))\n"
    )
    done = kernel_settings.without_torch(code, tmp_path / "a.png", tmp_path / "a.dq", json.dumps(settings))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "a.dq").read_bytes() == data
    assert np.array_equal(np.load(tmp_path / "a.dq.npy"), decoded)


def test_format_2_tables_do_not_depend_on_the_thread_count(tiny_zoo, monkeypatch):
    image = Image.fromarray(photo_like(40, 36, seed=4))
    monkeypatch.setattr(kernels, "threads", lambda: 1)
    one = dqcodec.compress(image, model="tiny-lowbit", lossless=True)
    monkeypatch.setattr(kernels, "threads", lambda: 2)
    assert dqcodec.compress(image, model="tiny-lowbit", lossless=True) == one


def test_a_lowbit_likelihood_is_built_from_its_config():
    assert isinstance(tiny_model(pixel_grids=LOWBIT_GRIDS).pixels, pixel_model.LowbitPixelModel)
    with pytest.raises(FixedPointError):
        lowbit.Plan([6] * 3, 5)


def test_a_model_file_keeps_a_lowbit_likelihoods_integers(tmp_path):
    from dqcodec import zoo

    model = tiny_model(pixel_grids=LOWBIT_GRIDS)
    stored = zoo.load_file(zoo.export(model, "lb", tmp_path))[0].state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("pixels.") and name.endswith(".weight"):
            ours, exponents = lowbit.integer_weights(tensor.numpy())
            theirs, stored_exponents = lowbit.integer_weights(stored[name].numpy())
            assert np.array_equal(ours, theirs) and np.array_equal(exponents, stored_exponents), name
