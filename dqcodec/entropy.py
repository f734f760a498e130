"""Entropy coding with constriction's range coder.

This module is the only place that imports constriction. Tables enter as integer
frequencies (float64 arrays of whole numbers, every entry at least one), computed
in exact arithmetic by ``dqcodec.exact``, so encoder and decoder hand the coder
bit-equal tables. A stream is the coder's uint32 words written little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np

from .errors import CorruptStreamError  # re-exported

PROBABILITY_BITS = 16
PIXEL_PROBABILITY_BITS = 20  # finer, as pixel tables put most of their mass on a few of 256 values


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
        self._coder.encode(
            np.ascontiguousarray(symbols, dtype=np.int32),
            constriction.stream.model.Uniform(),
            np.ascontiguousarray(sizes, dtype=np.int32),
        )

    def encode_iid(self, symbols: np.ndarray, frequencies: np.ndarray) -> None:
        """Every symbol with the same table (frequencies of shape (1, K))."""
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _iid_model(frequencies[0]))

    def to_bytes(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()

    def num_words(self) -> int:
        """The stream's length in 32-bit words if it ended now; it never shrinks as symbols are added."""
        return self._coder.num_words()


class StreamDecoder:
    """Decodes chunks in the order they were encoded; ``finish`` checks that the stream held exactly
    those symbols.

    Every decoded chunk is encoded again, with the same tables, as the decoder goes. A range coder's
    stream is a function of its symbols and tables, so the stream is valid only if that re-encoding
    gives back its very bytes: a stream with words left over, missing or altered past the last symbol
    (which a decoder alone can silently accept) is refused. The re-encoding also stops a stream as soon
    as it would need more words than it has: a range decoder reads zeros past its end without complaint,
    so a cut or forged stream would otherwise be decoded to the end of whatever image its header names."""

    def __init__(self, data: bytes):
        if len(data) % 4:
            raise CorruptStreamError("stream length is not a whole number of 32-bit words")
        self._data = bytes(data)
        words = np.frombuffer(self._data, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)
        self._check = StreamEncoder()

    def decode(self, frequencies: np.ndarray) -> np.ndarray:
        table = _table(frequencies)
        symbols = _decoded(lambda: self._coder.decode(_model(), table), np.int32)
        self._check.encode(symbols, table)
        self._check_length()
        return symbols.astype(np.int64)

    def decode_uniform(self, sizes: np.ndarray) -> np.ndarray:
        if not len(sizes):
            return np.zeros(0, dtype=np.int64)
        sizes = np.ascontiguousarray(sizes, dtype=np.int32)
        symbols = _decoded(lambda: self._coder.decode(constriction.stream.model.Uniform(), sizes), np.int32)
        self._check.encode_uniform(symbols, sizes)
        self._check_length()
        return symbols.astype(np.int64)

    def decode_iid(self, frequencies: np.ndarray, count: int) -> np.ndarray:
        """``count`` symbols, all with one table (frequencies of shape (1, K))."""
        model = _iid_model(frequencies[0])
        symbols = _decoded(lambda: self._coder.decode(model, count), np.int32)
        self._check.encode_iid(symbols, frequencies)
        self._check_length()
        return symbols.astype(np.int64)

    def _check_length(self) -> None:
        if 4 * self._check.num_words() > len(self._data):
            raise CorruptStreamError(f"stream ends before its symbols do ({len(self._data)} bytes)")

    def finish(self) -> None:
        encoded = self._check.to_bytes()
        if encoded != self._data:
            where = (
                "left over after the last symbol"
                if self._data.startswith(encoded)
                else "that its symbols do not encode to"
            )
            raise CorruptStreamError(f"stream has data {where} ({len(self._data)} bytes, {len(encoded)} expected)")


def _decoded(decode, dtype) -> np.ndarray:
    try:
        return np.asarray(decode(), dtype=dtype)
    except Exception as error:  # constriction reports bad data as ValueError, RuntimeError or AssertionError
        raise CorruptStreamError(f"stream does not decode: {type(error).__name__} {error}".rstrip()) from None


# ---- i.i.d. symbols (model files: dqcodec.weights) ------------------------------------------


def _iid_model(table: np.ndarray | int):
    """One table for every symbol: integer frequencies (float64 whole numbers, K of them, K >= 2), or an
    alphabet size for a uniform distribution."""
    if isinstance(table, np.ndarray):
        return constriction.stream.model.Categorical(_table(table), perfect=False)
    return constriction.stream.model.Uniform(int(table))


def encode_iid(symbols: np.ndarray, table: np.ndarray | int) -> bytes:
    """Symbols in range(K), all coded with one table (see ``_iid_model``), as little-endian uint32 words."""
    coder = constriction.stream.queue.RangeEncoder()
    coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _iid_model(table))
    return coder.get_compressed().astype("<u4").tobytes()


def decode_iid(data: bytes, table: np.ndarray | int, count: int) -> np.ndarray:
    """The ``count`` symbols ``encode_iid`` coded with the same table; the stream must end with them."""
    if len(data) % 4:
        raise CorruptStreamError("stream length is not a whole number of 32-bit words")
    coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    symbols = _decoded(lambda: coder.decode(_iid_model(table), count), np.int32)
    if not coder.maybe_exhausted():
        raise CorruptStreamError(f"stream has data left over after its {count} symbols")
    return symbols
