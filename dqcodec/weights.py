"""Model files: weights quantized uniformly and entropy-coded (Choi, El-Khamy and Lee, "Towards the
limit of network quantization" and "Universal deep neural network compression").

A float tensor with a step becomes integers q, stored as q times that float32 step: decoding
converts int32 to float32 and multiplies by the step, one correctly rounded IEEE operation, so the
weights decode bit-identically on any CPU. The integers are range-coded with constriction, all of a
tensor with one table: its own histogram (one byte per value, a count to 4 significant bits) or, when
that is smaller, a uniform distribution over its range. Integer tensors are coded the same way with
no step; tensors without a step (and booleans) are stored as they are.

A file names its weights by the SHA-256 of their canonical serialization (``digest``: the metadata as
canonical JSON, then every tensor by name with its dtype, shape and little-endian bytes). The file
holds that digest and decoding checks it, so a damaged or tampered payload, or a decoder that
computes other weights, is refused. Layout, little-endian:

    "DQW\\0", version u8, digest (32 bytes), metadata (u32 length, UTF-8 JSON: the checkpoint without
    its state dict), tensor count u32, then each tensor:
        name (u16 length, UTF-8), dtype u8 (``DTYPES``), ndim u8, shape (ndim x u32), coding u8, and
        RAW: u32 length, the bytes;
        HISTOGRAM or UNIFORM: step f32 (0 for integers), lowest value i32, alphabet size K u32,
            the histogram's K bytes (HISTOGRAM only), u32 length, the stream (none when K is 1);
    then a CRC32 of everything before it.

Everything is checked before anything is allocated; a bad file raises ``ModelError``.

This module is the format alone: which steps a model's tensors get, and how its weights are rounded to
them (GPTQ on calibration images), is ``dqcodec.export``'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from . import entropy
from .errors import ArgumentError, CorruptStreamError, ModelError

if TYPE_CHECKING:
    import torch

MAGIC = b"DQW\x00"
VERSION = 1
SUFFIX = ".dqw"
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
RAW, HISTOGRAM, UNIFORM = 0, 1, 2
MAX_ELEMENTS = 1 << 26  # in all tensors of a file (256 MB of float32; dq-hier has 5.1 million)
MAX_TENSORS = 1 << 16
MAX_NDIM = 8
MAX_META = 1 << 20
MAX_SYMBOL = 1 << 23  # |q| below it: int32 -> float32 is exact, and an alphabet spans at most 2^24 values
DECODE_THREADS = 4  # tensors decoded at once
_HEAD = struct.Struct("<4sB32sI")
_CODED = struct.Struct("<fiI")
_U32 = struct.Struct("<I")


# ---- the decoded weights and their digest ---------------------------------------------------


def canonical_meta(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest(meta: dict, state_dict: Mapping[str, torch.Tensor | np.ndarray]) -> bytes:
    """SHA-256 of the canonical serialization of a checkpoint's metadata and weights."""
    h = hashlib.sha256(b"dqcodec weights\x00")
    _update(h, canonical_meta(meta))
    for name in sorted(state_dict):
        array = _array(state_dict[name])
        _update(h, name.encode())
        _update(h, str(array.dtype).encode())
        h.update(struct.pack(f"<B{array.ndim}Q", array.ndim, *array.shape))
        _update(h, _little_endian(array).tobytes())
    return h.digest()


def _update(h, data: bytes) -> None:
    h.update(struct.pack("<Q", len(data)))
    h.update(data)


def _array(tensor: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(tensor, np.ndarray):
        array = tensor if tensor.flags.c_contiguous else tensor.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
    else:
        array = tensor.detach().cpu().contiguous().numpy()
    if str(array.dtype) not in DTYPES:
        raise ArgumentError(f"tensors of dtype {array.dtype} cannot be stored")
    return array


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def quantize(tensor: torch.Tensor, step: float) -> np.ndarray:
    """A float tensor's integers q at a step (as float32), each below MAX_SYMBOL in magnitude."""
    step32 = np.float32(step)
    if not (np.isfinite(step32) and step32 > 0):
        raise ArgumentError(f"a step must be a positive finite number, got {step32}")
    q = np.rint(_array(tensor).astype(np.float64) / np.float64(step32))
    if q.size and not np.abs(q).max() < MAX_SYMBOL:
        raise ArgumentError(f"step {step} is too fine for values up to {float(np.abs(_array(tensor)).max())}")
    return np.asarray(q, dtype=np.int32)


def dequantize(q: np.ndarray, step: float) -> np.ndarray:
    """q times the float32 step, in float32: exact conversion, one correctly rounded product."""
    return np.asarray(q.astype(np.float32) * np.float32(step))


def quantized(state_dict: Mapping[str, torch.Tensor], steps: Mapping[str, float | None]) -> dict[str, torch.Tensor]:
    """The weights a file made with these steps decodes to (float tensors without a step, and the
    others, unchanged)."""
    return {name: _decoded_value(tensor, steps.get(name)) for name, tensor in state_dict.items()}


def _decoded_value(tensor: torch.Tensor, step: float | None) -> torch.Tensor:
    import torch

    if step is None or not tensor.is_floating_point():
        return tensor.detach().cpu().clone()
    return torch.from_numpy(dequantize(quantize(tensor, step), step))


# ---- writing --------------------------------------------------------------------------------


def compress_state_dict(
    state_dict: Mapping[str, torch.Tensor], steps: Mapping[str, float | None], meta: dict | None = None
) -> bytes:
    """A model file: every float tensor quantized at its step in ``steps`` (absent or None: stored
    exactly), the integers entropy-coded; ``meta`` (JSON) is stored with them."""
    meta = meta or {}
    decoded = quantized(state_dict, steps)
    parts = [_HEAD.pack(MAGIC, VERSION, digest(meta, decoded), len(canonical_meta(meta))), canonical_meta(meta)]
    parts.append(_U32.pack(len(state_dict)))
    for name, tensor in state_dict.items():
        parts.append(_tensor_record(name, tensor, steps.get(name)))
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


def _tensor_record(name: str, tensor: torch.Tensor, step: float | None) -> bytes:
    array = _array(tensor)
    encoded = name.encode()
    if len(encoded) >= 1 << 16 or array.ndim > MAX_NDIM:
        raise ArgumentError(f"tensor {name!r}: name or rank too large to store")
    quantizing = step is not None and array.dtype.kind == "f"
    dtype = "float32" if quantizing else str(array.dtype)
    head = (
        struct.pack("<H", len(encoded))
        + encoded
        + struct.pack(f"<BB{array.ndim}I", DTYPES.index(dtype), array.ndim, *array.shape)
    )
    if quantizing and step is not None:
        return head + _smallest(_coded_records(quantize(tensor, step).ravel(), float(np.float32(step))))
    raw = _raw_record(array)
    if array.dtype.kind in "iu" and array.size and np.abs(array.astype(np.int64)).max() < MAX_SYMBOL:
        return head + _smallest([raw, *_coded_records(array.astype(np.int64).ravel(), 0.0)])
    return head + raw


def _raw_record(array: np.ndarray) -> bytes:
    data = _little_endian(array).tobytes()
    return bytes([RAW]) + _U32.pack(len(data)) + data


def _coded_records(q: np.ndarray, step: float) -> list[bytes]:
    """The HISTOGRAM and UNIFORM records of integers q (one record when they are all equal)."""
    low = int(q.min()) if q.size else 0
    symbols = (q - low).astype(np.int32)
    size = int(symbols.max()) + 1 if q.size else 1
    head = _CODED.pack(step, low, size)
    if size == 1:
        return [bytes([UNIFORM]) + head + _U32.pack(0)]
    histogram = log_counts(np.bincount(symbols, minlength=size))
    frequencies = counts_of(histogram)
    coded = [
        (HISTOGRAM, histogram.tobytes(), entropy.encode_iid(symbols, frequencies)),
        (UNIFORM, b"", entropy.encode_iid(symbols, size)),
    ]
    return [bytes([kind]) + head + table + _U32.pack(len(stream)) + stream for kind, table, stream in coded]


def _smallest(records: list[bytes]) -> bytes:
    return min(records, key=len)


def log_counts(counts: np.ndarray) -> np.ndarray:
    """Counts as bytes c: c < 8 exactly, else (8 + m) << e with c = 8 + 8e + m (4 significant bits, rounded down)."""
    counts = counts.astype(np.int64)
    e = np.maximum(np.frexp(np.maximum(counts, 1).astype(np.float64))[1] - 4, 0)  # bit length - 4
    m = (counts >> e) - 8
    return np.where(counts < 8, counts, 8 + 8 * e + m).astype(np.uint8)


def counts_of(histogram: np.ndarray) -> np.ndarray:
    """The integer frequencies (float64) a histogram of ``log_counts`` bytes stands for."""
    c = histogram.astype(np.int64)
    e, m = np.maximum(c - 8, 0) // 8, np.maximum(c - 8, 0) % 8
    return np.where(c < 8, c, (8 + m) << e).astype(np.float64)


# ---- reading --------------------------------------------------------------------------------


class _Reader:
    """Bytes read front to back; reading past the end is a ModelError."""

    def __init__(self, data: bytes):
        self.data, self.offset = memoryview(data), 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.offset + n > len(self.data):
            raise ModelError(
                f"model file is truncated or malformed (needs {n} bytes at offset {self.offset} of {len(self.data)})"
            )
        self.offset += n
        return bytes(self.data[self.offset - n : self.offset])

    def unpack(self, fmt: struct.Struct | str) -> tuple:
        fmt = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        return fmt.unpack(self.take(fmt.size))


def read(data: bytes) -> tuple[dict, dict[str, torch.Tensor], bytes]:
    """(metadata, state dict, digest) of a model file, its digest checked against its weights."""
    import torch

    meta, arrays, expected = read_arrays(data)
    return meta, {name: torch.from_numpy(array) for name, array in arrays.items()}, expected


def read_arrays(data: bytes) -> tuple[dict, dict[str, np.ndarray], bytes]:
    """``read`` without torch: every tensor as a numpy array (the same dtype, shape and values)."""
    meta, records, expected = _records(data)
    with ThreadPoolExecutor(
        max(1, min(DECODE_THREADS, os.cpu_count() or 1))
    ) as pool:  # constriction lets go of the GIL
        state_dict = dict(zip(records, pool.map(lambda record: record[1](), records.values())))
    if digest(meta, state_dict) != expected:
        raise ModelError("model file's weights do not match their SHA-256: the file is damaged")
    return meta, state_dict, expected


def read_meta(data: bytes) -> dict:
    """A model file's metadata (its config or architecture), its checksum checked, without decoding a tensor."""
    return _header(_Reader(_checked_body(data)))[0]


def stored_steps(data: bytes) -> dict[str, float | None]:
    """The step each tensor of a model file is stored with (None: stored as it is, or an integer tensor)."""
    return {name: step for name, (step, _) in _records(data)[1].items()}


def _records(data: bytes) -> tuple[dict, dict[str, tuple[float | None, Callable[[], np.ndarray]]], bytes]:
    """(metadata, every tensor's (step, how to decode it), the digest the file gives), all but the streams checked."""
    reader = _Reader(_checked_body(data))
    meta, expected, count = _header(reader)
    records = _tensors(reader, count)
    if reader.offset != len(reader.data):
        raise ModelError("model file has data after its last tensor")
    return meta, records, expected


def _header(reader: _Reader) -> tuple[dict, bytes, int]:
    """The metadata, the digest the file gives and the number of tensors, checked."""
    magic, version, expected, meta_length = reader.unpack(_HEAD)
    if magic != MAGIC:
        raise ModelError("not a dqcodec model file (bad magic bytes)")
    if version != VERSION:
        raise ModelError(f"model file format version {version} is not supported (this dqcodec reads {VERSION})")
    meta = _meta(reader.take(meta_length) if meta_length <= MAX_META else b"")
    (count,) = reader.unpack(_U32)
    if count > MAX_TENSORS:
        raise ModelError(f"model file names {count} tensors, more than {MAX_TENSORS}")
    return meta, expected, count


def _tensors(reader: _Reader, count: int) -> dict[str, tuple[float | None, Callable[[], np.ndarray]]]:
    """Each of ``count`` tensors' (step, how to decode it) by name, within MAX_ELEMENTS values in all."""
    records, budget = {}, MAX_ELEMENTS
    for _ in range(count):
        name, size, step, decode = _read_tensor(reader, budget)
        if name in records:
            raise ModelError(f"model file holds tensor {name!r} twice")
        records[name], budget = (step, decode), budget - size
    return records


def decompress_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    return read(data)[1]


def stored_digest(data: bytes) -> bytes:
    """The digest a model file gives its weights, read from its header (``read`` checks it)."""
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        raise ModelError("not a dqcodec model file (bad magic bytes)")
    return _HEAD.unpack_from(data)[2]


def _checked_body(data: bytes) -> bytes:
    if len(data) < _HEAD.size + _U32.size or data[:4] != MAGIC:
        raise ModelError("not a dqcodec model file (bad magic bytes)")
    if zlib.crc32(data[: -_U32.size]) != _U32.unpack_from(data, len(data) - _U32.size)[0]:
        raise ModelError("model file checksum mismatch: the file is truncated or damaged")
    return data[: -_U32.size]


def _meta(data: bytes) -> dict:
    try:
        meta = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise ModelError("model file's metadata is not a JSON object")
    return meta


def _read_tensor(reader: _Reader, budget: int) -> tuple[str, int, float | None, Callable[[], np.ndarray]]:
    """A tensor's name, size, step (None if it has none) and how to decode it, everything but its stream checked."""
    (name_length,) = reader.unpack("<H")
    try:
        name = reader.take(name_length).decode()
    except UnicodeDecodeError:
        raise ModelError("model file holds a tensor name that is not UTF-8") from None
    dtype_code, ndim = reader.unpack("<BB")
    if dtype_code >= len(DTYPES) or ndim > MAX_NDIM:
        raise ModelError(f"tensor {name!r}: unknown dtype or rank")
    shape = reader.unpack(f"<{ndim}I")
    size = math.prod(shape)
    if size > budget:
        raise ModelError(f"tensor {name!r}: {size} values, more than the file may hold ({MAX_ELEMENTS} in all)")
    (kind,) = reader.unpack("<B")
    dtype = np.dtype(DTYPES[dtype_code])
    step, values = (
        (None, _read_raw(reader, dtype, size)) if kind == RAW else _read_coded(reader, kind, dtype, size, name)
    )
    return name, size, step, lambda: values().reshape(shape)


def _read_raw(reader: _Reader, dtype: np.dtype, size: int) -> Callable[[], np.ndarray]:
    (length,) = reader.unpack(_U32)
    if length != size * dtype.itemsize:
        raise ModelError(f"a stored tensor has {length} bytes, not the {size * dtype.itemsize} its shape needs")
    data = reader.take(length)
    return lambda: np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype)


def _read_coded(
    reader: _Reader, kind: int, dtype: np.dtype, size: int, name: str
) -> tuple[float | None, Callable[[], np.ndarray]]:
    if kind not in (HISTOGRAM, UNIFORM):
        raise ModelError(f"tensor {name!r}: unknown coding {kind}")
    step, low, alphabet = reader.unpack(_CODED)
    _check_coded(name, dtype, step, low, alphabet)
    table = counts_of(np.frombuffer(reader.take(alphabet), dtype=np.uint8)) if kind == HISTOGRAM else alphabet
    if kind == HISTOGRAM and not table.any():
        raise ModelError(f"tensor {name!r}: its histogram is empty")
    (length,) = reader.unpack(_U32)
    stream = reader.take(length)

    def decode() -> np.ndarray:
        symbols = np.zeros(size, dtype=np.int32) if alphabet == 1 else _symbols(stream, table, size, name)
        q = symbols.astype(np.int64) + low
        return dequantize(q.astype(np.int32), step) if dtype == np.float32 and step else q.astype(dtype)

    return (float(step) if step else None), decode


def _check_coded(name: str, dtype: np.dtype, step: float, low: int, alphabet: int) -> None:
    integer = dtype.kind in "iu"
    if not (1 <= alphabet <= 2 * MAX_SYMBOL and low > -MAX_SYMBOL and low + alphabet <= MAX_SYMBOL):
        raise ModelError(f"tensor {name!r}: values out of range")
    if integer and (step != 0 or low < np.iinfo(dtype).min or low + alphabet - 1 > np.iinfo(dtype).max):
        raise ModelError(f"tensor {name!r}: values out of its dtype's range")
    if not integer and (dtype != np.float32 or not (np.isfinite(step) and step > 0)):
        raise ModelError(f"tensor {name!r}: a quantized tensor needs dtype float32 and a positive step")


def _symbols(stream: bytes, table, size: int, name: str) -> np.ndarray:
    try:
        return entropy.decode_iid(stream, table, size)
    except CorruptStreamError as error:
        raise ModelError(f"tensor {name!r}: {error}") from None
