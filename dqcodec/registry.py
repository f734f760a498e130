"""Every architecture dqcodec can build, save and load, by name, and every family of models.

Code that needs to know what kind of model it holds asks here (``family_of``), never by
``isinstance`` or attribute checks: a model's family is found by its class (``Family.model_class``),
and the family says how its models are saved and loaded and what steps their weights files store.
There are two kinds of family:

- ``dq``: ``DQCodec``, whose layout its config describes. Its named architectures (``dq-hier``,
  ``dq-stride4``) are configs; only this family writes ``.dq`` files;
- the CompressAI baselines (``bmshj2018-factorized``, ``bmshj2018-hyperprior``), trained here
  as comparisons and coded with CompressAI's own coder (a family each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from . import baselines
from .errors import ModelError
from .families import DQ, family_of_checkpoint  # re-exported
from .levels import LevelConfig
from .model import DQCodec, DQConfig
from .steps import StepPolicy

# The relative steps of a dq model's weights file (see dqcodec.steps). The pixel likelihood's steps
# 0-4 code 1, 1, 2, 4 and 8 of 16 pixels.
DQ_STEPS = StepPolicy(
    rules=(
        (r"^analysis\.", 1 / 4),
        (r"^mixers\.", 1 / 2),
        (r"^levels\.\d+\.prior\.", 1 / 2),
        (r"^contexts\.", 1 / 8),
        (r"^synthesis\.", 1 / 16),
        (r"^pixels\.inputs\.", 1 / 16),
        (r"^pixels\.steps\.[0-3]\.0\.", 1 / 2),
        (r"^pixels\.steps\.[01]\.2\.", 1 / 2),
        (r"^pixels\.steps\.(4\.0|2\.2)\.", 1 / 8),
        (r"^pixels\.steps\.3\.2\.", 1 / 16),
        (r"^pixels\.steps\.4\.2\.", 1 / 32),
    )
)


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
class Family:
    """A kind of model: the class of its models, how they are saved and loaded, the steps of their weights files."""

    name: str
    model_class: Callable[[], type | None]  # None: none of its models was built in this process
    checkpoint_of: Callable[[nn.Module], dict]  # a model's config (or architecture) and weights, as a plain dict
    from_checkpoint: Callable[[dict], nn.Module]
    step_policy: StepPolicy


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str  # a key of FAMILIES
    description: str
    build: Callable[..., nn.Module]  # an untrained model


def _dq(config: Callable[[], DQConfig]):
    def build(
        channels: int | None = None,
        depthwise: bool = True,
        residual_blocks: int | None = None,
        codebook_learning: str = "ema",
        **_,
    ) -> DQCodec:
        c = config()
        c.channels, c.depthwise, c.codebook_learning = channels or c.channels, depthwise, codebook_learning
        c.residual_blocks = c.residual_blocks if residual_blocks is None else residual_blocks
        return DQCodec(c)

    return build


def _baseline(arch: str):
    def build(size: int = 3, **_) -> nn.Module:
        return baselines.build(arch, size)

    return build


def _baseline_family(arch: str) -> Family:
    return Family(
        arch, lambda: baselines.built_class(arch), baselines.checkpoint, baselines.from_checkpoint, baselines.STEPS
    )


FAMILIES = {
    f.name: f
    for f in [
        Family(DQ, lambda: DQCodec, lambda model: model.checkpoint(), DQCodec.from_checkpoint, DQ_STEPS),
        *(_baseline_family(arch) for arch in baselines.ARCHITECTURES),
    ]
}

ARCHITECTURES = {
    a.name: a
    for a in [
        Architecture("dq-hier", DQ, "two DQ levels (stride 16 and 8)", _dq(DQConfig)),
        Architecture(
            "dq-stride4", DQ, "three DQ levels (stride 16, 8 and 4): proxy P1, which lost", _dq(stride4_config)
        ),
        Architecture("dq-hier-wide", DQ, "two DQ levels, 24 groups at stride 8", _dq(dq_hier_wide_config)),
        *(
            Architecture(arch, arch, f"CompressAI's {arch} (a baseline)", _baseline(arch))
            for arch in baselines.ARCHITECTURES
        ),
    ]
}


def build(name: str, **options) -> nn.Module:
    """An untrained model of a named architecture; options: channels, depthwise, residual_blocks and
    codebook_learning (dq), size (baselines)."""
    return ARCHITECTURES[name].build(**options)


def family(model: nn.Module) -> Family:
    """The family of a model, found by its class (or the nearest base class that is a family's)."""
    classes = {cls: f for f in FAMILIES.values() if (cls := f.model_class()) is not None}
    for cls in type(model).__mro__:
        if cls in classes:
            return classes[cls]
    raise ModelError(f"a {type(model).__name__} is not a model of any family dqcodec knows")


def family_of(model: nn.Module) -> str:
    return family(model).name


def is_dq(model: nn.Module) -> bool:
    """Whether a model is a DQ codec: it writes and reads .dq files, and has qualities."""
    return family_of(model) == DQ


def checkpoint_of(model: nn.Module) -> dict:
    """A model's config (or architecture) and weights, as a plain dict."""
    return family(model).checkpoint_of(model)


def step_policy(model: nn.Module) -> StepPolicy:
    """The steps the weights file of a model stores its tensors with (``dqcodec.steps``)."""
    return family(model).step_policy


def from_checkpoint(state: dict) -> nn.Module:
    name = family_of_checkpoint(state)
    if name not in FAMILIES:
        raise ModelError(f"unknown model architecture {name!r}")
    return FAMILIES[name].from_checkpoint(state)
