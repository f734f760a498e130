"""Shipped models by name.

A shipped model is ``models/<name>-<hash>.pt``, where <hash> is the first 8 hex
digits of the file's SHA-256 (CompressAI's convention). The full SHA-256 of every
model file is kept in ``models/SHA256SUMS`` (``sha256sum`` format); loading refuses a
file that is not listed there or does not match. The directory can be overridden with
the DQCODEC_MODELS environment variable.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .defaults import DEFAULT_MODEL  # re-exported
from .errors import ModelError  # re-exported

if TYPE_CHECKING:  # listing models needs neither torch nor the model code
    import torch.nn as nn

    from .model import DQCodec



@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path  # <name>-<first 8 hex digits of its SHA-256>.pt

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def models_dir() -> Path:
    return Path(os.environ.get("DQCODEC_MODELS", Path(__file__).resolve().parent.parent / "models"))


SUMS = "SHA256SUMS"
_FILE_NAME = re.compile(r"(?P<name>.+)-(?P<hash>[0-9a-f]{8})\.pt")


def available() -> list[ModelFile]:
    files = []
    for path in sorted(models_dir().glob("*-*.pt")):
        match = _FILE_NAME.fullmatch(path.name)
        if match:
            files.append(ModelFile(match["name"], path))
    return files


def registered_digests(directory: Path | None = None) -> dict[str, str]:
    """File name -> full SHA-256 (hex) of every model file listed in the folder's SHA256SUMS."""
    path = (directory or models_dir()) / SUMS
    if not path.exists():
        return {}
    digests = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            digests[name] = digest
    return digests


def _write_digests(directory: Path, digests: dict[str, str]) -> None:
    lines = [f"{digest}  {name}\n" for name, digest in sorted(digests.items())]
    tmp = directory / (SUMS + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, directory / SUMS)


def install(path: Path, directory: Path) -> Path:
    """Copy a model file listed in its folder's SHA256SUMS into another models folder, with its line."""
    expected = registered_digests(path.parent).get(path.name)
    if expected is None or weights_digest(path.read_bytes()).hex() != expected:
        raise ModelError(f"{path} is not a checked model file (see {SUMS})")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / path.name
    target.write_bytes(path.read_bytes())
    _write_digests(directory, {**registered_digests(directory), path.name: expected})
    return target


def unregister(path: Path) -> None:
    """Delete a model file and its SHA256SUMS line."""
    digests = registered_digests(path.parent)
    digests.pop(path.name, None)
    _write_digests(path.parent, digests)
    path.unlink(missing_ok=True)


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
    expected = registered_digests(path.parent).get(path.name)
    if expected is None:
        raise ModelError(f"{path.name} is not listed in {path.parent / SUMS}, so its weights cannot be checked; install models with `dqcodec export`")
    if digest.hex() != expected:
        raise ModelError(f"{path} does not match its SHA-256 in {SUMS}; the file is damaged")
    import torch

    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # a file that matches its digest but is no checkpoint
        raise ModelError(f"{path} is not a model checkpoint: {error}") from None
    checkpoint["state_dict"] = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    return from_checkpoint(checkpoint), digest


def from_checkpoint(state: dict) -> "nn.Module":
    from . import registry

    return registry.from_checkpoint(state)


def checkpoint_of(model: "nn.Module") -> dict:
    from . import registry

    return registry.checkpoint_of(model)


def export(model: "nn.Module", name: str, directory: Path | None = None) -> Path:
    """Write weights in half precision as <name>-<hash>.pt, list its SHA-256 in SHA256SUMS,
    and return the path."""
    import torch

    checkpoint = checkpoint_of(model)
    checkpoint["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    directory = directory or models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    digest = weights_digest(data).hex()
    path = directory / f"{name}-{digest[:8]}.pt"
    path.write_bytes(data)
    _write_digests(directory, {**registered_digests(directory), path.name: digest})
    return path
