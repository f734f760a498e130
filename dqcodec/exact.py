"""Exact fixed-point arithmetic for everything that determines a probability table.

A .dq file decodes only if the decoder rebuilds the encoder's tables bit for bit. Float
convolutions and float softmaxes do not give the same last bits on another CPU, SIMD width,
convolution backend or torch release, so the tables are computed here in integers:

* A value is an integer count of 2^-FRAC, held in a float64 tensor (``to_fixed``).
* A layer's weights are rounded to integer counts of 2^-WEIGHT_FRAC and its biases to counts of
  2^-(FRAC + WEIGHT_FRAC). A float64 convolution of such integers is exact whatever order the
  kernel sums in, as long as every partial sum stays below 2^53 in magnitude; ``ExactConv``
  proves that bound for its weights when it is built (activations are clamped to ±LIMIT), so
  any backend, any thread count and any vector width give the same integers.
* The result is rescaled to 2^-FRAC by a power of two and ``floor(· + 1/2)``, both exact.
* Nonlinear functions (GELU, tanh, sigmoid, exp) are read from integer tables shipped in
  ``fixed_tables.npz`` (made by ``scripts/make_fixed_tables.py`` with mpmath, correctly
  rounded): GELU at every activation value, the others every 2^-8 of their argument and
  linearly interpolated in integers.
* Softmaxes become integer frequencies through the exp table and int64 division.

Nothing here calls a float transcendental function or a float reduction whose order could vary.
Integer matrix products (``torch._int_mm`` on int8 digits) would be faster, but they are not exact
everywhere: with oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, as on a CPU without AVX-512) they
saturate intermediate sums and give wrong results; float64 has no such path.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fixed
from .errors import FixedPointError  # noqa: F401  (re-exported)
from .fixed import (  # re-exported
    FRAC,
    LIMIT,
    SCALE,
    SOFTMAX_RANGE,
    WEIGHT_FRAC,
)

# ---- values ------------------------------------------------------------------------------


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Float tensor -> integer counts of 2^-FRAC (float64), clamped to ±LIMIT."""
    return torch.round(x.double() * SCALE).clamp_(-LIMIT, LIMIT)


def to_float(x: torch.Tensor) -> torch.Tensor:
    return (x / SCALE).float()


def rescale(sums: torch.Tensor) -> torch.Tensor:
    """A layer's integer sums, counts of 2^-(FRAC + WEIGHT_FRAC) -> counts of 2^-FRAC, rounded half up, clamped."""
    return sums.mul(2.0**-WEIGHT_FRAC).add_(0.5).floor_().clamp_(-LIMIT, LIMIT)


def fixed_weight(weight: torch.Tensor) -> torch.Tensor:
    """Weights -> integer counts of 2^-WEIGHT_FRAC (float64)."""
    return torch.round(weight.detach().double() * 2.0**WEIGHT_FRAC)


def fixed_bias(bias: torch.Tensor) -> torch.Tensor:
    """Biases -> integer counts of 2^-(FRAC + WEIGHT_FRAC), the unit of a layer's sums (float64)."""
    return torch.round(bias.detach().double() * 2.0 ** (FRAC + WEIGHT_FRAC))


# ---- tables ------------------------------------------------------------------------------


class Table:
    """f(x) for x in integer counts of 2^-in_frac, as integer counts of 2^-out_frac: the entries
    hold f at every 2^-step_bits of x over [low, high]; between them, linear interpolation in
    integers; outside, the end values. Computes in the integer dtype of x (int32 needs |x| and
    the interpolation's products below 2^31)."""

    def __init__(self, values: np.ndarray, low: int, high: int, out_frac: int, step_bits: int):
        entries = torch.from_numpy(values.astype(np.int64))
        entries = torch.cat([entries, entries[-1:]])  # so that the last entry's step is 0
        self.values = {torch.int64: entries, torch.int32: entries.int()}
        steps = entries.diff(append=entries[-1:])
        self.steps = {torch.int64: steps, torch.int32: steps.int()}
        self.low, self.high, self.out_frac, self.step_bits = low, high, out_frac, step_bits

    def __call__(self, x: torch.Tensor, in_frac: int) -> torch.Tensor:
        """x: int64 or int32 counts of 2^-in_frac (in_frac >= step_bits) -> counts of 2^-out_frac."""
        return self.above_low(x.clamp(self.low << in_frac, self.high << in_frac).sub_(self.low << in_frac), in_frac)

    def above_low(self, u: torch.Tensor, in_frac: int) -> torch.Tensor:
        """f(low + u) for u from 0 to (high - low) in counts of 2^-in_frac, which it overwrites."""
        shift = in_frac - self.step_bits
        i = (u >> shift if shift else u).flatten()
        left = self.values[u.dtype].index_select(0, i).view_as(u)
        if not shift:
            return left
        fraction = u.bitwise_and_((1 << shift) - 1)
        step = self.steps[u.dtype].index_select(0, i).view_as(u)
        return left.add_(step.mul_(fraction).bitwise_right_shift_(shift))


@functools.lru_cache(maxsize=1)
def tables() -> dict[str, Table]:
    """The shipped tables (``fixed.table_arrays``, checked against their hash) on torch tensors."""
    return {name: Table(entries, *bounds) for name, (entries, bounds) in fixed.table_arrays().items()}


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU of fixed-point values (float64 counts of 2^-FRAC): x above 8, 0 below -8 (the table's
    end values, 8 and 0, hold beyond its ends). In int32: values are clamped to ±LIMIT < 2^31."""
    xi = x.int()
    y = tables()["gelu"](xi, FRAC)
    return torch.where(xi > 8 << FRAC, xi, y).double()


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh of fixed-point values, as fixed-point values."""
    return tables()["tanh"](x.long(), FRAC).double()


# ---- layers ------------------------------------------------------------------------------


class ExactConv:
    """An integer copy of a convolution (or transposed convolution), exact in float64 on any kernel."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor, stride=1, padding=0, transposed=False, output_padding=0
    ):
        self.weight, self.bias = fixed_weight(weight), fixed_bias(bias)
        self.stride, self.padding, self.transposed, self.output_padding = stride, padding, transposed, output_padding
        check_exact_range(self.weight, self.bias, transposed)

    @classmethod
    def of(cls, conv: nn.Conv2d | nn.ConvTranspose2d) -> ExactConv:
        if conv.bias is None:
            raise ValueError("an exact convolution needs the layer's bias (dq models' convolutions all have one)")
        if isinstance(conv, nn.ConvTranspose2d):
            return cls(conv.weight, conv.bias, conv.stride, conv.padding, True, conv.output_padding)
        return cls(conv.weight, conv.bias, conv.stride, conv.padding)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)
        elif self.stride in (1, (1, 1)):
            y = conv2d(x, self.weight, self.bias, self.padding)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return rescale(y)


TAP_PRODUCTS_MIN_DEPTH = 512  # inputs x taps from which tap_products_conv2d beats F.conv2d here (1x1 never does)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` at stride 1 on this module's integer float64 tensors, by
    whichever of the two computes it faster for the weight's shape; both give the same integers."""
    _, in_channels, kh, kw = weight.shape
    if kh * kw == 1 or in_channels * kh * kw < TAP_PRODUCTS_MIN_DEPTH:
        return F.conv2d(x, weight, bias, padding=padding)
    return tap_products_conv2d(x, weight, bias, padding)


def tap_products_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` at stride 1, for the integer float64 tensors of this
    module, as one matrix product per kernel tap: torch's float64 convolution has no fast kernel
    (oneDNN has none for float64), while its float64 matrix product does (about 4x faster here on
    one thread for 272 inputs and 96 outputs, 3x3; for 1x1 kernels and few inputs, slower).

    Every pixel's row of the padded input, channels last, is flattened with the padded width as the
    row length, so the taps' inputs are contiguous slices of it, shifted by dy * width + dx; the
    outputs are computed on the padded width and its last columns dropped. Integer sums below 2^53
    (``check_exact_range``) are exact in any order, so this gives the same integers as ``F.conv2d``."""
    pad_y, pad_x = (padding, padding) if isinstance(padding, int) else padding
    out_channels, in_channels, kh, kw = weight.shape
    batch, _, height, width = x.shape
    rows, row = height + 2 * pad_y, width + 2 * pad_x
    out_h, out_w = rows - kh + 1, row - kw + 1
    n = out_h * row
    taps = weight.permute(2, 3, 1, 0).contiguous()  # (kh, kw, in, out)
    result = x.new_empty(batch, out_channels, out_h, out_w)
    for image, output in zip(x, result):
        flat = x.new_zeros(rows * row + kw - 1, in_channels)  # padded, channels last, kw - 1 rows to spare
        flat[: rows * row].view(rows, row, in_channels)[pad_y : pad_y + height, pad_x : pad_x + width] = image.permute(
            1, 2, 0
        )
        sums = bias.expand(n, out_channels).clone() if bias is not None else x.new_zeros(n, out_channels)
        for dy, dx in itertools.product(range(kh), range(kw)):
            start = dy * row + dx
            sums.addmm_(flat[start : start + n], taps[dy, dx])
        output.copy_(sums.view(out_h, row, out_channels)[:, :out_w].permute(2, 0, 1))
    return result


def check_exact_range(weight: torch.Tensor, bias: torch.Tensor, transposed: bool = False) -> None:
    """Every output's largest possible partial sum, with inputs within ±LIMIT, is below 2^53 (``fixed``'s check)."""
    fixed.check_exact_range(weight.numpy(), bias.numpy(), transposed)


class ResNetBlock(nn.Module):
    """x + body(x): a residual block whose body is a chain of layers with exact versions."""

    def __init__(self, *body: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _ExactResNetBlock:
    def __init__(self, block: ResNetBlock):
        self.body = exact_layers(block.body)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x + run(self.body, x)).clamp_(-LIMIT, LIMIT)  # integers add exactly


def exact_layers(module: nn.Module) -> list:
    """The exact version of a chain of Conv2d, ConvTranspose2d, GELU, PixelShuffle and ResNetBlock layers."""
    if isinstance(module, ResNetBlock):
        return [_ExactResNetBlock(module)]
    if isinstance(module, nn.Sequential):
        return [layer for child in module for layer in exact_layers(child)]
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return [ExactConv.of(module)]
    if isinstance(module, nn.GELU):
        return [gelu]
    if isinstance(module, nn.PixelShuffle):
        return [functools.partial(F.pixel_shuffle, upscale_factor=module.upscale_factor)]
    raise TypeError(f"no exact version of {type(module).__name__}")


def run(layers: list, x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def run_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A module's exact version (``exact_layers``) applied to fixed-point x."""
    return run(exact_layers(module), x)


# ---- probabilities -----------------------------------------------------------------------


def softmax_weights(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed-point logits (float64, or int32 / int64 counts) -> integer weights proportional to exp(logit),
    the largest 2^30, in the integer dtype given (int64 for floats): each logit's distance below the row's
    largest, rounded down to 2^-8, reads the exp table directly."""
    xi = logits if logits.dtype in (torch.int32, torch.int64) else logits.long()
    exp_neg = tables()["exp_neg"]
    below_max = (xi.amax(dim, keepdim=True) - xi) >> (FRAC - exp_neg.step_bits)  # whole table steps
    return exp_neg(below_max.clamp_(max=SOFTMAX_RANGE << exp_neg.step_bits), exp_neg.step_bits)


def frequencies(weights: torch.Tensor, bits: int, out: torch.Tensor | None = None) -> np.ndarray:
    """``fixed.frequencies`` of a tensor's weights (``out``: a float64 tensor to write them to)."""
    return fixed.frequencies(weights.double().numpy(), bits, None if out is None else out.numpy())


def logits_to_frequencies(logits: torch.Tensor, bits: int) -> np.ndarray:
    """Fixed-point logits (..., K, H, W) -> integer frequencies (N, K), rows in (..., H, W) order."""
    k = logits.shape[-3]
    flat = logits.int().movedim(-3, -1).reshape(-1, k)  # int32: logits are clamped to ±LIMIT < 2^31
    return frequencies(softmax_weights(flat, -1), bits)
