"""Large images in tiles: memory bounded by a tile, time linear in pixels.

The entropy-coded part of a file is coded tile by tile. A tile is a square of T×T pixels of the
padded image (T is in the file's header; the tiles of the last row and column are smaller), and it
is coded exactly as a whole image of that size: every level's indices, with the priors and the
contexts they are conditioned on seeing only the tile. Tiles follow each other in raster order
within each level's stream (and within the pixel stream of a lossless file), so an image no larger
than one tile is coded as it always was, and no more than one tile is ever held in memory at
once, apart from the code indices (at most one byte each) and the output pixels.

The float parts see across tiles. The encoder's analysis and a lossy file's synthesis run on
windows of the whole image with a margin of ``HALO`` pixels on every side, wider than their
receptive fields (tests/test_tiling.py measures them), so a tiled image decodes without seams,
like the whole image would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import residual
from .entropy import StreamDecoder
from .errors import ContainerError
from .model import STRIDE, DQCodec
from .pixel_model import BLOCK

HALO = 128  # pixels of margin around a window; a multiple of STRIDE
DEFAULT_TILE = 1024  # pixels; what the encoder writes for lossy files
LOSSLESS_TILE = 512  # and for lossless ones, whose exact synthesis and pixel likelihood take more memory
MAX_TILE = 1024  # the largest tile side a decoder accepts: a lossless tile of 1024² takes about 2 GB
MIN_TILE = 64


@dataclass(frozen=True)
class Box:
    """A rectangle of the padded image, in pixels; every edge a multiple of STRIDE."""

    top: int
    left: int
    height: int
    width: int

    def positions(self, stride: int) -> tuple[slice, slice]:
        """The box's rows and columns in a grid of that stride."""
        return slice(self.top // stride, (self.top + self.height) // stride), slice(self.left // stride, (self.left + self.width) // stride)

    def pixels(self) -> tuple[slice, slice]:
        return self.positions(1)


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE


def tiles(height: int, width: int, tile: int) -> list[Box]:
    """The tiles of a padded image of height x width pixels, in raster order."""
    return [Box(top, left, min(tile, height - top), min(tile, width - left)) for top in range(0, height, tile) for left in range(0, width, tile)]


def window(box: Box, height: int, width: int) -> tuple[Box, Box]:
    """The box with HALO pixels around it (within the image), and the box's place inside that window."""
    top, left = max(0, box.top - HALO), max(0, box.left - HALO)
    bottom, right = min(height, box.top + box.height + HALO), min(width, box.left + box.width + HALO)
    return Box(top, left, bottom - top, right - left), Box(box.top - top, box.left - left, box.height, box.width)


def level_strides(net: DQCodec) -> list[int]:
    return [STRIDE >> i for i in range(net.num_levels)]


def check_tile(tile: int, height: int, width: int) -> None:
    """A tile size a decoder accepts: 0 (one tile, the whole padded image) or MIN_TILE to MAX_TILE
    pixels in steps of STRIDE; either way no tile is larger than MAX_TILE on a side."""
    if tile == 0:
        if max(height, width) > MAX_TILE:
            raise ContainerError(f"an untiled file of {width}x{height} pixels is larger than a tile may be ({MAX_TILE}x{MAX_TILE}); dqcodec 0.2 wrote such files")
        return
    if tile % STRIDE or not MIN_TILE <= tile <= MAX_TILE:
        raise ContainerError(f"tile size {tile} is not a multiple of {STRIDE} from {MIN_TILE} to {MAX_TILE}")


def _tile_side(tile: int, height: int, width: int) -> int:
    return tile or max(height, width)


# ---- encoding ----------------------------------------------------------------------------


@torch.no_grad()
def encode(net: DQCodec, x: torch.Tensor, quality: int, tile: int, rate_weight: float | None = None, refine_steps: int = 0,
           lossless_size: tuple[int, int] | None = None, progress: Callable[[int, int], None] | None = None,
           size: tuple[int, int] | None = None) -> list[bytes]:
    """The streams of a padded image x (1, 3, H, W) in [0, 1], coded tile by tile; with
    ``lossless_size`` (the image's true size), the pixels too: exactly, or within twice the tolerance of
    a near-lossless quality. A residual quality codes, after the codes, the true ``size`` (default: all
    of x) minus the image they decode to. ``progress(done, total)`` is told as the work goes (see ``Progress``)."""
    height, width = x.shape[-2:]
    step = net.residual_step(quality)
    streams = net.new_streams(lossless=lossless_size is not None, residual=bool(step))
    boxes = tiles(height, width, _tile_side(tile, height, width))
    report = Progress(progress, len(boxes), lossless_size is not None, residual=bool(step))
    maps = _index_maps(net, height, width) if step else None
    for box in boxes:
        outer, inner = window(box, height, width)
        rows, cols = outer.pixels()
        features = net.analyse(x[..., rows, cols])
        features = [f[(..., *inner.positions(s))] for f, s in zip(features, level_strides(net))]
        region = x[(..., *box.pixels())]
        decoded = net.encode_region(features, region, quality, streams, rate_weight, refine_steps)
        report.step()
        if lossless_size is not None:
            net.encode_pixels(decoded, region, _inside(box, lossless_size), streams[-1], report.step, net.tolerance(quality))
        if step:
            _put_indices(maps, box, decoded["indices"], net)
    if step:
        _encode_residual(net, x, maps, quality, boxes, size or (height, width), streams[-1], report.step)
    return [s.to_bytes() for s in streams]


def _encode_residual(net: DQCodec, x: torch.Tensor, maps, quality: int, boxes: list[Box], size: tuple[int, int], stream, on_tile) -> None:
    """Code every tile's true pixels minus the base image, which is decoded here as a decoder will."""
    base = np.zeros((size[0], size[1], 3), dtype=np.uint8)
    _synthesize(net, maps, net.groups_for_quality(quality), boxes, tuple(x.shape[-2:]), size, base, lambda: None)
    original = _to_hwc(x * 255, size)
    for box in boxes:
        rows, cols = _inside_slices(box, size)
        residual.encode(original[rows, cols], base[rows, cols], net.residual_step(quality), stream)
        on_tile()


class Progress:
    """Tells ``report(done, total)`` as a file's units of work finish: every tile's codes, then its
    synthesis (lossy decoding) or each of the ``BLOCK**2`` pixel positions of its blocks (lossless), then
    (residual qualities) its residual."""

    def __init__(self, report: Callable[[int, int], None] | None, tiles: int, lossless: bool, synthesis: bool = False, residual: bool = False):
        self.report, self.done = report, 0
        self.total = tiles * (1 + (BLOCK**2 if lossless else int(synthesis)) + int(residual))

    def step(self) -> None:
        self.done += 1
        if self.report is not None:
            self.report(self.done, self.total)


def _inside(box: Box, size: tuple[int, int]) -> tuple[int, int]:
    """How much of a tile lies inside the true (unpadded) image."""
    return max(0, min(box.height, size[0] - box.top)), max(0, min(box.width, size[1] - box.left))


def _inside_slices(box: Box, size: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of an (H, W, ...) image of the true size that lie in a tile."""
    inside = _inside(box, size)
    return slice(box.top, box.top + inside[0]), slice(box.left, box.left + inside[1])


# ---- decoding ----------------------------------------------------------------------------


@torch.no_grad()
def decode(net: DQCodec, strings: list[bytes], size: tuple[int, int], quality: int, tile: int, lossless: bool, tables: list | None = None,
           progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The decoded image (H, W, 3) uint8 of a file's streams: every pixel of a lossless or near-lossless
    file (if ``lossless``), else the lossy image from the codes. ``tables`` collects every (tables, symbols);
    ``progress(done, total)`` is told as the work goes (see ``Progress``)."""
    height, width = padded_size(*size)
    boxes = tiles(height, width, _tile_side(tile, height, width))
    step = 0 if lossless else net.residual_step(quality)
    report = Progress(progress, len(boxes), lossless, synthesis=True, residual=bool(step))
    level_streams = [StreamDecoder(s) for s in strings[: net.num_levels]]
    pixel_stream = StreamDecoder(strings[net.num_levels]) if lossless else None
    maps = None if lossless else _index_maps(net, height, width)
    image = np.zeros((size[0], size[1], 3), dtype=np.uint8)
    for box, decoded in _regions(net, level_streams, height, width, quality, tile, tables):
        report.step()
        if lossless:
            inside = _inside(box, size)
            pixels = net.decode_pixels(decoded, inside, pixel_stream, tables, report.step, net.tolerance(quality))
            image[_inside_slices(box, size)] = _to_hwc(pixels, inside)
        else:
            _put_indices(maps, box, decoded["indices"], net)
    for stream in level_streams + ([pixel_stream] if pixel_stream else []):
        stream.finish()
    if not lossless:
        _synthesize(net, maps, net.groups_for_quality(quality), boxes, (height, width), size, image, report.step)
    if step:
        _decode_residual(StreamDecoder(strings[net.num_levels]), step, boxes, size, image, report.step, tables)
    return image


def _decode_residual(stream: StreamDecoder, step: int, boxes: list[Box], size: tuple[int, int], image: np.ndarray, on_tile, tables: list | None) -> None:
    """Add every tile's decoded difference to the base image in ``image``."""
    for box in boxes:
        rows, cols = _inside_slices(box, size)
        base = image[rows, cols]
        image[rows, cols] = residual.add(base, residual.decode(*base.shape[:2], step, stream, tables))
        on_tile()
    stream.finish()


def _put_indices(maps: list[torch.Tensor], box: Box, indices: list[torch.Tensor], net: DQCodec) -> None:
    """A tile's indices into the whole image's index maps."""
    for index_map, tile_indices, stride in zip(maps, indices, level_strides(net)):
        index_map[(..., *box.positions(stride))] = tile_indices.to(index_map.dtype)


def decode_indices(net: DQCodec, strings: list[bytes], size: tuple[int, int], quality: int, tile: int, tables: list | None = None) -> None:
    """Decode every tile's indices, appending their tables to ``tables`` (for ``inspect``)."""
    streams = [StreamDecoder(s) for s in strings[: net.num_levels]]
    for _ in _regions(net, streams, *padded_size(*size), quality, tile, tables):
        pass
    for stream in streams:
        stream.finish()


def pixel_bits(net: DQCodec, strings: list[bytes], x: torch.Tensor, size: tuple[int, int], quality: int, tile: int, tables: list) -> float:
    """The model's -log2 p of a lossless file's pixels given its codes, tile by tile (continuous, no
    table rounding); the code tables are appended to ``tables``."""
    streams = [StreamDecoder(s) for s in strings[: net.num_levels]]
    regions = _regions(net, streams, *x.shape[-2:], quality, tile, tables)
    return sum(net.pixel_bits(decoded, x[(..., *box.pixels())], _inside(box, size)) for box, decoded in regions)


def _regions(net: DQCodec, streams: list[StreamDecoder], height: int, width: int, quality: int, tile: int, tables: list | None):
    """(tile, its decoded indices) for every tile of a padded image, in the streams' order."""
    for box in tiles(height, width, _tile_side(tile, height, width)):
        yield box, net.decode_region(streams, (box.height // STRIDE, box.width // STRIDE), quality, tables)


def _index_maps(net: DQCodec, height: int, width: int) -> list[torch.Tensor]:
    """Every level's indices of the whole image, at one byte each where the codebook allows."""
    maps = []
    for level, stride in zip(net.levels, level_strides(net)):
        dtype = torch.uint8 if level.quantizer.codebook_size <= 256 else torch.int16
        maps.append(torch.zeros(1, level.num_groups, height // stride, width // stride, dtype=dtype))
    return maps


def _synthesize(net: DQCodec, maps, groups, boxes: list[Box], padded: tuple[int, int], size: tuple[int, int], image: np.ndarray, on_window) -> None:
    """The lossy image, window by window from the whole image's indices, into ``image``; ``on_window()``
    after each."""
    for box in boxes:
        outer, inner = window(box, *padded)
        indices = [m[(..., *outer.positions(s))] for m, s in zip(maps, level_strides(net))]
        x_hat = net.reconstruct(indices, groups)[(..., *inner.pixels())]
        inside = _inside(box, size)
        image[box.top : box.top + inside[0], box.left : box.left + inside[1]] = _to_hwc(x_hat * 255, inside)
        on_window()


def _to_hwc(x: torch.Tensor, inside: tuple[int, int]) -> np.ndarray:
    """(1, 3, h, w) values in 0..255 -> the top-left ``inside`` as (h, w, 3) uint8."""
    return x[0, :, : inside[0], : inside[1]].float().round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
