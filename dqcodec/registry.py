"""Every architecture dqcodec can build, save and load, by name.

Code that needs to know what kind of model it holds asks here (``family_of``), never by
``isinstance`` or attribute checks. There are two families:

- ``dq``: ``DQCodec``, whose layout its config describes. Its named architectures (``dq-hier``,
  ``dq-stride4``) are configs; only this family writes ``.dq`` files;
- the CompressAI baselines (``bmshj2018-factorized``, ``bmshj2018-hyperprior``), trained here
  as comparisons and coded with CompressAI's own coder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from . import baselines
from .errors import ModelError
from .levels import LevelConfig
from .model import DQCodec, DQConfig

DQ = "dq"


def stride4_config() -> DQConfig:
    """dq-stride4: dq-hier's two levels plus a level at stride 4 for the high rates (proxy P1 in docs/design.md;
    not the shipped model dq-2, which has dq-hier's architecture)."""
    levels = [LevelConfig(4, 64, 8), LevelConfig(16, 64, 4), LevelConfig(8, 64, 4)]
    qualities = [[4, g, 0] for g in (1, 2, 4, 8, 16)] + [[4, 16, g] for g in (2, 4, 8)]
    return DQConfig(levels=levels, qualities=qualities, rate_weights=[0.0] * len(qualities))


def dq_hier_wide_config() -> DQConfig:
    """dq-hier with 24 groups at stride 8 (its 16 carry at most 1.5 bpp before entropy coding), for the
    high rates: a dq-2 candidate (proxy P5 in docs/design.md)."""
    levels = [LevelConfig(4, 64, 8), LevelConfig(24, 64, 4)]
    qualities = [[4, g] for g in (1, 2, 4, 8, 16, 24)]
    return DQConfig(levels=levels, qualities=qualities)


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str
    description: str
    build: Callable[..., nn.Module]  # an untrained model


def _dq(config: Callable[[], DQConfig]):
    def build(channels: int | None = None, depthwise: bool = True, residual_blocks: int | None = None, codebook_learning: str = "ema", **_) -> DQCodec:
        c = config()
        c.channels, c.depthwise, c.codebook_learning = channels or c.channels, depthwise, codebook_learning
        c.residual_blocks = c.residual_blocks if residual_blocks is None else residual_blocks
        return DQCodec(c)

    return build


def _baseline(arch: str):
    def build(size: int = 3, **_) -> nn.Module:
        return baselines.build(arch, size)

    return build


ARCHITECTURES = {
    a.name: a
    for a in [
        Architecture("dq-hier", DQ, "two DQ levels (stride 16 and 8)", _dq(DQConfig)),
        Architecture("dq-stride4", DQ, "three DQ levels (stride 16, 8 and 4): proxy P1, which lost", _dq(stride4_config)),
        Architecture("dq-hier-wide", DQ, "two DQ levels, 24 groups at stride 8", _dq(dq_hier_wide_config)),
        *(Architecture(arch, arch, f"CompressAI's {arch} (a baseline)", _baseline(arch)) for arch in baselines.ARCHITECTURES),
    ]
}


def build(name: str, **options) -> nn.Module:
    """An untrained model of a named architecture; options: channels, depthwise, residual_blocks and
    codebook_learning (dq), size (baselines)."""
    return ARCHITECTURES[name].build(**options)


def family_of(model: nn.Module) -> str:
    return DQ if isinstance(model, DQCodec) else model.arch


def is_dq(model: nn.Module) -> bool:
    """Whether a model is a DQ codec: it writes and reads .dq files, and has qualities."""
    return family_of(model) == DQ


def checkpoint_of(model: nn.Module) -> dict:
    """A model's config (or architecture) and weights, as a plain dict."""
    return model.checkpoint() if is_dq(model) else baselines.checkpoint(model)


def family_of_checkpoint(state: dict) -> str:
    """The family a checkpoint (or a shipped model file's content) belongs to."""
    return state.get("arch", DQ)


def from_checkpoint(state: dict) -> nn.Module:
    family = family_of_checkpoint(state)
    if family == DQ:
        return DQCodec.from_checkpoint(state)
    if family in baselines.ARCHITECTURES:
        return baselines.from_checkpoint(state)
    raise ModelError(f"unknown model architecture {family!r}")
