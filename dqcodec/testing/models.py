"""Tiny random-weight models and deterministic test images, for tests, scripts and benchmarks."""

from __future__ import annotations

import numpy as np
import torch

from dqcodec.levels import LevelConfig
from dqcodec.model import DQCodec, DQConfig

TINY = DQConfig(
    channels=16,
    levels=[LevelConfig(groups=2, codebook=8, dim=2), LevelConfig(groups=4, codebook=8, dim=2)],
    prior_hidden=4,
    qualities=[[2, 1], [2, 2], [2, 4]],
    rate_weights=[0.0, 0.0, 0.0],
    default_quality=2,
)
# the same with a third level at stride 4, as dq-2 has
TINY_3 = DQConfig(
    channels=16,
    levels=[*TINY.levels, LevelConfig(groups=2, codebook=16, dim=2)],
    prior_hidden=4,
    qualities=[[2, 1, 0], [2, 4, 0], [2, 4, 1], [2, 4, 2]],
    rate_weights=[0.0] * 4,
    default_quality=2,
)


LOWBIT_GRIDS = [7] + [6, 6] * 5  # a low-bit pixel likelihood's grids (lossless format 2) for the tiny models


def tiny_model(seed: int = 0, depthwise: bool = True, config: DQConfig = TINY, pixel_grids=()) -> DQCodec:
    """A random-weight model with trained-looking codebooks (initialized from data) and
    a random per-pixel likelihood, so it codes lossless files too; after its lossy qualities, one
    residual quality (quality 2's codes and DCTs of step 16), then near-lossless ones (tolerances 1 and 3).
    ``pixel_grids``: a low-bit pixel likelihood (``LOWBIT_GRIDS``) instead of a fixed-point one."""
    torch.manual_seed(seed)
    extra = {
        "pixel_mixtures": 2,
        "pixel_hidden": 8,
        "residual_steps": [[2, 16]],
        "tolerances": [1, 3],
        "pixel_grids": list(pixel_grids),
    }
    config = DQConfig(**{**config.__dict__, "depthwise": depthwise, **extra})
    model = DQCodec(config)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))  # first batch seeds the codebooks
    return model.eval()


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: deterministic, and not constant."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3 % 256, y * 5 % 256, (x + y) * 2 % 256], -1)
    return np.clip(base + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)
