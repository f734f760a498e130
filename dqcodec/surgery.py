"""Changing a trained DQ model's parts: giving it a pixel likelihood, taking one away or widening it,
and growing it by a level for higher rates. Each returns or edits a model whose other parts compute
exactly what they did."""

from __future__ import annotations

from dataclasses import replace

import torch

from .config import STRIDE, DQConfig, LevelConfig
from .errors import ArgumentError, ModelError
from .model import DQCodec
from .pixel_model import PixelModel, widen


def add_pixel_model(model: DQCodec, mixtures: int = 3, hidden: int = DQConfig.pixel_hidden) -> None:
    """Give a lossy model an (untrained) per-pixel likelihood, so it can code lossless files."""
    model.config = replace(model.config, pixel_mixtures=mixtures, pixel_hidden=hidden)
    model.pixels = PixelModel(model.config.channels, mixtures, hidden)


def adopt_pixel_model(model: DQCodec, donor: DQCodec) -> None:
    """Give ``model`` a copy of ``donor``'s pixel likelihood (its size and weights), e.g. as the start of
    training one on this model's codes; the two must have transforms of the same width."""
    if donor.pixels is None:
        raise ModelError("the model to take a pixel likelihood from has none")
    if donor.config.channels != model.config.channels:
        raise ModelError(
            f"a pixel likelihood reading {donor.config.channels} decoder channels cannot read this model's {model.config.channels}"
        )
    add_pixel_model(model, donor.config.pixel_mixtures, donor.config.pixel_hidden)
    model.pixels.load_state_dict(donor.pixels.state_dict())


def drop_pixel_model(model: DQCodec) -> None:
    """Remove the per-pixel likelihood (and the near-lossless qualities), e.g. before training the lossy part it reads."""
    model.config = replace(model.config, pixel_mixtures=0, tolerances=[])  # the residual qualities stay
    model.pixels = None


def widen_pixel_model(model: DQCodec, hidden: int) -> None:
    """Give the pixel likelihood more channels, keeping what it computes (see ``widen``)."""
    model.config = replace(model.config, pixel_hidden=hidden)
    model.pixels = widen(model.pixels, PixelModel(model.config.channels, model.config.pixel_mixtures, hidden))


def with_level(model: DQCodec, level: LevelConfig, groups: list[int]) -> DQCodec:
    """``model`` with one more level, at half the last one's stride, for higher rates: qualities that
    code none of it write the same streams (and an empty one for it) and decode to the same image as
    ``model``, to float rounding (the same weights, and the new level's codes enter the synthesis only
    through its first convolution, whose other inputs start as the identity), and new qualities code the
    new level's first ``groups[k]`` groups on top of every group of the levels above. Its new parts are
    untrained; the synthesis must have no ResNet blocks."""
    c = model.config
    _check_growth(c, level, groups)
    full = [lv.groups for lv in c.levels]
    qualities = [[*q, 0] for q in c.qualities] + [[*full, g] for g in groups]
    rate_weights = [*c.rate_weights, *[c.rate_weights[-1]] * len(groups)]
    grown = DQCodec(replace(c, levels=[*c.levels, level], qualities=qualities, rate_weights=rate_weights))
    loaded = grown.load_state_dict(_grown_state(model, grown), strict=False)
    if loaded.unexpected_keys:  # every old weight must find its place; only the new parts stay untrained
        raise ModelError(f"weights with no place in the grown model: {', '.join(loaded.unexpected_keys[:3])}")
    with torch.no_grad():  # the synthesis' first convolution passes its context input through unchanged
        first = grown.synthesis[0]
        codes = grown.levels[-1].out_channels
        first.weight.zero_()
        first.bias.zero_()
        first.weight[:, codes:, 1, 1] = torch.eye(c.channels)
    return grown.eval()


def _check_growth(c: DQConfig, level: LevelConfig, groups: list[int]) -> None:
    if c.residual_blocks:
        raise ArgumentError("a level can be added to a model without ResNet blocks in its synthesis only")
    if len(c.levels) == 4 or STRIDE >> len(c.levels) < 2:
        raise ArgumentError("the model has as many levels as dqcodec allows")
    if not groups or not all(1 <= g <= level.groups for g in groups):
        raise ArgumentError(f"each new quality codes 1 to {level.groups} groups of the new level")


def _grown_state(model: DQCodec, grown: DQCodec) -> dict:
    """``model``'s weights under ``grown``'s names (``with_level``): its last analysis stage splits
    where the new level's features are taken, and its synthesis up to the first up-sampling becomes the
    new level's context decoder."""
    count = model.num_levels
    first = len(grown.analysis[0])  # modules of model.analysis[0] that stay in grown.analysis[0]
    renamed = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "analysis":
            stage, index = int(parts[1]), int(parts[2])
            if stage == 0 and index >= first:
                parts[1:3] = ["1", str(index - first)]
            elif stage > 0:
                parts[1] = str(stage + 1)
        elif parts[0] == "synthesis":
            index = int(parts[1])
            if index < 3:
                parts[:2] = ["contexts", f"{count - 1}.{index}"]
            else:
                parts[1] = str(index - 2)
        renamed[".".join(parts)] = value
    return renamed
