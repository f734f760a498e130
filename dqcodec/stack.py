"""The layers an operating point codes, composed, over the tiles of an image.

Every point codes the level chain's codes (``levels.LevelChain``), one stream per level. After them
comes at most one enhancement layer, with one stream of its own:

- the pixel layer (``pixel_codec.PixelCodec``; lossless and near-lossless points) codes every pixel
  of a tile given the exact synthesis of that tile's codes;
- the residual layer (``residual.ResidualCodec``; residual qualities) codes a tile's pixels minus its
  base image, the codes' image synthesized across tiles.

Encoder and decoder walk the tiles alike (``tiling``). What the walk gathers, probability tables
and progress, goes to one ``Recorder`` the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import tiling
from .entropy import StreamDecoder, StreamEncoder
from .levels import DecodedCodes
from .model import DQCodec
from .pixel_codec import PixelCodec
from .pixel_model import BLOCK
from .point import OperatingPoint
from .recorder import Recorder
from .residual import ResidualCodec


class PixelLayer:
    """The pixel layer, coding a tile's pixels from the exact synthesis of its codes."""

    needs_base = False  # it codes on top of the codes themselves
    units_per_tile = BLOCK**2  # the pixel positions of its blocks

    def __init__(self, net: DQCodec, tolerance: int):
        self.net, self.codec = net, PixelCodec(net.pixels, tolerance)

    def compress(self, decoded: DecodedCodes, region: torch.Tensor, inside: tuple[int, int], stream: StreamEncoder,
                 recorder: Recorder) -> None:
        self.codec.compress(*self.net.exact_synthesis(decoded), region, inside, stream, recorder)

    def decompress(self, decoded: DecodedCodes, inside: tuple[int, int], stream: StreamDecoder, recorder: Recorder) -> np.ndarray:
        return tiling.to_hwc(self.codec.decompress(*self.net.exact_synthesis(decoded), inside, stream, recorder), inside)

    def bits(self, decoded: DecodedCodes, region: torch.Tensor, inside: tuple[int, int]) -> float:
        return self.codec.bits(*self.net.float_synthesis(decoded), region, inside)


def enhancement_layer(net: DQCodec, point: OperatingPoint) -> PixelLayer | ResidualCodec | None:
    """The layer a point codes after its codes, if any."""
    if point.codes_pixels:
        return PixelLayer(net, point.tolerance)
    return ResidualCodec(point.residual_step) if point.residual_step else None


class LayerStack:
    """The level chain and the enhancement layer of one operating point."""

    def __init__(self, net: DQCodec, point: OperatingPoint):
        self.net, self.point = net, point
        self.chain = net.chain
        self.enhancement = enhancement_layer(net, point)

    @property
    def stream_names(self) -> list[str]:
        return self.point.stream_names(self.chain.stream_names)

    # ---- encoding ------------------------------------------------------------------------

    @torch.no_grad()
    def compress(self, x: torch.Tensor, size: tuple[int, int], tile: int, recorder: Recorder | None = None,
                 rate_weight: float | None = None, refine_steps: int = 0) -> list[bytes]:
        """Every stream of a padded image x (1, 3, H, W) in [0, 1] whose true size is ``size``."""
        recorder = recorder or Recorder()
        layer, padded = self.enhancement, tuple(x.shape[-2:])
        boxes = tiling.tiles(*padded, tile)
        streams = [StreamEncoder() for _ in self.stream_names]
        recorder.expect(len(boxes) * (1 + (layer.units_per_tile if layer else 0)))
        maps = tiling.IndexMaps(self.net, *padded) if layer and layer.needs_base else None
        for box, features in tiling.analysed_tiles(self.net, x, boxes):
            region = x[(..., *box.pixels())]
            decoded = self.chain.compress(features, region, self.point, streams[: self.net.num_levels], rate_weight, refine_steps)
            recorder.advance()
            if maps is not None:
                maps.put(box, decoded.indices)
            elif layer is not None:
                layer.compress(decoded, region, box.inside(size), streams[-1], recorder)
        if maps is not None:
            self._compress_residual(x, size, maps, boxes, streams[-1], recorder)
        return [s.to_bytes() for s in streams]

    def _compress_residual(self, x: torch.Tensor, size: tuple[int, int], maps: tiling.IndexMaps, boxes: list[tiling.Box],
                           stream: StreamEncoder, recorder: Recorder) -> None:
        """Code every tile's true pixels minus the base image, which is synthesized here as a decoder will."""
        base = np.zeros((*size, 3), dtype=np.uint8)
        self._synthesize(maps, boxes, tuple(x.shape[-2:]), base, lambda: None)
        original = tiling.to_hwc(x * 255, size)
        for box in boxes:
            rows, cols = box.inside_slices(size)
            self.enhancement.compress(original[rows, cols], base[rows, cols], stream)
            recorder.advance()

    # ---- decoding ------------------------------------------------------------------------

    @torch.no_grad()
    def decompress(self, strings: list[bytes], size: tuple[int, int], tile: int, recorder: Recorder | None = None,
                   codes_only: bool = False) -> np.ndarray:
        """The (H, W, 3) uint8 image of a file's streams; ``codes_only``: the codes' image alone."""
        recorder = recorder or Recorder()
        layer = None if codes_only else self.enhancement
        padded = tiling.padded_size(*size)
        boxes = tiling.tiles(*padded, tile)
        streams = [StreamDecoder(s) for s in strings[: len(self.stream_names)]]
        from_codes = layer is not None and not layer.needs_base
        synthesis = 0 if from_codes else 1
        recorder.expect(len(boxes) * (1 + synthesis + (layer.units_per_tile if layer else 0)))
        image = np.zeros((*size, 3), dtype=np.uint8)
        maps = None if from_codes else tiling.IndexMaps(self.net, *padded)
        for box, decoded in self._decoded_tiles(streams, boxes, recorder):
            if maps is not None:
                maps.put(box, decoded.indices)
            else:
                image[box.inside_slices(size)] = layer.decompress(decoded, box.inside(size), streams[-1], recorder)
        _finish(streams[: self.net.num_levels] + (streams[-1:] if from_codes else []))
        if maps is not None:
            self._synthesize(maps, boxes, padded, image, recorder.advance)
        if layer is not None and layer.needs_base:
            self._decompress_residual(image, boxes, streams[-1], recorder)
        return image

    def _synthesize(self, maps: tiling.IndexMaps, boxes: list[tiling.Box], padded: tuple[int, int], image: np.ndarray,
                    on_window: Callable[[], None]) -> None:
        """The codes' image, window by window from the whole image's indices (windows see across tiles, so
        the image has no seams), into ``image`` of the true size; ``on_window()`` after each."""
        size = image.shape[:2]
        for box in boxes:
            outer, inner = tiling.window(box, *padded)
            x_hat = self.net.reconstruct(maps.around(outer), self.point.groups)[(..., *inner.pixels())]
            image[box.inside_slices(size)] = tiling.to_hwc(x_hat * 255, box.inside(size))
            on_window()

    def _decompress_residual(self, image: np.ndarray, boxes: list[tiling.Box], stream: StreamDecoder, recorder: Recorder) -> None:
        """Add every tile's decoded difference to the base image in ``image``."""
        for box in boxes:
            rows, cols = box.inside_slices(image.shape[:2])
            image[rows, cols] = self.enhancement.decompress(image[rows, cols], stream, recorder)
            recorder.advance()
        stream.finish()

    def decode_codes(self, strings: list[bytes], size: tuple[int, int], tile: int, recorder: Recorder | None = None) -> list[DecodedCodes]:
        """Every tile's decoded codes, without the image (for a file's tables, or one region's codes)."""
        streams = [StreamDecoder(s) for s in strings[: self.net.num_levels]]
        boxes = tiling.tiles(*tiling.padded_size(*size), tile)
        decoded = [codes for _, codes in self._decoded_tiles(streams, boxes, recorder or Recorder())]
        _finish(streams)
        return decoded

    def estimate_pixel_bits(self, strings: list[bytes], x: torch.Tensor, size: tuple[int, int], tile: int, recorder: Recorder) -> float:
        """The model's -log2 p of a file's pixels given its codes, tile by tile, under the continuous
        mixture (no table rounding); the codes' tables go to the recorder."""
        streams = [StreamDecoder(s) for s in strings[: self.net.num_levels]]
        boxes = tiling.tiles(*x.shape[-2:], tile)
        return sum(self.enhancement.bits(decoded, x[(..., *box.pixels())], box.inside(size))
                   for box, decoded in self._decoded_tiles(streams, boxes, recorder))

    def _decoded_tiles(self, streams: list[StreamDecoder], boxes: list[tiling.Box], recorder: Recorder):
        for box in boxes:
            decoded = self.chain.decompress(streams[: self.net.num_levels], box.grid, self.point, recorder)
            recorder.advance()
            yield box, decoded


def _finish(streams: list[StreamDecoder]) -> None:
    for stream in streams:
        stream.finish()
