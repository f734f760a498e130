import mpmath
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dqcodec import exact, fixed


def test_the_shipped_tables_are_the_pinned_ones_and_correctly_rounded():
    with np.load(fixed.TABLES_PATH) as data:
        arrays = {name: data[name] for name in data.files}
    assert fixed.tables_digest(arrays) == fixed.TABLES_SHA256
    mpmath.mp.dps = 40
    functions = {
        "gelu": lambda x: x / 2 * (1 + mpmath.erf(x / mpmath.sqrt(2))),
        "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
        "exp_neg": lambda x: mpmath.exp(-x),
    }
    for name, function in functions.items():
        low, _, out_frac, step_bits = (int(v) for v in arrays[name + "_range"])
        for i in (0, 1, 777, len(arrays[name]) // 2, len(arrays[name]) - 1):
            x = mpmath.mpf(low * 2**step_bits + i) / 2**step_bits
            assert arrays[name][i] == int(mpmath.nint(function(x) * 2 ** int(out_frac)))


def test_an_exact_conv_gives_whole_numbers_close_to_the_float_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 16, 3, padding=1)
    x = torch.randn(1, 24, 9, 11)
    y = exact.ExactConv.of(conv)(exact.to_fixed(x))
    assert y.dtype == torch.float64 and torch.equal(y, y.round())
    assert torch.allclose(exact.to_float(y), conv(x), atol=2e-3)


def test_an_exact_residual_block_follows_the_float_block():
    torch.manual_seed(0)
    block = exact.ResNetBlock(nn.Conv2d(8, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1))
    x = torch.randn(1, 8, 7, 9)
    y = exact.run_module(nn.Sequential(block), exact.to_fixed(x))
    assert torch.equal(y, y.round())
    assert torch.allclose(exact.to_float(y), block(x), atol=3e-3)


def test_exact_sums_do_not_depend_on_the_order_they_are_added_in():
    torch.manual_seed(1)
    conv = exact.ExactConv.of(nn.Conv2d(64, 8, 3, padding=1))
    x = exact.to_fixed(10 * torch.randn(1, 64, 7, 7))
    whole = F.conv2d(x, conv.weight, conv.bias, padding=1)
    reversed_channels = F.conv2d(x.flip(1), conv.weight.flip(1), conv.bias, padding=1)
    halves = F.conv2d(x[:, :32], conv.weight[:, :32], conv.bias, padding=1) + F.conv2d(
        x[:, 32:], conv.weight[:, 32:], padding=1
    )
    assert torch.equal(whole, reversed_channels) and torch.equal(whole, halves)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    kernel=st.sampled_from([1, 3, 5]),
    pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_matrix_product_convolution_gives_the_integers_of_torchs(
    batch, channels, size, kernel, pad, with_bias, seed
):
    """The matrix product per kernel tap against F.conv2d, with inputs at the clamp's reach."""
    (cin, cout), (h, w) = channels, size
    if h + 2 * pad[0] < kernel or w + 2 * pad[1] < kernel:
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-exact.LIMIT, exact.LIMIT + 1, (batch, cin, h, w), generator=g).double()
    weight = torch.randint(-(1 << 15), 1 << 15, (cout, cin, kernel, kernel), generator=g).double()
    bias = torch.randint(-(1 << 40), 1 << 40, (cout,), generator=g).double() if with_bias else None
    expected = F.conv2d(x, weight, bias, padding=pad)
    assert torch.equal(exact.tap_products_conv2d(x, weight, bias, pad), expected)
    assert torch.equal(exact.conv2d(x, weight, bias, pad), expected)


def test_a_layer_whose_sums_could_leave_float64s_exact_integers_is_refused():
    conv = nn.Conv2d(4, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(2.0**21)
    with pytest.raises(exact.FixedPointError, match="exact"):
        exact.ExactConv.of(conv)


def test_integer_softmax_is_close_to_the_float_softmax_and_never_zero():
    logits = torch.tensor([[-40.0, -3.0, 0.0, 1.5, 7.25]])
    frequencies = exact.logits_to_frequencies(exact.to_fixed(logits)[..., None, None].movedim(1, -3), 16)
    assert frequencies.shape == (1, 5) and (frequencies >= 1).all()
    expected = np.floor(torch.softmax(logits.double(), -1).numpy() * 2**16) + 1
    assert np.abs(frequencies - expected).max() <= 2


def test_gelu_is_the_identity_above_8_and_0_below_minus_8_to_the_clamp():
    eight = 8 << exact.FRAC
    x = torch.tensor([-exact.LIMIT, -eight - 1, -eight, eight, eight + 1, exact.LIMIT], dtype=torch.float64)
    assert exact.gelu(x).tolist() == [0, 0, 0, eight, eight + 1, exact.LIMIT]


def test_gelu_and_sigmoid_tables_follow_their_functions():
    x = torch.linspace(-10, 10, 2001)
    assert torch.allclose(
        exact.to_float(exact.gelu(exact.to_fixed(x))), F.gelu(x), atol=3e-4
    )  # a 2^-12 grid in and out
    t = (x.double() * 2**16).long()
    sigmoid = exact.tables()["sigmoid"](t, 16)
    assert (sigmoid.diff() >= 0).all()  # a CDF built from it never goes down
    assert torch.allclose(
        sigmoid.double() / 2**30, torch.sigmoid(x.double()), atol=5e-6
    )  # arguments truncated to 2^-16


@settings(max_examples=100, deadline=None)
@given(data=st.data(), bits=st.sampled_from([16, 20]))
def test_frequencies_in_float64_are_the_integer_quotients(data, bits):
    k = data.draw(st.integers(2, 8))
    row = st.lists(st.integers(0, (1 << (52 - bits)) - 1), min_size=k, max_size=k).filter(any)
    weights = torch.tensor(data.draw(st.lists(row, min_size=1, max_size=4)))
    expected = torch.div(weights << bits, weights.sum(1, keepdim=True), rounding_mode="floor") + 1
    assert np.array_equal(exact.frequencies(weights, bits), expected.double().numpy())


def test_frequencies_just_below_a_whole_number_are_rounded_down():
    """Rows whose w * 2^bits is one short of a multiple of their sum: the quotient's fraction is 1 - 1/sum."""
    for bits in (16, 20):
        for total in (3, (1 << 31) + 1, (1 << (52 - bits)) - 1):
            w = -pow(1 << bits, -1, total) % total  # w * 2^bits = -1 (mod total)
            weights = torch.tensor([[w, total - w]])
            expected = torch.div(weights << bits, total, rounding_mode="floor") + 1
            assert np.array_equal(exact.frequencies(weights, bits), expected.double().numpy())
