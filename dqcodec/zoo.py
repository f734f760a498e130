"""Shipped models by name.

A shipped model is ``models/<name>-<hash>.dqw``: its weights quantized and entropy-coded
(``dqcodec.weights``), where <hash> is the first 8 hex digits of the SHA-256 of the decoded weights
(``weights.digest``), the digest loading checks and every .dq file's header names. A model may also
have legacy versions, ``models/<name>-<hash>.pt`` half-precision checkpoints named by the file's own
SHA-256, kept so that files written with them still decode, and previous .dqw versions in
``models/previous/``, moved there when a newer version is exported under the same name: encoding uses
the current .dqw, decoding the version whose hash a file names. The full SHA-256 of every model file
is kept in the SHA256SUMS (``sha256sum`` format) of its folder; loading refuses a file that is not
listed there or does not match. The directory can be overridden with the DQCODEC_MODELS environment
variable.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .defaults import DEFAULT_LOSSLESS_MODEL, DEFAULT_MODEL  # noqa: F401  (re-exported)
from .errors import ModelError  # re-exported

if TYPE_CHECKING:  # listing models needs neither torch nor the model code
    import torch.nn as nn


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path  # <name>-<first 8 hex digits of its weights' SHA-256>.dqw (or .pt, a legacy version)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def weights_hash(self) -> str:
        """The 8 hex digits of the file name: what .dq files written with these weights name."""
        return self.path.stem.rsplit("-", 1)[1]

    @property
    def legacy(self) -> bool:
        """A half-precision .pt checkpoint, kept for the files written with it."""
        return self.path.suffix == LEGACY_SUFFIX

    @property
    def previous(self) -> bool:
        """A .dqw version a newer one replaced, kept in models/previous/ for the files written with it."""
        return self.path.parent.name == PREVIOUS and self.path.parent.parent == models_dir()


def models_dir() -> Path:
    """$DQCODEC_MODELS if set; else the models a wheel installs inside the package (dqcodec/models), or, in a
    source checkout or an editable install, the repository's models/ beside the package."""
    if "DQCODEC_MODELS" in os.environ:
        return Path(os.environ["DQCODEC_MODELS"])
    packaged = Path(__file__).resolve().parent / "models"
    return packaged if packaged.is_dir() else packaged.parent.parent / "models"


SUMS = "SHA256SUMS"
SUFFIX = ".dqw"  # dqcodec.weights.SUFFIX, without importing numpy and torch to list models
LEGACY_SUFFIX = ".pt"
PREVIOUS = "previous"  # the subfolder of replaced .dqw versions
_FILE_NAME = re.compile(r"(?P<name>.+)-(?P<hash>[0-9a-f]{8})(\.dqw|\.pt)")


def available(previous: bool = False) -> list[ModelFile]:
    """Every installed model file, sorted by file name: the current versions and legacy .pt files, and
    with ``previous`` the replaced .dqw versions in models/previous/ too."""
    files = []
    folders = [models_dir(), models_dir() / PREVIOUS] if previous else [models_dir()]
    for folder in folders:
        for path in sorted(folder.glob("*-*.*")):
            match = _FILE_NAME.fullmatch(path.name)
            if match and (folder == models_dir() or path.suffix == SUFFIX):
                files.append(ModelFile(match["name"], path))
    return files


def versions(name: str) -> list[ModelFile]:
    """The installed versions of a model: the current one (a .dqw) first, then previous .dqw versions and
    legacy .pt files."""
    return sorted(
        (m for m in available(previous=True) if m.name == name), key=lambda m: (m.legacy, m.previous, m.path.name)
    )


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
    if expected is None or file_digest(path.read_bytes()).hex() != expected:
        raise ModelError(f"{path} is not a checked model file (see {SUMS})")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / path.name
    target.write_bytes(path.read_bytes())
    _write_digests(directory, {**registered_digests(directory), path.name: expected})
    return target


def retire(path: Path) -> Path:
    """Move a replaced .dqw version, with its SHA256SUMS line, to models/previous/, where files naming its
    weights still find it."""
    expected = registered_digests(path.parent).get(path.name)
    if expected is None:
        raise ModelError(f"{path.name} is not listed in {path.parent / SUMS}")
    target = install(path, path.parent / PREVIOUS)
    unregister(path)
    return target


def unregister(path: Path) -> None:
    """Delete a model file and its SHA256SUMS line."""
    digests = registered_digests(path.parent)
    digests.pop(path.name, None)
    _write_digests(path.parent, digests)
    path.unlink(missing_ok=True)


def find(name: str, weights_hash: bytes | None = None) -> ModelFile:
    """The current version of a model or, given the first bytes of a weights hash (a .dq header's
    8), the version with those weights."""
    found = versions(name)
    if not found:
        names = ", ".join(dict.fromkeys(m.name for m in available())) or "none"
        raise ModelError(f"model {name!r} is not installed in {models_dir()} (installed: {names})")
    if weights_hash is None:
        return found[0]
    for model_file in found:
        if model_file.weights_hash == weights_hash.hex()[:8]:
            return model_file
    installed = ", ".join(m.weights_hash for m in found)
    raise ModelError(
        f"weights {weights_hash.hex()} of model {name!r} are not installed, only other weights ({installed})"
    )


def file_digest(data: bytes) -> bytes:
    """SHA-256 of a file's bytes, as SHA256SUMS lists it."""
    return hashlib.sha256(data).digest()


def weights_digest(data: bytes) -> bytes:
    """The SHA-256 that names the weights in a model file's bytes: of the decoded weights, as a .dqw
    file stores it (checked when it is loaded), or of the whole file for a legacy .pt checkpoint."""
    from . import weights

    return weights.stored_digest(data) if data.startswith(weights.MAGIC) else file_digest(data)


def load(
    name: str = DEFAULT_MODEL, weights_hash: bytes | None = None, family: str | None = None
) -> tuple[nn.Module, bytes]:
    """The named model in eval mode and the SHA-256 of its weights: its current version, or the
    version whose hash starts with ``weights_hash`` (see ``find``). ``family`` (``registry``): a model of
    another family is refused from its file's metadata, before its weights are decoded."""
    path = find(name, weights_hash).path
    if family is not None:
        _require_family(path, name, family)
    return _load_file(path)


def _require_family(path: Path, name: str, family: str) -> None:
    found = _stored_family(path)
    if found != family:  # the other families are CompressAI's baselines
        raise ModelError(f"model {name!r} is a {found} baseline, not a {family} model: it writes no .dq files")


@functools.lru_cache(maxsize=8)
def _stored_family(path: Path) -> str:
    """The family a model file's metadata names (as ``_load_file``, read once per file)."""
    from . import families, legacy, weights

    data = path.read_bytes()
    return families.family_of_checkpoint(weights.read_meta(data) if path.suffix == SUFFIX else legacy.read(data))


def load_file(path: Path) -> tuple[nn.Module, bytes]:
    """The model in one installed model file (checked against its folder's SHA256SUMS), e.g. a
    previous version, and the SHA-256 of its weights."""
    return _load_file(Path(path).resolve())


def clear_caches() -> None:
    """Forget every model file read so far (for a test or benchmark that changes or times them)."""
    for cached in (_load_file, _read_checkpoint, _stored_family):
        cached.cache_clear()


def read_checkpoint(
    name: str = DEFAULT_MODEL, weights_hash: bytes | None = None, family: str | None = None
) -> tuple[dict, bytes]:
    """``load`` without torch: the named model's checkpoint, its state dict numpy arrays (float32 for floats,
    legacy key names renamed), and the SHA-256 of its weights."""
    path = find(name, weights_hash).path
    if family is not None:
        _require_family(path, name, family)
    return _read_checkpoint(path)


@functools.lru_cache(maxsize=16)  # `dqcodec eval` cycles through dq-3 and the six baseline models on every image
def _load_file(path: Path) -> tuple[nn.Module, bytes]:
    import torch

    checkpoint, digest = _read_checkpoint(path)
    state_dict = {k: torch.from_numpy(v) for k, v in checkpoint["state_dict"].items()}
    return from_checkpoint({**checkpoint, "state_dict": state_dict}), digest


@functools.lru_cache(maxsize=16)
def _read_checkpoint(path: Path) -> tuple[dict, bytes]:
    """A model file's checkpoint with numpy arrays, checked against its folder's SHA256SUMS and its name."""
    data = path.read_bytes()
    expected = registered_digests(path.parent).get(path.name)
    if expected is None:
        raise ModelError(
            f"{path.name} is not listed in {path.parent / SUMS}, so its weights cannot be checked; install models with `dqcodec export`"
        )
    if file_digest(data).hex() != expected:
        raise ModelError(f"{path} does not match its SHA-256 in {SUMS}; the file is damaged")
    checkpoint, digest = _legacy_checkpoint(path, data) if path.suffix == LEGACY_SUFFIX else _checkpoint(path, data)
    if digest.hex()[:8] != path.stem.rsplit("-", 1)[1]:
        raise ModelError(f"{path.name} holds weights {digest.hex()[:8]}, not those its name gives")
    return checkpoint, digest


def _checkpoint(path: Path, data: bytes) -> tuple[dict, bytes]:
    from . import weights

    try:
        meta, state_dict, digest = weights.read_arrays(data)
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None
    return {**meta, "state_dict": state_dict}, digest


def _legacy_checkpoint(path: Path, data: bytes) -> tuple[dict, bytes]:
    from . import legacy

    try:
        checkpoint = legacy.read(data)  # numpy arrays, without running the pickle's code or importing torch
        state_dict = checkpoint["state_dict"]
        checkpoint["state_dict"] = legacy.renamed(
            {k: v.astype("float32") if v.dtype.kind == "f" else v for k, v in state_dict.items()}
        )
    except (ModelError, KeyError, TypeError, AttributeError) as error:  # matches its digest but is no checkpoint
        raise ModelError(f"{path} is not a model checkpoint: {error}") from None
    return checkpoint, file_digest(data)


def from_checkpoint(state: dict) -> nn.Module:
    from . import registry

    return registry.from_checkpoint(state)


def checkpoint_of(model: nn.Module) -> dict:
    from . import registry

    return registry.checkpoint_of(model)


def export(
    model: nn.Module, name: str, directory: Path | None = None, calibration: list | None = None, base: str | None = None
) -> Path:
    """Write a model as <name>-<hash>.dqw, its weights quantized and entropy-coded
    (``dqcodec.export.compress_model``: rounded by GPTQ on the ``calibration`` images if given; the tensors equal
    to the installed model ``base``'s keep its steps and values); list the file's SHA-256 in SHA256SUMS,
    and return the path."""
    from . import weights
    from .export import compress_model

    checkpoint = checkpoint_of(model)
    del checkpoint["state_dict"]
    base_path = find(base).path if base else None
    if base_path is not None and base_path.suffix != SUFFIX:
        raise ModelError(f"{base!r} is a legacy .pt model: its tensors have no steps to keep")
    data = compress_model(model, checkpoint, calibration, base=base_path.read_bytes() if base_path else None)
    directory = directory or models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{weights.stored_digest(data).hex()[:8]}{SUFFIX}"
    path.write_bytes(data)
    _write_digests(directory, {**registered_digests(directory), path.name: file_digest(data).hex()})
    return path
