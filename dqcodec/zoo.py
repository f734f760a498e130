"""Shipped models by name.

A shipped model is ``models/<name>-<hash>.pt``, where <hash> is the first 8 hex
digits of the file's SHA-256 (CompressAI's convention); loading checks it. The
directory can be overridden with the DQCODEC_MODELS environment variable.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from compressai.models import CompressionModel

from . import registry
from .model import DQCodec

DEFAULT_MODEL = "dq-hier"


class ModelError(ValueError):
    """A model that is missing or whose weights do not match."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path  # <name>-<first 8 hex digits of its SHA-256>.pt

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def models_dir() -> Path:
    return Path(os.environ.get("DQCODEC_MODELS", Path(__file__).resolve().parent.parent / "models"))


def available() -> list[ModelFile]:
    files = []
    for path in sorted(models_dir().glob("*-*.pt")):
        files.append(ModelFile(path.stem.rpartition("-")[0], path))
    return files


def find(name: str) -> ModelFile:
    for model_file in available():
        if model_file.name == name:
            return model_file
    names = ", ".join(m.name for m in available()) or "none"
    raise ModelError(f"model {name!r} is not installed in {models_dir()} (installed: {names})")


def weights_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def load(name: str = DEFAULT_MODEL) -> tuple[DQCodec, bytes]:
    """The named model in eval mode and the SHA-256 of its weights file."""
    return _load_file(find(name).path)


@functools.lru_cache(maxsize=4)
def _load_file(path: Path) -> tuple[DQCodec, bytes]:
    data = path.read_bytes()
    digest = weights_digest(data)
    if not digest.hex().startswith(path.stem.rpartition("-")[2]):
        raise ModelError(f"{path} does not match the hash in its name; the file is damaged")
    checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    return from_checkpoint(checkpoint), digest


from_checkpoint = registry.from_checkpoint
checkpoint_of = registry.checkpoint_of


def export(model: CompressionModel, name: str, directory: Path | None = None) -> Path:
    """Write weights in half precision as <name>-<hash>.pt and return the path."""
    checkpoint = checkpoint_of(model)
    checkpoint["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    directory = directory or models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{weights_digest(data).hex()[:8]}.pt"
    path.write_bytes(data)
    return path
