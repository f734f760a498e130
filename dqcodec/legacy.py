"""Legacy ``.pt`` checkpoints (dq-hier's first weights, which old files name) read without torch.

A ``.pt`` file is a zip: ``<name>/data.pkl``, a pickle of the checkpoint whose tensors are persistent
references to raw little-endian storages, ``<name>/data/<key>``. The pickle is read by an unpickler that
knows five things only, ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and torch's typed
storages, and builds numpy arrays for them; any other global is a ``ModelError``, so nothing in the file runs.
Every storage's size and every tensor's extent within it are checked before an array is made.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import ModelError

STORAGES = {
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
MAX_PICKLE = 1 << 24  # bytes of the pickle itself (dq-hier's is 10 KB)


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


def read(data: bytes) -> dict:
    """The checkpoint a legacy ``.pt`` file holds, every tensor as a numpy array of its dtype and shape."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        (pickled,) = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if archive.getinfo(pickled).file_size > MAX_PICKLE:
            raise ModelError(f"the checkpoint's pickle is larger than {MAX_PICKLE} bytes")
        prefix = pickled[: -len("data.pkl")]
        checkpoint = _Unpickler(io.BytesIO(archive.read(pickled)), archive, prefix).load()
    except ModelError:
        raise
    except Exception as error:  # zipfile, pickle and struct report damage in many ways
        raise ModelError(f"not a readable .pt checkpoint: {type(error).__name__}: {error}") from None
    if not isinstance(checkpoint, dict):
        raise ModelError("the .pt file holds no checkpoint dictionary")
    return checkpoint


# dq-hier's checkpoints of dqcodec 0.2 named its two levels' modules; the chain numbers them
_OLD_NAMES = {
    "encoder_bottom.": "analysis.0.",
    "encoder_top.": "analysis.1.",
    "top.": "levels.0.",
    "bottom.": "levels.1.",
    "top_decoder.": "contexts.0.",
    "bottom_input.": "mixers.0.",
    "decoder.": "synthesis.",
}


def renamed(state_dict: dict) -> dict:
    """A state dict with dqcodec 0.2's module names given today's (other names unchanged)."""

    def rename(key: str) -> str:
        for old, new in _OLD_NAMES.items():
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    return {rename(k): v for k, v in state_dict.items()}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGES:
            return _StorageType(np.dtype(STORAGES[name]))
        raise ModelError(f"the checkpoint names {module}.{name}, which a weights file has no use for")

    def persistent_load(self, pid):
        """A storage: ('storage', its type, its key, its device, its number of elements)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelError("the checkpoint refers to something that is not a storage")
        _, kind, key, _, count = pid
        if not isinstance(kind, _StorageType) or not isinstance(count, int) or not isinstance(key, str):
            raise ModelError("the checkpoint refers to a storage of unknown type")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            if len(raw) != count * kind.dtype.itemsize:
                raise ModelError(
                    f"storage {key} holds {len(raw)} bytes, not the {count * kind.dtype.itemsize} it names"
                )
            self.storages[key] = np.frombuffer(raw, dtype=kind.dtype.newbyteorder("<")).astype(kind.dtype)
        return self.storages[key]


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2's tensor as an array, its extent checked within its storage."""
    if not isinstance(storage, np.ndarray) or not all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)):
        raise ModelError("a tensor of the checkpoint has no storage or a negative size")
    if len(size) != len(stride):
        raise ModelError("a tensor of the checkpoint has not as many strides as dimensions")
    if math.prod(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= len(storage):
        raise ModelError("a tensor of the checkpoint reaches past its storage")
    if not math.prod(size):
        return np.zeros(size, dtype=storage.dtype)
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * storage.itemsize for s in stride), writeable=False
    )
    return view.copy()
