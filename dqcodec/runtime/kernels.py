"""The runtime's array kernels: convolutions as matrix products (numpy's BLAS), channels last.

A convolution gathers each output's input window into a row (im2col) and multiplies the rows by the
weights flattened to (taps x inputs, outputs). For the exact arithmetic the arrays are float64 holding
integers whose every partial sum stays below 2^53 (``fixed.check_exact_range``), so the product is exact
in whatever order the BLAS kernel sums; for the float synthesis they are float32.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_weight(weight: np.ndarray) -> np.ndarray:
    """torch's (out, in, kh, kw) weight -> (kh * kw * in, out), the rows of ``conv2d``'s windows."""
    out_channels = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_channels))


BLOCK_BYTES = 8 << 20  # the scratch a convolution fills per block of output rows (its windows or products)


def conv2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, kernel: int, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """x (H, W, in) -> (H', W', out); ``weight`` from ``conv_weight``; zero padding on every side. Computed a block
    of output rows at a time, so the scratch stays small whatever the image."""
    padded = _padded(x, padding)
    rows, row, channels = padded.shape
    out_h, out_w = (rows - kernel) // stride + 1, (row - kernel) // stride + 1
    out = np.empty((out_h, out_w, weight.shape[1]), dtype=np.result_type(x, weight))
    if stride == 1 and kernel > 1 and weight.shape[1] < channels:
        _products_then_shifts(padded, weight, bias, kernel, out)
    else:
        _windows_times_weights(padded, weight, bias, kernel, stride, out)
    return out


def _padded(x: np.ndarray, padding: int) -> np.ndarray:
    """x with ``padding`` zeros on every side, in a scratch buffer (reused between calls)."""
    if not padding:
        return x
    h, w, c = x.shape
    padded = _scratch("padded", (h + 2 * padding, w + 2 * padding, c), x.dtype)
    padded[:padding] = 0
    padded[-padding:] = 0
    padded[:, :padding] = 0
    padded[:, -padding:] = 0
    padded[padding:-padding, padding:-padding] = x
    return padded


def _windows_times_weights(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, kernel: int, stride: int, out: np.ndarray
) -> None:
    """im2col: each output's input window as a row (taps-major, like ``conv_weight``), times the weights, plus
    the bias while the block is in the cache."""
    out_h, out_w, _ = out.shape
    windows = sliding_window_view(x, (kernel, kernel), axis=(0, 1))[::stride, ::stride]  # type: ignore[call-overload]  # (H', W', in, kh, kw)
    depth = weight.shape[0]
    block = max(1, BLOCK_BYTES // (out_w * depth * x.itemsize))
    for top in range(0, out_h, block):
        rows = windows[top : top + block].transpose(0, 1, 3, 4, 2)
        gathered = _scratch("windows", rows.shape, x.dtype)
        np.copyto(gathered, rows)
        n = rows.shape[0] * out_w
        products = out[top : top + block].reshape(n, -1)
        np.matmul(gathered.reshape(n, depth), weight, out=products)
        if bias is not None:
            products += bias


def _products_then_shifts(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, kernel: int, out: np.ndarray
) -> None:
    """A stride-1 convolution of padded x with fewer outputs than inputs: every pixel's products with every
    tap's weights in one matrix product (taps * out x pixels, smaller than the taps' windows would be), then
    each output the sum of its taps' products, read at the tap's shift (dy * row + dx) in the flat image."""
    rows, row, channels = x.shape
    out_h, out_w, out_channels = out.shape
    taps = kernel * kernel
    # channels first, so that every tap's products are contiguous rows: (taps, out, pixels)
    tap_weights = weight.reshape(taps, channels, out_channels).transpose(0, 2, 1).reshape(-1, channels)
    block = max(1, BLOCK_BYTES // (row * taps * out_channels * x.itemsize))
    flat = x.reshape(rows * row, channels)
    for top in range(0, out_h, block):
        height = min(block, out_h - top)
        inputs = flat[top * row : (top + height + kernel - 1) * row]
        products = _scratch("products", (taps * out_channels, len(inputs)), np.result_type(x, weight))
        np.matmul(tap_weights, inputs.T, out=products)
        products3 = products.reshape(taps, out_channels, len(inputs))
        n = (height - 1) * row + out_w  # the flat positions from the block's first output to its last
        sums = np.zeros((out_channels, height * row), dtype=products.dtype)
        if bias is not None:
            sums += bias[:, None]
        for t in range(taps):
            start = (t // kernel) * row + t % kernel
            sums[:, :n] += products3[t, :, start : start + n]
        out[top : top + height] = sums.reshape(out_channels, height, row)[:, :, :out_w].transpose(1, 2, 0)


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    kernel: int,
    stride: int,
    padding: int,
    output_padding: int,
) -> np.ndarray:
    """torch's conv_transpose2d on x (H, W, in), ``weight`` from ``transposed_taps``: every input's products with
    every tap (one matrix product), each added where its tap puts it, ``stride`` apart, then the border cropped."""
    h, w, _ = x.shape
    taps, out_channels = kernel * kernel, weight.shape[1] // (kernel * kernel)
    products = (x.reshape(h * w, -1) @ weight).reshape(h, w, kernel, kernel, out_channels)
    full_h, full_w = (h - 1) * stride + kernel + output_padding, (w - 1) * stride + kernel + output_padding
    full = np.zeros((full_h, full_w, out_channels), dtype=products.dtype)
    for t in range(taps):
        dy, dx = divmod(t, kernel)
        full[dy : dy + (h - 1) * stride + 1 : stride, dx : dx + (w - 1) * stride + 1 : stride] += products[:, :, dy, dx]
    out = full[padding : full_h - padding, padding : full_w - padding]
    return out + bias if bias is not None else np.ascontiguousarray(out)


def transposed_taps(weight: np.ndarray) -> np.ndarray:
    """torch's transposed-convolution weight (in, out, kh, kw) -> (in, kh * kw * out), ``conv_transpose2d``'s."""
    cin = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(cin, -1))


_local = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A scratch array of that shape (contents undefined), reused between calls in this thread: large arrays
    allocated anew each time cost their page faults again."""
    buffers = _local.__dict__.setdefault("buffers", {})
    key, size = (name, np.dtype(dtype)), math.prod(shape)
    if key not in buffers or buffers[key].size < size:
        buffers[key] = np.empty(size, dtype=dtype)
    return buffers[key][:size].reshape(shape)


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


def map_in_threads(function, items) -> list:
    """``map`` over ``threads()`` threads (numpy lets go of the GIL in its loops), in order."""
    return list(_pool().map(function, items))


def threads() -> int:
    """The threads the runtime's elementwise work uses: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads(), thread_name_prefix="dqcodec-runtime")
