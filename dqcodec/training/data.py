"""Training data: the images of the data folders, random crops of them, and the quality each crop is
coded at."""

from __future__ import annotations

import random
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from ..codec import image_files


def load_images(folder: Path, min_side: int) -> list[np.ndarray]:
    images = []
    for path in image_files(folder):
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
        if min(array.shape[:2]) >= min_side:
            images.append(array)
    if not images:
        raise click.ClickException(f"no images of at least {min_side} px found in {folder}")
    return images


def load_folders(folders: list[Path], min_side: int) -> list[np.ndarray]:
    """The images of every folder alike."""
    return [image for folder in folders for image in load_images(folder, min_side)]


def random_batch(images: list[np.ndarray], crop: int, batch: int, rng: random.Random) -> torch.Tensor:
    crops = []
    for _ in range(batch):
        image = images[rng.randrange(len(images))]
        h, w = image.shape[:2]
        top, left = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
        patch = image[top : top + crop, left : left + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        crops.append(np.ascontiguousarray(patch))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)


def sample_qualities(
    count: int, batch: int, keep_all: float, quality: int | None = None, first: int = 0
) -> torch.Tensor:
    """The quality (0-based) each crop is coded at: the last (every group) with probability keep_all,
    else a random one from ``first`` on (or, given ``quality``, that one)."""
    if quality is not None:
        return torch.full((batch,), quality - 1)
    drawn = torch.randint(first, count, (batch,))
    return torch.where(torch.rand(batch) < keep_all, count - 1, drawn)
