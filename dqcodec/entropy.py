"""Entropy coding with constriction's range coder.

This module is the only place that imports constriction. Tables enter as integer
frequencies (float64 arrays of whole numbers, every entry at least one), computed
in exact arithmetic by ``dqcodec.exact``, so encoder and decoder hand the coder
bit-equal tables. A stream is the coder's uint32 words written little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np

PROBABILITY_BITS = 16
PIXEL_PROBABILITY_BITS = 20  # finer, as pixel tables put most of their mass on a few of 256 values


class CorruptStreamError(ValueError):
    """A stream that cannot be decoded with the tables it is decoded with."""


def ideal_bits(symbols: np.ndarray, frequencies: np.ndarray) -> float:
    """-sum log2 p of the symbols under the (normalized) tables."""
    rows = np.arange(len(symbols))
    p = frequencies[rows, symbols] / frequencies.sum(-1)
    return float(-np.log2(p).sum())


def _table(frequencies: np.ndarray) -> np.ndarray:
    # constriction reads the table's memory row by row, whatever its strides say
    return np.ascontiguousarray(frequencies, dtype=np.float64)


def _model():
    return constriction.stream.model.Categorical(perfect=False)


class StreamEncoder:
    """Encodes chunks of symbols, each with its tables, into one stream."""

    def __init__(self):
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, frequencies: np.ndarray) -> None:
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _model(), _table(frequencies))

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
            return np.asarray(self._coder.decode(_model(), _table(frequencies)), dtype=np.int64)
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
