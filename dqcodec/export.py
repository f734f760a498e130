"""Exporting a model as a model file (``dqcodec.weights``): which weights it stores and at which steps.

Every float tensor gets the step its family's step policy gives (``registry.step_policy``,
``dqcodec.steps``); the weights the masked convolutions never use are zeroed first; given calibration
images, the convolutions' weights are rounded to their grids by GPTQ (``dqcodec.gptq``) instead of to
their nearest steps; given a base model file, the tensors it holds with the same values keep its steps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from . import lowbit, registry, weights
from .gptq import hessian_rounded


def compress_model(
    model: torch.nn.Module,
    meta: dict,
    calibration: list[torch.Tensor] | None = None,
    steps: Mapping | None = None,
    base: bytes | None = None,
) -> bytes:
    """A model's file: masked weights zeroed, steps from ``shipped_steps`` unless given, and the
    convolutions' weights rounded by GPTQ on the ``calibration`` images (model inputs), if any. Given
    ``base``, another model file, every tensor equal to one of its (same name, same values) keeps that
    file's step and is not rounded again, so it decodes to the same values."""
    state_dict = effective_state_dict(model)
    steps = dict(shipped_steps(model, state_dict) if steps is None else steps)
    kept = kept_from(base, state_dict) if base else {}
    kept.update(snap_lowbit_weights(model, state_dict))
    steps.update(kept)
    if calibration:
        state_dict = hessian_rounded(model, state_dict, steps, calibration, frozen=set(kept))
    return weights.compress_state_dict(state_dict, steps, meta)


def snap_lowbit_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """A low-bit pixel likelihood's convolution weights (lossless format 2) set in ``state_dict`` to the integers
    its coder uses (``lowbit.integer_weights``) times their channels' powers of two, and the steps that store
    them exactly: the finest of those powers. Nothing for other models."""
    config = getattr(model, "config", None)
    if not getattr(config, "pixel_grids", None):
        return {}
    steps: dict[str, float | None] = {}
    for name, tensor in state_dict.items():
        if name.startswith("pixels.") and name.endswith(".weight") and tensor.dim() == 4:
            integers, exponents = lowbit.integer_weights(tensor.numpy())
            snapped = np.ldexp(integers, -exponents.reshape(-1, 1, 1, 1))
            state_dict[name] = torch.from_numpy(snapped.astype(np.float32))
            steps[name] = float(np.ldexp(1.0, -int(exponents.max())))
    return steps


def shipped_steps(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor] | None = None
) -> dict[str, float | None]:
    """The step of every tensor of the model's state dict (or of ``state_dict``, one of its kind), as
    the model's family's step policy gives it (None: stored as it is)."""
    return registry.step_policy(model).steps(model.state_dict() if state_dict is None else state_dict)


def kept_from(base: bytes, state_dict: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
    """The steps, in the model file ``base``, of the tensors of ``state_dict`` it holds with the same values."""
    _, base_state, _ = weights.read(base)
    base_steps = weights.stored_steps(base)
    return {name: base_steps[name] for name, tensor in state_dict.items() if _same(base_state.get(name), tensor)}


def _same(stored: torch.Tensor | None, tensor: torch.Tensor) -> bool:
    return stored is not None and stored.dtype == tensor.dtype and torch.equal(stored, tensor.detach().cpu())


def effective_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with the weights its masked convolutions never use set to zero."""
    state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        mask = getattr(module, "mask", None)
        if isinstance(mask, torch.Tensor) and f"{name}.weight" in state_dict:
            state_dict[f"{name}.weight"] = state_dict[f"{name}.weight"] * mask
    return state_dict


def calibration_images(paths: list, size: int = 256) -> list[torch.Tensor]:
    """The centre size x size crop of each image (smaller images padded to a multiple of 64 by
    replication) as a (1, 3, H, W) tensor in [0, 1]."""
    return [_centre_crop(path, size) for path in paths]


def _centre_crop(path, size: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
    left, top = max(0, (image.width - size) // 2), max(0, (image.height - size) // 2)
    crop = np.asarray(
        image.crop((left, top, left + min(size, image.width), top + min(size, image.height))), dtype=np.float32
    )
    x = torch.from_numpy(crop / 255).permute(2, 0, 1)[None]
    return F.pad(x, (0, -x.shape[3] % 64, 0, -x.shape[2] % 64), mode="replicate")
