"""The runtime's array kernels: convolutions as matrix products (numpy's BLAS), channels last.

A convolution gathers each output's input window into a row (im2col) and multiplies the rows by the
weights flattened to (taps x inputs, outputs). For the exact arithmetic the arrays are float64 holding
integers whose every partial sum stays below 2^53 (``fixed.check_exact_range``), so the product is exact
in whatever order the BLAS kernel sums; for the float synthesis they are float32.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_weight(weight: np.ndarray) -> np.ndarray:
    """torch's (out, in, kh, kw) weight -> (kh * kw * in, out), the rows of ``conv2d``'s windows."""
    out_channels = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_channels))


def transposed_weight(weight: np.ndarray) -> np.ndarray:
    """torch's transposed-convolution weight (in, out, kh, kw) -> the (out, in, kh, kw) weight of the
    convolution over the zero-dilated input that computes it: channels swapped, kernel flipped."""
    return np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def conv2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, kernel: int, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """x (H, W, in) -> (H', W', out); ``weight`` from ``conv_weight``; zero padding on every side."""
    if padding:
        x = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
    if stride == 1 and kernel > 1 and weight.shape[1] < x.shape[-1]:
        out = _products_then_shifts(x, weight, kernel)
    else:
        windows = sliding_window_view(x, (kernel, kernel), axis=(0, 1))[::stride, ::stride]  # type: ignore[call-overload]  # (H', W', in, kh, kw)
        h, w = windows.shape[:2]
        rows = windows.transpose(0, 1, 3, 4, 2).reshape(h * w, -1)  # one copy, taps-major like conv_weight
        out = (rows @ weight).reshape(h, w, -1)
    if bias is not None:
        out += bias
    return out


def _products_then_shifts(x: np.ndarray, weight: np.ndarray, kernel: int) -> np.ndarray:
    """A stride-1 convolution of padded x with fewer outputs than inputs: every pixel's products with every
    tap's weights in one matrix product (pixels x taps * out, smaller than the taps' windows would be), then
    each output the sum of its taps' products, read at the tap's shift (dy * row + dx) in the flat image."""
    rows, row, channels = x.shape
    out_h, out_w, out_channels = rows - kernel + 1, row - kernel + 1, weight.shape[1]
    # channels first, so that every tap's products are contiguous rows: (taps, out, pixels)
    taps = weight.reshape(kernel * kernel, channels, out_channels).transpose(0, 2, 1).reshape(-1, channels)
    products = (taps @ x.reshape(rows * row, channels).T).reshape(kernel * kernel, out_channels, rows * row)
    n = (out_h - 1) * row + out_w  # the flat positions from the first output to the last
    out = np.zeros((out_channels, out_h * row), dtype=products.dtype)
    for t in range(kernel * kernel):
        start = (t // kernel) * row + t % kernel
        out[:, :n] += products[t, :, start : start + n]
    return out.reshape(out_channels, out_h, row)[:, :, :out_w].transpose(1, 2, 0)


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    kernel: int,
    stride: int,
    padding: int,
    output_padding: int,
) -> np.ndarray:
    """torch's conv_transpose2d on x (H, W, in), ``weight`` from ``conv_weight(transposed_weight(w))``: a
    convolution over x with stride - 1 zeros between its samples and kernel - 1 - padding around them."""
    h, w, c = x.shape
    dilated = np.zeros(((h - 1) * stride + 1, (w - 1) * stride + 1, c), dtype=x.dtype)
    dilated[::stride, ::stride] = x
    edge = kernel - 1 - padding
    dilated = np.pad(dilated, ((edge, edge + output_padding), (edge, edge + output_padding), (0, 0)))
    return conv2d(dilated, weight, bias, kernel)


def pixel_shuffle(x: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C * r^2) -> (H * r, W * r, C), torch's pixel_shuffle channels last."""
    h, w, c = x.shape
    out = c // factor**2
    return x.reshape(h, w, out, factor, factor).transpose(0, 3, 1, 4, 2).reshape(h * factor, w * factor, out)


# GELU(x) = x (1 + erf(x / sqrt 2)) / 2 with erf(z) ~ tanh(p(z)), p odd of degree 9: p fits atanh(erf(z)) on
# [0, 4] (least squares weighted by 1 - erf^2); the GELU it gives is within 7e-6 of the exact one everywhere,
# float32's resolution at the activations' scale (tests/test_runtime.py), and numpy's tanh is vectorized
_TANH_ARGUMENT = (1.12835954e00, 1.02924988e-01, -4.86406360e-04, -4.19500520e-04, 3.27801918e-05)
_GELU_POLY = [np.float32(c / np.sqrt(2) ** (2 * k + 1)) for k, c in enumerate(_TANH_ARGUMENT)]  # in x
GELU_CHUNK = 1 << 16  # elements per piece: a piece's temporaries stay in the cache


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU (the erf form) of a float32 array, in pieces spread over ``threads()`` threads (numpy's ufuncs let go
    of the GIL)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty_like(flat)
    starts = range(0, flat.size, GELU_CHUNK)
    if len(starts) == 1:
        _gelu_piece(flat, out)
    else:
        list(_pool().map(lambda s: _gelu_piece(flat[s : s + GELU_CHUNK], out[s : s + GELU_CHUNK]), starts))
    return out.reshape(x.shape)


def _gelu_piece(x: np.ndarray, out: np.ndarray) -> None:
    square = np.square(x)
    argument = square * _GELU_POLY[4]
    for c in _GELU_POLY[3:0:-1]:
        argument += c
        argument *= square
    argument += _GELU_POLY[0]
    argument *= x
    np.tanh(argument, out=argument)
    np.multiply(x, np.float32(0.5), out=out)
    argument *= out
    out += argument  # x / 2 + x / 2 tanh(p(x / sqrt 2))


def threads() -> int:
    """The threads the runtime's elementwise work uses: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads(), thread_name_prefix="dqcodec-runtime")
