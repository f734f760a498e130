"""Block disparity between two views: a vector field that predicts one view from the decoded other.

Each ``BLOCK``×``BLOCK`` block of the predicted view gets one vector (dy, dx) in halves of a pixel: its
pixels are the reference view's dy / 2 rows and dx / 2 columns away, coordinates clamped to the
reference's edges (so any vector is safe, and views may differ in size). At a half position a pixel is
the mean of the two (or four) pixels around it, rounded half up in integers, so encoder and decoder
compute the same prediction from the same reference.

The encoder finds the vectors (``estimate``): a global shift first, then each block's best match of
luma, coarse to fine, to whole pixels and then to halves. Only the vectors are coded (``encode_vectors``): each one's difference from
the block to its left (the first column's from the block above), each component with a table of
three numbers the stream sends first, as the residual layer's tables are (``residual.table``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from . import residual
from .entropy import StreamDecoder, StreamEncoder
from .errors import CorruptStreamError

BLOCK = 16
MAX_VECTOR = 1 << 14  # |dy|, |dx| below this many half pixels (8192 pixels; the encoder searches less far)
_LARGEST = 2 * MAX_VECTOR  # the largest difference of neighbouring vectors a stream may send
COARSE = 4  # the coarse search runs on images downscaled by this
GLOBAL = 8  # and the global shift's on images downscaled by this
_REFINE = 3  # the fine search's reach around each block's coarse vector, in pixels
# the fine searches add this many (a block's absolute luma error) per pixel a vector is from its neighbours' median:
# smoother vectors cost fewer bits (chosen on the tuning pairs: BD-rate on their stereo pairs -22.26% without,
# -22.46% at 16, -22.64% at 64)
VECTOR_WEIGHT = 64


def blocks(height: int, width: int) -> tuple[int, int]:
    """The vector field's shape for a view of this size."""
    return -(-height // BLOCK), -(-width // BLOCK)


# ---- prediction (encoder and decoder) -------------------------------------------------------


def predict(reference: np.ndarray, vectors: np.ndarray, height: int, width: int) -> np.ndarray:
    """The (height, width, C) prediction of a view from the reference (h, w, C) and its vectors (bh, bw, 2)
    in halves of a pixel."""
    whole, half = np.floor_divide(vectors, 2), vectors & 1
    if not half.any():
        return _copy(reference, whole, height, width)
    total = sum(_corners(reference.astype(np.int32), whole, half, height, width))
    return ((total + 2) >> 2).astype(reference.dtype)


def _corners(reference: np.ndarray, whole: np.ndarray, half: np.ndarray, height: int, width: int):
    """The four whole-pixel copies around half positions (the same one four times at whole positions)."""
    for down in (0, 1):
        for right in (0, 1):
            yield _copy(reference, whole + half * np.array([down, right]), height, width)


def _copy(reference: np.ndarray, vectors: np.ndarray, height: int, width: int) -> np.ndarray:
    """The prediction of whole-pixel vectors: a copy."""
    rows, cols = _coordinates(vectors, height, width, (reference.shape[0], reference.shape[1]))
    return reference[rows, cols]


def _coordinates(vectors: np.ndarray, height: int, width: int, limits: tuple[int, int]):
    per_pixel = np.repeat(np.repeat(vectors, BLOCK, 0), BLOCK, 1)[:height, :width]
    rows = np.clip(np.arange(height)[:, None] + per_pixel[..., 0], 0, limits[0] - 1)
    cols = np.clip(np.arange(width)[None, :] + per_pixel[..., 1], 0, limits[1] - 1)
    return rows, cols


# ---- the encoder's search ---------------------------------------------------------------------


def estimate(reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Vectors (bh, bw, 2), in halves of a pixel, predicting target (H, W, C) from reference (h, w, C) with
    small absolute luma error: a global shift at 1/8 scale, each block's vector at 1/4 scale around it,
    refined at full scale to whole pixels, then to halves."""
    ref, tgt = _luma(reference), _luma(target)
    height, width = tgt.shape
    shape = blocks(height, width)
    shift = _global_shift(_downscale(ref, GLOBAL), _downscale(tgt, GLOBAL)) * GLOBAL
    reach = np.array([max(2, height // 16), max(8, width // 8)]) // COARSE
    coarse = _block_search(
        _downscale(ref, COARSE), _downscale(tgt, COARSE), shape, BLOCK // COARSE, shift // COARSE, reach
    )
    whole = _refine(ref, tgt, coarse * COARSE, shape)
    return _refine_halves(ref, tgt, 2 * whole, shape)


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32).mean(-1) if image.ndim == 3 else image.astype(np.float32)


def _downscale(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = max(1, image.shape[0] // factor), max(1, image.shape[1] // factor)
    padded = np.pad(image, ((0, max(0, h * factor - image.shape[0])), (0, max(0, w * factor - image.shape[1]))), "edge")
    return padded[: h * factor, : w * factor].reshape(h, factor, w, factor).mean((1, 3))


def _shifted(image: np.ndarray, dy: int, dx: int, shape: tuple[int, int]) -> np.ndarray:
    rows = np.clip(np.arange(shape[0]) + dy, 0, image.shape[0] - 1)
    cols = np.clip(np.arange(shape[1]) + dx, 0, image.shape[1] - 1)
    return image[rows][:, cols]


def _global_shift(ref: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """The (dy, dx) at this scale whose overlap of the two images differs least on average."""
    h, w = tgt.shape
    best, shift = np.inf, np.zeros(2, dtype=np.int64)
    for dy in range(-(h // 8), h // 8 + 1):
        for dx in range(-(w // 3), w // 3 + 1):
            top, bottom = max(0, -dy), min(h, ref.shape[0] - dy)
            left, right = max(0, -dx), min(w, ref.shape[1] - dx)
            if (bottom - top) * (right - left) < tgt.size // 3:
                continue
            error = np.abs(tgt[top:bottom, left:right] - ref[top + dy : bottom + dy, left + dx : right + dx]).mean()
            if error < best:
                best, shift = error, np.array([dy, dx])
    return shift


def block_sums(
    values: np.ndarray, size: int, shape: tuple[int, int], padding: Literal["edge", "constant"] = "edge"
) -> np.ndarray:
    """The sums (shape) of ``values`` (H, W) over size x size blocks, the last ones padded (``np.pad``'s mode)."""
    h, w = shape[0] * size, shape[1] * size
    padded = np.pad(values, ((0, max(0, h - values.shape[0])), (0, max(0, w - values.shape[1]))), padding)[:h, :w]
    return padded.reshape(shape[0], size, shape[1], size).sum((1, 3))


def _block_search(ref, tgt, shape, size: int, centre: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Each block's (dy, dx) within ``reach`` of ``centre`` matching best, on whole shifted images."""
    best = np.full(shape, np.inf)
    vectors = np.zeros(shape + (2,), dtype=np.int64)
    for dy in range(centre[0] - reach[0], centre[0] + reach[0] + 1):
        for dx in range(centre[1] - reach[1], centre[1] + reach[1] + 1):
            # a small cost for leaving the global shift keeps flat blocks on it (cheaper vectors)
            error = block_sums(np.abs(tgt - _shifted(ref, dy, dx, tgt.shape)), size, shape)
            error += 0.5 * size * (abs(dy - centre[0]) + abs(dx - centre[1]))
            better = error < best
            best[better], vectors[better] = error[better], (dy, dx)
    return vectors


def _neighbour_median(vectors: np.ndarray) -> np.ndarray:
    """Each vector's median with its four neighbours' (edges repeated), per component."""
    padded = np.pad(vectors, ((1, 1), (1, 1), (0, 0)), mode="edge")
    around = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:], vectors]
    return np.median(np.stack(around), axis=0)


def _refine(ref: np.ndarray, tgt: np.ndarray, vectors: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whole-pixel vectors within ``_REFINE`` of the coarse ones matching best, smoothness weighed in."""
    best = np.full(shape, np.inf)
    refined = vectors.copy()
    centre = _neighbour_median(vectors)
    for ey in range(-_REFINE, _REFINE + 1):
        for ex in range(-_REFINE, _REFINE + 1):
            candidate = vectors + np.array([ey, ex])
            rows, cols = _coordinates(candidate, tgt.shape[0], tgt.shape[1], (ref.shape[0], ref.shape[1]))
            error = block_sums(np.abs(tgt - ref[rows, cols]), BLOCK, shape)
            error += VECTOR_WEIGHT * np.abs(candidate - centre).sum(-1)
            better = error < best
            best[better], refined[better] = error[better], candidate[better]
    return refined


def _refine_halves(ref: np.ndarray, tgt: np.ndarray, vectors: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The vectors (in halves) moved by half a pixel in any direction where that matches better."""
    vectors = np.clip(vectors, 2 - MAX_VECTOR, MAX_VECTOR - 2)
    height, width = tgt.shape
    centre = _neighbour_median(vectors)

    def error_of(candidate: np.ndarray) -> np.ndarray:
        mean = sum(_corners(ref, np.floor_divide(candidate, 2), candidate & 1, height, width)) / 4
        return block_sums(np.abs(tgt - mean), BLOCK, shape) + VECTOR_WEIGHT / 2 * np.abs(candidate - centre).sum(-1)

    best = error_of(vectors)
    refined = vectors.copy()
    for ey in (-1, 0, 1):
        for ex in (-1, 0, 1):
            if ey or ex:
                candidate = vectors + np.array([ey, ex])
                error = error_of(candidate)
                better = error < best
                best[better], refined[better] = error[better], candidate[better]
    return refined


# ---- photometric correction (pair format 2) ----------------------------------------------------

GAIN_BITS = 6  # a channel's gain is g / 2^6, g in 0..2^6: at most 1, so a reference a grey level off moves the
# corrected prediction by at most a level too, as it moves an uncorrected one (docs/bitstream.md)
_GAIN_SIZES = np.array([(1 << GAIN_BITS) + 1, 512])  # g, and the offset o + 256, o in -256..255
IDENTITY_GAINS = np.array([[1 << GAIN_BITS, 0]] * 3)


def fit_gains(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 2) integer gain (at most 1) and offset per channel mapping the prediction (h, w, 3) close to the
    target: another camera's exposure or white balance. Least squares, then again over the half of the pixels
    it fits best (occlusions and mismatched blocks would pull a single fit's gain towards 0), clipped and
    rounded."""
    gains = IDENTITY_GAINS.copy()
    for channel in range(3):
        x = prediction[..., channel].reshape(-1).astype(np.float64)
        y = target[..., channel].reshape(-1).astype(np.float64)
        kept = np.ones(x.shape, dtype=bool)
        for _ in range(2):
            if x[kept].var() <= 0:
                break
            gain = np.clip(np.cov(x[kept], y[kept], bias=True)[0, 1] / x[kept].var(), 0, 1)
            offset = y[kept].mean() - gain * x[kept].mean()
            error = np.abs(y - gain * x - offset)
            kept = error <= np.median(error)
        else:
            gains[channel] = np.round(gain * (1 << GAIN_BITS)), np.clip(np.round(offset), -256, 255)
    return gains


def apply_gains(prediction: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """The prediction (h, w, 3) uint8 with each channel c mapped to clip((g p + 2^6 o + 2^5) >> 6, 0, 255)."""
    scaled = prediction.astype(np.int32) * gains[:, 0] + (gains[:, 1] << GAIN_BITS) + (1 << (GAIN_BITS - 1))
    return np.clip(scaled >> GAIN_BITS, 0, 255).astype(np.uint8)


def encode_gains(gains: np.ndarray, stream: StreamEncoder) -> None:
    stream.encode_uniform((gains + [0, 256]).reshape(-1), np.tile(_GAIN_SIZES, 3))


def decode_gains(stream: StreamDecoder) -> np.ndarray:
    return stream.decode_uniform(np.tile(_GAIN_SIZES, 3)).reshape(3, 2).astype(np.int64) - [0, 256]


# ---- coding the vectors -----------------------------------------------------------------------


def differences(vectors: np.ndarray) -> np.ndarray:
    """Each vector minus its left neighbour's (the first column's: minus the one above; the first: itself)."""
    out = vectors.copy()
    out[:, 1:] -= vectors[:, :-1]
    out[1:, 0] -= vectors[:-1, 0]
    return out


def undifferenced(diffs: np.ndarray) -> np.ndarray:
    first_column = np.cumsum(diffs[:, 0], axis=0)
    return np.cumsum(np.concatenate([first_column[:, None], diffs[:, 1:]], 1), axis=1)


def encode_vectors(vectors: np.ndarray, stream: StreamEncoder) -> None:
    diffs = differences(vectors)
    for component in range(2):
        symbols = diffs[..., component].reshape(-1)
        largest, zero, decay = residual.fit_symbols(np.abs(symbols))
        stream.encode_uniform(np.array([largest, max(zero, 1) - 1, decay]), _PARAMETER_SIZES)
        if largest:
            stream.encode_iid(symbols + largest, residual.table(largest, zero, decay))


_PARAMETER_SIZES = np.array([_LARGEST + 1, residual.ZERO_LEVELS - 1, 1 << residual.DECAY_BITS])


def decode_vectors(shape: tuple[int, int], stream: StreamDecoder) -> np.ndarray:
    diffs = np.zeros(shape + (2,), dtype=np.int64)
    for component in range(2):
        largest, zero, decay = (int(v) for v in stream.decode_uniform(_PARAMETER_SIZES))
        if largest:
            symbols = stream.decode_iid(residual.table(largest, zero + 1, decay), shape[0] * shape[1])
            diffs[..., component] = (symbols - largest).reshape(shape)
    vectors = undifferenced(diffs)
    if np.abs(vectors).max(initial=0) >= MAX_VECTOR:
        raise CorruptStreamError(f"a disparity vector reaches {MAX_VECTOR} pixels or more")
    return vectors
