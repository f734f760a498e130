"""Large images in tiles: memory bounded by a tile, time linear in pixels.

This module knows geometry, not coding modes: it cuts a padded image into tiles, gives each tile's
features from a window around it, and keeps the whole image's code indices. ``stack.LayerStack`` hands
each tile to the layers, and synthesizes the codes' image window by window.

A tile is a square of T×T pixels of the padded image (T is in the file's header; the tiles of the
last row and column are smaller), and it is coded exactly as a whole image of that size: every
level's indices, with the priors and the contexts they are conditioned on seeing only the tile.
Tiles follow each other in raster order within every stream, so an image no larger than one tile
is coded as a whole image, and no more than one tile is held in memory at once, apart from the code
indices (at most one byte each) and the output pixels.

The float parts see across tiles. The encoder's analysis and the synthesis of the codes' image run
on windows of the whole image with a margin of ``HALO`` pixels on every side, wider than their
receptive fields (tests/test_tiling.py measures them), so a tiled image decodes without seams,
like the whole image would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import STRIDE, DQConfig

if TYPE_CHECKING:
    import torch

    from .model import DQCodec

HALO = 128  # pixels of margin around a window; a multiple of STRIDE


@dataclass(frozen=True)
class Box:
    """A rectangle of the padded image, in pixels; every edge a multiple of STRIDE."""

    top: int
    left: int
    height: int
    width: int

    def positions(self, stride: int) -> tuple[slice, slice]:
        """The box's rows and columns in a grid of that stride."""
        rows = slice(self.top // stride, (self.top + self.height) // stride)
        return rows, slice(self.left // stride, (self.left + self.width) // stride)

    def pixels(self) -> tuple[slice, slice]:
        return self.positions(1)

    @property
    def grid(self) -> tuple[int, int]:
        """Its size in first-level positions."""
        return self.height // STRIDE, self.width // STRIDE

    def inside(self, size: tuple[int, int]) -> tuple[int, int]:
        """How much of the box lies inside the true (unpadded) image of that size."""
        return max(0, min(self.height, size[0] - self.top)), max(0, min(self.width, size[1] - self.left))

    def inside_slices(self, size: tuple[int, int]) -> tuple[slice, slice]:
        """The rows and columns of an (H, W, ...) image of the true size that lie in the box."""
        h, w = self.inside(size)
        return slice(self.top, self.top + h), slice(self.left, self.left + w)


@dataclass(frozen=True)
class Tile:
    """One tile of an image and everything the layers read of its place, computed once."""

    box: Box  # in the padded image
    grid: tuple[int, int]  # its size in first-level positions
    inside: tuple[int, int]  # how much of it lies inside the true image
    rows: slice  # its rows and columns in an (H, W, ...) image of the true size
    cols: slice
    window: Box  # the box with HALO pixels around it, within the padded image
    in_window: Box  # the box's place inside that window

    @property
    def region(self) -> tuple[slice, slice]:
        """Its rows and columns in the padded image."""
        return self.box.pixels()


def cut(size: tuple[int, int], tile: int) -> list[Tile]:
    """The tiles of an image of the true ``size`` (padded to whole units), in raster order; tile 0 is one tile."""
    padded = padded_size(*size)
    cuts = []
    for box in tiles(*padded, tile):
        rows, cols = box.inside_slices(size)
        outer, inner = window(box, *padded)
        cuts.append(Tile(box, box.grid, box.inside(size), rows, cols, outer, inner))
    return cuts


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE


def tiles(height: int, width: int, tile: int) -> list[Box]:
    """The tiles of a padded image of height x width pixels, in raster order; tile 0 is one tile."""
    tile = tile or max(height, width)
    return [
        Box(top, left, min(tile, height - top), min(tile, width - left))
        for top in range(0, height, tile)
        for left in range(0, width, tile)
    ]


def window(box: Box, height: int, width: int) -> tuple[Box, Box]:
    """The box with HALO pixels around it (within the image), and the box's place inside that window."""
    top, left = max(0, box.top - HALO), max(0, box.left - HALO)
    bottom, right = min(height, box.top + box.height + HALO), min(width, box.left + box.width + HALO)
    return Box(top, left, bottom - top, right - left), Box(box.top - top, box.left - left, box.height, box.width)


def level_strides(levels: int) -> list[int]:
    return [STRIDE >> i for i in range(levels)]


def analysed_tiles(net: DQCodec, x: torch.Tensor, cuts: list[Tile]) -> Iterator[tuple[Tile, list[torch.Tensor]]]:
    """(tile, every level's features of it) for a padded image x (1, 3, H, W), each from the analysis
    of a window around the tile."""
    strides = level_strides(net.num_levels)
    for tile in cuts:
        features = net.analyse(x[(...,) + tile.window.pixels()])
        yield tile, [f[(...,) + tile.in_window.positions(s)] for f, s in zip(features, strides)]


class IndexMaps:
    """Every level's indices of the whole image, at one byte each where the codebook allows (numpy arrays)."""

    def __init__(self, config: DQConfig, height: int, width: int):
        self.strides = level_strides(len(config.levels))
        self.maps = []
        for level, stride in zip(config.levels, self.strides):
            dtype = np.uint8 if level.codebook <= 256 else np.int16
            self.maps.append(np.zeros((1, level.groups, height // stride, width // stride), dtype=dtype))

    def put(self, box: Box, indices: list) -> None:
        """A tile's indices (torch tensors or numpy arrays) into the whole image's maps."""
        for index_map, tile_indices, stride in zip(self.maps, indices, self.strides):
            index_map[(...,) + box.positions(stride)] = np.asarray(tile_indices)

    def around(self, box: Box) -> list[np.ndarray]:
        return [m[(...,) + box.positions(s)] for m, s in zip(self.maps, self.strides)]


def to_hwc(x, inside: tuple[int, int]) -> np.ndarray:
    """(1, 3, h, w) values in 0..255 (a torch tensor or numpy array) -> the top-left ``inside`` as (h, w, 3) uint8."""
    values = np.asarray(x[0, :, : inside[0], : inside[1]], dtype=np.float32)
    return np.clip(np.round(values), 0, 255).astype(np.uint8).transpose(1, 2, 0)
