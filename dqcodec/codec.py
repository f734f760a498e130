"""The Python API: images in, .dq bytes out, and back.

    data = dqcodec.compress("photo.png", quality=4)
    image = dqcodec.decompress(data)
    exact = dqcodec.compress("photo.png", lossless=True)  # decodes to the same pixels
    preview = dqcodec.decompress(exact, preview=True)  # its lossy image, from the codes alone

Images are PIL images, paths or uint8 arrays (H, W) or (H, W, 3) (``images``). A request resolves
once into an operating point (``point``), which the file's header names and ``stack.LayerStack``
codes.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, cast

import numpy as np
from PIL import Image

from . import container, errors, extras, families, zoo
from .config import DQConfig
from .container import check_pixels
from .defaults import DEFAULT_MAX_PIXELS, EFFORT_STEPS, default_model  # the first two re-exported
from .entropy import ideal_bits
from .errors import UnsupportedImageError  # re-exported
from .images import (
    IMAGE_SUFFIXES,
    ImageLike,
    image_files,
    load_image,
    pad,
    pad_array,
    rgb_and_mode,
    to_array,
    to_image,
    to_tensor,
)
from .point import Kind, Ladder, OperatingPoint
from .recorder import Progress, Recorder
from .stack import LayerStack

if TYPE_CHECKING:
    from .model import DQCodec
    from .runtime.model import RuntimeModel

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EFFORT_STEPS",
    "IMAGE_SUFFIXES",
    "FileInfo",
    "ImageLike",
    "UnsupportedImageError",
    "channels",
    "check_pixels",
    "compress",
    "decode_file",
    "decompress",
    "image_files",
    "inspect",
    "ladder",
    "load_image",
    "open_file",
    "pad",
    "to_image",
    "to_tensor",
]


def compress(
    image: ImageLike,
    quality: int | None = None,
    model: str | None = None,
    lossless: bool = False,
    effort: int = 0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
) -> bytes:
    """Encode an image into the bytes of a .dq file; quality defaults to the model's, and the model
    to ``defaults.default_model(lossless)`` (dq-3).

    The qualities of a model (``dqcodec models``, ``point.Ladder``) are its lossy ones, then its residual
    ones (a lossy quality's codes and then what their image misses as quantized DCTs), then its
    near-lossless ones (the codes of its lossless quality and then every sample to within twice the
    quality's tolerance). A lossless file carries the codes of a lossy quality (the model's lossless
    quality by default) and then every pixel, coded with its likelihood given the codes.
    A lossy or residual file at ``effort`` 1 or 2 searches longer for its codes: a smaller file for the same
    quality of image, several times the encoding time. Images over ``max_pixels`` pixels are refused (None: no
    limit). ``progress(done, total)``, if given, is called as units of the work finish."""
    _check_int("effort", effort, 0, len(EFFORT_STEPS) - 1)
    _check_type("lossless", lossless, bool)
    model = default_model(lossless) if model is None else model
    _check_type("model", model, str)
    _check_progress(progress)
    if lossless and effort:
        raise errors.ArgumentError(
            "effort applies to lossy files; a lossless file codes every pixel whatever its codes"
        )
    rgb, mode = rgb_and_mode(load_image(image, max_pixels))
    checkpoint, digest = zoo.read_checkpoint(model, family=families.DQ)
    ladder = Ladder.from_config(DQConfig.from_dict(checkpoint["config"]))
    point = ladder.resolve(quality, lossless)
    if effort and point.kind not in (Kind.LOSSY, Kind.RESIDUAL):
        raise errors.ArgumentError(
            f"effort applies to lossy and residual qualities (1 to {ladder.lossy_count + len(ladder.residual_steps)}); "
            f"quality {point.quality} is {point.describe()}"
        )
    size = (rgb.height, rgb.width)
    strings = _encoder(model, point, effort).compress(rgb, size, Recorder(progress), refine_steps=EFFORT_STEPS[effort])
    header = container.Header(
        model, digest[:8], point.quality, mode, *size, point.tile, int(point.kind), point.codes_quality
    )
    return container.pack(header, strings)


class _Encoder:
    """A model's layers for one point, fed the image in the layout its backend takes."""

    def __init__(self, net: DQCodec | RuntimeModel, point: OperatingPoint, as_input):
        self.stack, self.as_input = LayerStack(net, point), as_input

    def compress(self, rgb: Image.Image, size: tuple[int, int], recorder: Recorder, refine_steps: int) -> list[bytes]:
        point = self.stack.point
        return self.stack.compress(self.as_input(rgb), size, point.tile, recorder, refine_steps=refine_steps)


def ladder(model: str | None = None, lossless: bool = False) -> Ladder:
    """The qualities of an installed dq model (``point.Ladder``; the default one for lossy or lossless files),
    read from its model file without torch."""
    name = default_model(lossless) if model is None else model
    checkpoint, _ = zoo.read_checkpoint(name, family=families.DQ)
    return Ladder.from_config(DQConfig.from_dict(checkpoint["config"]))


BACKENDS = ("auto", "torch", "runtime")


def uses_runtime(point: OperatingPoint, effort: int = 0) -> bool:
    """Whether the torch-free runtime codes a point: it codes every point at effort 0 (torch is needed for encoder
    effort's gradient steps). Which one does when both can is the
    DQCODEC_BACKEND environment variable's choice: "runtime", "torch", or "auto" (the default): torch if this
    process has imported it already (it is faster in process; importing it takes seconds), or for a lossless or
    near-lossless point if it is installed; else the runtime.
    Both give the same tables, the same level and pixel streams; a lossy image may differ by one level
    (docs/bitstream.md)."""
    if effort:
        return False
    backend = os.environ.get("DQCODEC_BACKEND", "auto")
    if backend not in BACKENDS:
        raise errors.ArgumentError(f"DQCODEC_BACKEND is one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend == "runtime"
    if sys.modules.get("torch") is not None:
        return False
    # the runtime's pixel layer is several times slower than torch's, and importing torch takes less than a
    # lossless file's coding: where torch is installed, it codes the pixels
    return not (point.codes_pixels and importlib.util.find_spec("torch") is not None)


def _encoder(model: str, point: OperatingPoint, effort: int) -> _Encoder:
    """The model's layers for a point, in the backend ``uses_runtime`` chooses."""
    if uses_runtime(point, effort):
        return _Encoder(load_runtime_model(model)[0], point, lambda rgb: pad_array(to_array(rgb)))
    return _Encoder(load_dq_model(model)[0], point, lambda rgb: pad(to_tensor(rgb)))


def load_dq_model(name: str, weights_hash: bytes | None = None) -> tuple[DQCodec, bytes]:
    """An installed dq model and the SHA-256 of its weights; ModelError for a baseline (``zoo.load`` finds its
    family from the model file's metadata, before its weights are decoded)."""
    extras.require("torch", "encoder effort, DQCODEC_BACKEND=torch or the model's own estimates")
    net, digest = zoo.load(name, weights_hash, family=families.DQ)
    return cast("DQCodec", net), digest


def load_runtime_model(name: str, weights_hash: bytes | None = None) -> tuple[RuntimeModel, bytes]:
    """``load_dq_model`` for the torch-free runtime (``runtime.model``), which codes every file at effort 0."""
    checkpoint, digest = zoo.read_checkpoint(name, weights_hash, family=families.DQ)
    return _runtime_model(digest, checkpoint), digest


_RUNTIME_MODELS: dict[bytes, RuntimeModel] = {}  # by the SHA-256 of their weights


def _runtime_model(digest: bytes, checkpoint: dict) -> RuntimeModel:
    from .runtime.model import RuntimeModel

    if digest not in _RUNTIME_MODELS:
        while len(_RUNTIME_MODELS) >= 4:
            del _RUNTIME_MODELS[next(iter(_RUNTIME_MODELS))]
        _RUNTIME_MODELS[digest] = RuntimeModel(DQConfig.from_dict(checkpoint["config"]), checkpoint["state_dict"])
    return _RUNTIME_MODELS[digest]


def _check_type(name: str, value, kind: type) -> None:
    if not isinstance(value, kind):
        raise errors.ArgumentError(f"{name} must be a {kind.__name__}, got {type(value).__name__} {value!r}")


def _check_progress(progress) -> None:
    if progress is not None and not callable(progress):
        raise errors.ArgumentError(f"progress must be a function of (done, total), got {type(progress).__name__}")


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise errors.ArgumentError(
            f"{name} must be a whole number from {low} to {high}, got {type(value).__name__} {value!r}"
        )
    if not low <= value <= high:
        raise errors.ArgumentError(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class OpenedFile:
    """A .dq file's header, streams, model config and operating point, each checked before anything is decoded."""

    header: container.Header
    streams: list[bytes]
    config: DQConfig
    point: OperatingPoint

    @property
    def size(self) -> tuple[int, int]:
        return self.header.height, self.header.width

    @cached_property
    def stack(self) -> LayerStack:
        """The layers that decode the file, in the backend ``uses_runtime`` chooses."""
        return LayerStack(self.runtime_model() if uses_runtime(self.point) else self.torch_model(), self.point)

    def torch_model(self) -> DQCodec:
        return load_dq_model(self.header.model, self.header.weights_hash)[0]

    def runtime_model(self) -> RuntimeModel:
        return load_runtime_model(self.header.model, self.header.weights_hash)[0]


def open_file(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> OpenedFile:
    """Unpack a .dq file and resolve what it codes, refusing anything inconsistent with a one-line error."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise errors.ArgumentError(f"expected the bytes of a .dq file, got {type(data).__name__}")
    header, streams = container.unpack(bytes(data), max_pixels)  # sizes checked before anything is allocated
    checkpoint, digest = zoo.read_checkpoint(header.model, header.weights_hash, family=families.DQ)
    if digest[:8] != header.weights_hash:
        raise errors.ModelError(
            f"file was written with other weights of model {header.model!r} "
            f"({header.weights_hash.hex()}, installed {digest[:8].hex()})"
        )
    config = DQConfig.from_dict(checkpoint["config"])
    point = _file_point(header, len(streams), config)
    _check_streams(point, streams, config, header.model)
    return OpenedFile(header, streams, config, point)


def _file_point(header: container.Header, streams: int, config: DQConfig) -> OperatingPoint:
    ladder = Ladder.from_config(config)
    if header.kind is None or header.codes_quality is None:  # versions 2 and 3
        return ladder.from_legacy_header(header.quality, streams, len(config.levels))
    return ladder.from_header(header.kind, header.quality, header.codes_quality)


def _check_streams(point: OperatingPoint, streams: list[bytes], config: DQConfig, model: str) -> None:
    names = point.stream_names(config.stream_names)
    if len(streams) == len(names):
        return
    if len(streams) == len(config.levels) and point.enhancement:
        raise errors.ContainerError(
            f"header names {point.describe()} (quality {point.quality}), but the file has no {point.enhancement} stream"
        )
    raise errors.ContainerError(
        f"file has {len(streams)} streams; model {model!r} writes {len(names)} ({', '.join(names)}) at its quality"
    )


def decompress(
    data: bytes, preview: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS, progress: Progress | None = None
) -> Image.Image:
    """Decode the bytes of a .dq file into a PIL image of the original size and mode.

    ``preview`` decodes a lossless or near-lossless file's lossy image from its codes, without decoding
    its pixel stream; other files decode the same either way. A file whose header names more than
    ``max_pixels`` pixels is refused before anything is allocated (None: no limit).
    ``progress(done, total)``, if given, is called as units of the work finish."""
    _check_type("preview", preview, bool)
    _check_progress(progress)
    opened = open_file(data, max_pixels)
    return decode_file(opened, preview, progress)


def decode_file(opened: OpenedFile, preview: bool = False, progress: Progress | None = None) -> Image.Image:
    """The image of a file ``open_file`` checked (see ``decompress``)."""
    codes_only = preview and opened.point.codes_pixels
    try:
        array = opened.stack.decompress(opened.streams, opened.size, opened.header.tile, Recorder(progress), codes_only)
    except MemoryError:  # numpy's _ArrayMemoryError among them: only a header without max_pixels gets this far
        height, width = opened.size
        raise errors.ImageTooLargeError(
            f"file names a {width}x{height} image, more than this machine's memory holds (give max_pixels to refuse such headers at once)"
        ) from None
    image = Image.fromarray(array, "RGB")
    return image.convert("L") if opened.header.mode == "L" else image


@dataclass
class FileInfo:
    header: container.Header
    point: OperatingPoint
    file_bytes: int
    payload_bits: int
    ideal_payload_bits: float
    streams: dict[str, int]  # bytes of each stream, by name

    @property
    def lossless(self) -> bool:
        """Every sample decodes exactly."""
        return self.point.exact

    @property
    def near_lossless_bound(self) -> int:
        """For a near-lossless file, how far (grey levels) a sample may decode from the original; else 0."""
        return self.point.bound

    @property
    def residual_step(self) -> int:
        """For a residual quality's file, its DCTs' quantizer step; else 0."""
        return self.point.residual_step

    @property
    def coding(self) -> str:
        if self.point.kind == Kind.NEAR_LOSSLESS:
            return f"near-lossless (every sample within {self.point.bound} grey levels)"
        if self.point.kind == Kind.RESIDUAL:
            return f"lossy, codes and a residual (DCT step {self.point.residual_step})"
        return "lossless" if self.lossless else "lossy"

    @property
    def bits_per_pixel(self) -> float:
        return 8 * self.file_bytes / (self.header.height * self.header.width)

    @property
    def bits_per_dimension(self) -> float:
        """File bits per sample: per pixel and channel, one channel for a grayscale image."""
        return self.bits_per_pixel / channels(self.header.mode)


def channels(mode: str) -> int:
    """Samples per pixel of a container mode ("RGB" or "L")."""
    return 1 if mode == "L" else 3


def inspect(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> FileInfo:
    """Header fields, and the payload's real size next to -sum log2 p of what it codes
    (decoding the enhancement stream of a file that has one)."""
    opened = open_file(data, max_pixels)
    recorder = Recorder(keep_tables=True)
    if opened.point.enhancement:
        opened.stack.decompress(opened.streams, opened.size, opened.header.tile, recorder)
    else:
        opened.stack.decode_codes(opened.streams, opened.size, opened.header.tile, recorder)
    ideal = sum(ideal_bits(symbols, frequencies) for frequencies, symbols in recorder.tables or [])
    sizes = dict(zip(opened.stack.stream_names, map(len, opened.streams)))
    return FileInfo(opened.header, opened.point, len(data), 8 * sum(map(len, opened.streams)), ideal, sizes)


def stream_bits(data: bytes) -> tuple[int, int]:
    """Bits of a lossless file's code streams and of its pixel stream."""
    opened = open_file(data)
    if not opened.point.exact:
        raise errors.ArgumentError("not a lossless .dq file")
    return 8 * sum(map(len, opened.streams[:-1])), 8 * len(opened.streams[-1])


def estimate_lossless_bits(data: bytes, image: ImageLike) -> float:
    """The model's own -log2 p of a lossless file's content: its codes under their
    tables plus the pixels under the continuous mixture (no table rounding or windows)."""
    opened = open_file(data)
    if not opened.point.exact:
        raise errors.ArgumentError("not a lossless .dq file")
    rgb, _ = rgb_and_mode(load_image(image))
    recorder = Recorder(keep_tables=True)
    stack = LayerStack(opened.torch_model(), opened.point)  # the float mixture's estimate: torch's
    pixel_bits = stack.estimate_pixel_bits(
        opened.streams, pad(to_tensor(rgb)), opened.size, opened.header.tile, recorder
    )
    return pixel_bits + sum(ideal_bits(symbols, frequencies) for frequencies, symbols in recorder.tables or [])
