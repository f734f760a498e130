"""The layers an operating point codes, composed, over the tiles of an image.

Every point codes the level chain's codes (``levels.LevelChain``), one stream per level. After them
comes at most one enhancement layer, with one stream of its own:

- the pixel layer (``PixelLayer`` over ``pixel_codec.PixelCodec``; lossless and near-lossless points)
  codes every pixel of a tile given the exact synthesis of that tile's codes;
- the residual layer (``residual.ResidualCodec``; residual qualities) codes a tile's pixels minus its
  base image, the codes' image synthesized window by window across tiles.

Encoder and decoder walk the tiles alike (``tiling``). What the walk gathers, probability tables
and progress, goes to one ``Recorder`` the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import tiling
from .codes import DecodedCodes
from .entropy import StreamDecoder, StreamEncoder
from .errors import CorruptStreamError
from .point import OperatingPoint
from .recorder import Recorder
from .residual import ResidualCodec

if TYPE_CHECKING:
    import torch

    from .model import DQCodec


class PixelLayer:
    """The pixel layer, coding a tile's pixels from the exact synthesis of its codes."""

    def __init__(self, net: DQCodec, tolerance: int):
        from .pixel_codec import PixelCodec
        from .pixel_model import BLOCK

        if net.pixels is None:
            raise ValueError("a pixel layer needs a model with a pixel likelihood")
        self.net, self.codec = net, PixelCodec(net.pixels, tolerance)
        self.units_per_tile = BLOCK**2  # the pixel positions of its blocks

    def compress(
        self,
        decoded: DecodedCodes,
        region: torch.Tensor,
        inside: tuple[int, int],
        stream: StreamEncoder,
        recorder: Recorder,
    ) -> None:
        features, x_hat = self.net.exact_synthesis(decoded)
        self.codec.compress(features, x_hat, region, inside, stream, recorder)

    def decompress(
        self, decoded: DecodedCodes, inside: tuple[int, int], stream: StreamDecoder, recorder: Recorder
    ) -> np.ndarray:
        features, x_hat = self.net.exact_synthesis(decoded)
        return tiling.to_hwc(self.codec.decompress(features, x_hat, inside, stream, recorder), inside)

    def bits(self, decoded: DecodedCodes, region: torch.Tensor, inside: tuple[int, int]) -> float:
        features, x_hat = self.net.float_synthesis(decoded)
        return self.codec.bits(features, x_hat, region, inside)


class LayerStack:
    """The level chain of one operating point, and its pixel or residual layer if it has one.

    ``net`` is a torch ``DQCodec`` or a ``runtime.model.RuntimeModel``: both offer the chain, ``analyse``,
    ``reconstruct``, their own pixel layer (``pixel_layer``), ``inference()`` and the config this class reads."""

    def __init__(self, net: DQCodec | Any, point: OperatingPoint):
        self.net, self.point = net, point
        self.chain = net.chain
        self.pixels = net.pixel_layer(point.tolerance) if point.codes_pixels else None
        self.residual = (
            ResidualCodec(point.residual_step, point.deblocking, point.residual_rate_weight)
            if point.residual_step
            else None
        )

    @property
    def stream_names(self) -> list[str]:
        return self.point.stream_names(self.chain.stream_names)

    # ---- encoding ------------------------------------------------------------------------

    def compress(
        self,
        x: torch.Tensor,
        size: tuple[int, int],
        tile: int,
        recorder: Recorder | None = None,
        rate_weight: float | None = None,
        refine_steps: int = 0,
    ) -> list[bytes]:
        """Every stream of a padded image x (1, 3, H, W) in [0, 1] whose true size is ``size`` (a torch tensor for
        a torch model, a numpy array for the runtime's)."""
        with self.net.inference():
            return self._compress(x, size, tile, recorder or Recorder(), rate_weight, refine_steps)

    def _compress(
        self,
        x: torch.Tensor,
        size: tuple[int, int],
        tile: int,
        recorder: Recorder,
        rate_weight: float | None,
        refine_steps: int,
    ) -> list[bytes]:
        cuts = tiling.cut(size, tile)
        streams = [StreamEncoder() for _ in self.stream_names]
        levels = streams[: self.net.num_levels]
        recorder.expect(len(cuts) * (1 + self._enhancement_units()))
        maps = tiling.IndexMaps(self.net.config, x.shape[-2], x.shape[-1]) if self.residual else None
        for cut, features in tiling.analysed_tiles(self.net, x, cuts):
            region = x[(...,) + cut.region]
            decoded = self.chain.compress(features, region, self.point, levels, rate_weight, refine_steps)
            recorder.advance()
            if self.pixels is not None:
                self.pixels.compress(decoded, region, cut.inside, streams[-1], recorder)
            if maps is not None:
                maps.put(cut.box, decoded.indices)
        if maps is not None:
            self._compress_residual(x, size, maps, cuts, streams[-1], recorder)
        return [s.to_bytes() for s in streams]

    def _enhancement_units(self) -> int:
        if self.pixels:
            return self.pixels.units_per_tile
        return ResidualCodec.units_per_tile if self.residual else 0

    def _compress_residual(
        self,
        x: torch.Tensor,
        size: tuple[int, int],
        maps: tiling.IndexMaps,
        cuts: list[tiling.Tile],
        stream: StreamEncoder,
        recorder: Recorder,
    ) -> None:
        """Code every tile's true pixels minus the base image, which is synthesized here as a decoder will."""
        assert self.residual is not None
        base = np.zeros((size[0], size[1], 3), dtype=np.uint8)
        self._synthesize(maps, cuts, base, lambda: None)
        original = tiling.to_hwc(x * 255, size)
        for cut in cuts:
            self.residual.compress(original[cut.rows, cut.cols], base[cut.rows, cut.cols], stream)
            recorder.advance()

    # ---- decoding ------------------------------------------------------------------------

    def decompress(
        self,
        strings: list[bytes],
        size: tuple[int, int],
        tile: int,
        recorder: Recorder | None = None,
        codes_only: bool = False,
    ) -> np.ndarray:
        """The (H, W, 3) uint8 image of a file's streams; ``codes_only``: the codes' image alone."""
        if len(strings) != len(self.stream_names):
            names = ", ".join(self.stream_names)
            raise CorruptStreamError(f"expected {len(self.stream_names)} streams ({names}), found {len(strings)}")
        image = np.zeros((size[0], size[1], 3), dtype=np.uint8)  # first: a size memory cannot hold fails at once
        if self.pixels is not None and not codes_only:
            return self._decompress_pixels(strings, size, tile, recorder or Recorder(), image)
        recorder = recorder or Recorder()
        residual = None if codes_only else self.residual
        cuts = tiling.cut(size, tile)
        streams = [StreamDecoder(s) for s in strings[: len(self.stream_names)]]
        recorder.expect(len(cuts) * (2 + (ResidualCodec.units_per_tile if residual else 0)))
        maps = tiling.IndexMaps(self.net.config, *tiling.padded_size(*size))
        for cut, decoded in self._decoded_tiles(streams, cuts, recorder):
            maps.put(cut.box, decoded.indices)
        _finish(streams[: self.net.num_levels])
        self._synthesize(maps, cuts, image, recorder.advance)
        if residual is not None:
            self._decompress_residual(residual, image, cuts, streams[-1], recorder)
        return image

    def _decompress_pixels(
        self, strings: list[bytes], size: tuple[int, int], tile: int, recorder: Recorder, image: np.ndarray
    ) -> np.ndarray:
        """Every pixel into ``image``, tile by tile from each tile's codes: no tile needs another's."""
        assert self.pixels is not None
        cuts = tiling.cut(size, tile)
        streams = [StreamDecoder(s) for s in strings]
        recorder.expect(len(cuts) * (1 + self.pixels.units_per_tile))
        for cut, decoded in self._decoded_tiles(streams, cuts, recorder):
            image[cut.rows, cut.cols] = self.pixels.decompress(decoded, cut.inside, streams[-1], recorder)
        _finish(streams)
        return image

    def _synthesize(
        self, maps: tiling.IndexMaps, cuts: list[tiling.Tile], image: np.ndarray, on_window: Callable[[], None]
    ) -> None:
        """The codes' image, window by window from the whole image's indices (windows see across tiles, so
        the image has no seams), into ``image`` of the true size; ``on_window()`` after each."""
        for cut in cuts:
            x_hat = self.net.reconstruct(maps.around(cut.window), self.point.groups)[(...,) + cut.in_window.pixels()]
            image[cut.rows, cut.cols] = tiling.to_hwc(x_hat * 255, cut.inside)
            on_window()

    @staticmethod
    def _decompress_residual(
        residual: ResidualCodec, image: np.ndarray, cuts: list[tiling.Tile], stream: StreamDecoder, recorder: Recorder
    ) -> None:
        """Add every tile's decoded difference to the base image in ``image``."""
        for cut in cuts:
            image[cut.rows, cut.cols] = residual.decompress(image[cut.rows, cut.cols], stream, recorder)
            recorder.advance()
        stream.finish()

    def decode_codes(
        self, strings: list[bytes], size: tuple[int, int], tile: int, recorder: Recorder | None = None
    ) -> list[DecodedCodes]:
        """Every tile's decoded codes, without the image (for a file's tables, or one region's codes)."""
        streams = [StreamDecoder(s) for s in strings[: self.net.num_levels]]
        cuts = tiling.cut(size, tile)
        decoded = [codes for _, codes in self._decoded_tiles(streams, cuts, recorder or Recorder())]
        _finish(streams)
        return decoded

    def estimate_pixel_bits(
        self, strings: list[bytes], x: torch.Tensor, size: tuple[int, int], tile: int, recorder: Recorder
    ) -> float:
        """The model's -log2 p of a file's pixels given its codes, tile by tile, under the continuous
        mixture (no table rounding); the codes' tables go to the recorder."""
        if self.pixels is None:
            raise ValueError("the point codes no pixels")
        streams = [StreamDecoder(s) for s in strings[: self.net.num_levels]]
        total = 0.0
        for cut, decoded in self._decoded_tiles(streams, tiling.cut(size, tile), recorder):
            total += self.pixels.bits(decoded, x[(...,) + cut.region], cut.inside)
        return total

    def _decoded_tiles(
        self, streams: list[StreamDecoder], cuts: list[tiling.Tile], recorder: Recorder
    ) -> Iterator[tuple[tiling.Tile, DecodedCodes]]:
        for cut in cuts:
            decoded = self.chain.decompress(streams[: self.net.num_levels], cut.grid, self.point, recorder)
            recorder.advance()
            yield cut, decoded


def _finish(streams: list[StreamDecoder]) -> None:
    for stream in streams:
        stream.finish()
