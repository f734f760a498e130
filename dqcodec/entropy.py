"""Entropy coding of code indices with constriction's range coder.

This module is the only place that imports constriction. Probabilities enter as
logits; ``quantize_probabilities`` turns them into integer frequencies with a
fixed recipe (float64 softmax, then floor to a 2^-16 grid plus one), so that any
two processes holding bit-equal logits hand the coder bit-equal tables. A stream
is the coder's uint32 words written little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

PROBABILITY_BITS = 16
PIXEL_PROBABILITY_BITS = 20  # finer, as pixel tables put most of their mass on a few of 256 values


class CorruptStreamError(ValueError):
    """A stream that cannot be decoded with the tables it is decoded with."""


def quantize_probabilities(logits: torch.Tensor) -> np.ndarray:
    """Logits (..., K, H, W) -> integer frequencies (N, K) as float64, rows in (…, H, W) order.

    Every symbol keeps a frequency of at least one, so every index stays codable.
    """
    k = logits.shape[-3]
    flat = logits.detach().double().movedim(-3, -1).reshape(-1, k)
    return quantize_table(torch.softmax(flat, dim=-1), PROBABILITY_BITS)


def quantize_table(probabilities: torch.Tensor, bits: int = PIXEL_PROBABILITY_BITS) -> np.ndarray:
    """Probabilities (N, K) -> integer frequencies floor(p * 2^bits) + 1 as float64."""
    return (torch.floor(probabilities.double() * (1 << bits)) + 1).numpy()


def ideal_bits(symbols: np.ndarray, frequencies: np.ndarray) -> float:
    """-sum log2 p of the symbols under the (normalized) tables."""
    rows = np.arange(len(symbols))
    p = frequencies[rows, symbols] / frequencies.sum(-1)
    return float(-np.log2(p).sum())


def _model():
    return constriction.stream.model.Categorical(perfect=False)


class StreamEncoder:
    """Encodes chunks of symbols, each with its tables, into one stream."""

    def __init__(self):
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, frequencies: np.ndarray) -> None:
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _model(), frequencies)

    def encode_uniform(self, symbols: np.ndarray, sizes: np.ndarray) -> None:
        """Each symbol uniform over range(size); every size at least 2."""
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), constriction.stream.model.Uniform(), np.ascontiguousarray(sizes, dtype=np.int32))

    def to_bytes(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class StreamDecoder:
    """Decodes chunks in the order they were encoded; ``finish`` checks nothing is left."""

    def __init__(self, data: bytes):
        if len(data) % 4:
            raise CorruptStreamError("stream length is not a whole number of 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, frequencies: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._coder.decode(_model(), frequencies), dtype=np.int64)
        except (ValueError, RuntimeError) as error:  # constriction reports bad data this way
            raise CorruptStreamError(f"stream does not decode: {error}") from error

    def decode_uniform(self, sizes: np.ndarray) -> np.ndarray:
        if not len(sizes):
            return np.zeros(0, dtype=np.int64)
        try:
            symbols = self._coder.decode(constriction.stream.model.Uniform(), np.ascontiguousarray(sizes, dtype=np.int32))
        except (ValueError, RuntimeError) as error:
            raise CorruptStreamError(f"stream does not decode: {error}") from error
        return np.asarray(symbols, dtype=np.int64)

    def finish(self) -> None:
        if not self._coder.maybe_exhausted():
            raise CorruptStreamError("stream has data left over after the last symbol")
