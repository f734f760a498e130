"""The Python API: images in, .dq bytes out, and back.

    data = dqcodec.compress("photo.png", quality=4)
    image = dqcodec.decompress(data)
    exact = dqcodec.compress("photo.png", lossless=True)  # decodes to the same pixels
    preview = dqcodec.decompress(exact, preview=True)  # its lossy image, from the codes alone

Images are PIL images, paths or uint8 arrays (H, W) or (H, W, 3). RGB and
grayscale are coded; grayscale is coded as RGB and decoded back to grayscale.
Modes that would lose information (alpha, 16-bit, CMYK, ...) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from . import container, errors, registry, tiling, zoo
from .entropy import ideal_bits
from .defaults import DEFAULT_MAX_PIXELS, EFFORT_STEPS, default_model  # the first two re-exported
from .errors import UnsupportedImageError  # re-exported
from .model import STRIDE

Progress = Callable[[int, int], None]  # progress(done, total) of a long encode or decode

ImageLike = Union[Image.Image, str, Path, np.ndarray]


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}


def image_files(folder: Path) -> list[Path]:
    """Image files below a folder, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# Pillow modes accepted, and the container mode each decodes back to.
_ACCEPTED_MODES = {"RGB": "RGB", "L": "L", "1": "L", "P": "RGB"}




def check_pixels(height: int, width: int, max_pixels: int | None) -> None:
    """Refuse a size before anything of that size is allocated, as Pillow's decompression-bomb check does."""
    if height < 1 or width < 1:
        raise UnsupportedImageError(f"an image of {width}x{height} pixels has nothing to code")
    if max_pixels is not None and height * width > max_pixels:
        raise errors.ImageTooLargeError(
            f"{width}x{height} is {height * width / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f} "
            "(raise it with max_pixels, or --max-pixels on the command line)"
        )


def load_image(image: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An image as Pillow holds it, turned upright by its EXIF orientation, after checking that it has
    one frame, at most ``max_pixels`` pixels and no samples deeper than 8 bits dqcodec would drop."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as opened:
                _check_image(opened, max_pixels)
                opened.load()
                return ImageOps.exif_transpose(opened)
        except errors.DQCodecError:
            raise
        except Exception as error:  # Pillow reports a damaged file with OSError, ValueError, TypeError, SyntaxError, ...
            raise UnsupportedImageError(f"cannot read {image}: {type(error).__name__}: {error}") from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise UnsupportedImageError(f"arrays must be uint8 of shape (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
        check_pixels(image.shape[0], image.shape[1], max_pixels)
        return Image.fromarray(image)
    if isinstance(image, Image.Image):
        _check_image(image, max_pixels)
        return ImageOps.exif_transpose(image)
    raise errors.ArgumentError(f"expected a PIL image, a path or a uint8 array, got {type(image).__name__}")


def _check_image(image: Image.Image, max_pixels: int | None) -> None:
    check_pixels(image.height, image.width, max_pixels)
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise UnsupportedImageError(f"the image has {frames} frames (an animation or a multi-page file); dqcodec codes one, so save the frame you want first")
    deep = [rawmode for rawmode in _rawmodes(image) if any(tag in rawmode for tag in (";16", ";32", "I;", "F;"))]
    if deep and image.mode in _ACCEPTED_MODES:
        raise UnsupportedImageError(
            f"the image has samples deeper than 8 bits ({deep[0]}), which Pillow would reduce to {image.mode!r}; "
            "dqcodec codes 8-bit samples only, so convert it first if that loss is acceptable"
        )


def _rawmodes(image: Image.Image) -> list[str]:
    """How the file stores its samples (the raw modes of its tiles, before loading)."""
    modes = []
    for tile in getattr(image, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str):
            modes.append(rawmode)
    return modes


def _rgb_and_mode(image: Image.Image) -> tuple[Image.Image, str]:
    mode = _ACCEPTED_MODES.get(image.mode)
    if mode is None or (image.mode == "P" and "transparency" in image.info):
        raise UnsupportedImageError(
            f"image mode {image.mode!r} is not supported: dqcodec codes 8-bit RGB and grayscale; "
            "convert it first (an alpha channel, 16-bit samples or CMYK would otherwise be lost)"
        )
    return image.convert("RGB"), mode


def to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def pad(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad (1, 3, H, W) to multiples of the model stride."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")


def to_image(x: torch.Tensor, height: int, width: int, mode: str) -> Image.Image:
    array = x[0, :, :height, :width].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(array), "RGB")
    return image.convert("L") if mode == "L" else image


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
    to ``defaults.default_model(lossless)`` (dq-2).

    A lossless file carries the codes of a quality (the model's lossless quality by
    default) and then every pixel, coded with its likelihood given the codes. After a model's
    lossy qualities (``dqcodec models``) come its residual qualities, a lossy quality's codes and then what
    their image misses as quantized DCTs (``DQCodec.residual_step``, ``dqcodec.residual``), and then its
    near-lossless ones, the codes of its lossless quality and then every sample to within twice the
    quality's tolerance (``DQCodec.tolerance``).
    A lossy file at ``effort`` 1 or 2 searches longer for its codes: a smaller file
    for the same quality of image, several times the encoding time. Images over
    ``max_pixels`` pixels are refused (None: no limit). ``progress(done, total)``, if given, is
    called as units of the work finish (tiles, and the pixel positions of a lossless file)."""
    _check_int("effort", effort, 0, len(EFFORT_STEPS) - 1)
    _check_type("lossless", lossless, bool)
    model = default_model(lossless) if model is None else model
    _check_type("model", model, str)
    _check_progress(progress)
    if lossless and effort:
        raise errors.ArgumentError("effort applies to lossy files; a lossless file codes every pixel whatever its codes")
    rgb, mode = _rgb_and_mode(load_image(image, max_pixels))
    net, digest = zoo.load(model)
    if not registry.is_dq(net):
        raise errors.ModelError(f"model {model!r} is a {registry.family_of(net)} baseline, not a dq model: it writes no .dq files")
    if quality is None:
        quality = net.config.lossless_quality if lossless else net.config.default_quality
    if lossless:
        _check_int("quality (of a lossless file's codes)", quality, 1, net.lossy_qualities)
    else:
        _check_int("quality", quality, 1, net.num_qualities)
    if lossless and not net.lossless:
        raise errors.ModelError(f"model {model!r} has no pixel likelihood, so it cannot code lossless files")
    near_lossless = net.tolerance(quality) > 0
    if near_lossless and effort:
        raise errors.ArgumentError(f"effort applies to lossy qualities (1 to {net.lossy_qualities}); quality {quality} codes every pixel whatever its codes")
    if net.residual_step(quality) and effort:
        raise errors.ArgumentError(f"effort applies to lossy qualities (1 to {net.lossy_qualities}); quality {quality} is a residual quality")
    codes_pixels = lossless or near_lossless
    x = pad(to_tensor(rgb))
    size = (rgb.height, rgb.width)
    tile = tiling.LOSSLESS_TILE if codes_pixels else tiling.DEFAULT_TILE
    strings = tiling.encode(net, x, quality, tile, refine_steps=EFFORT_STEPS[effort], lossless_size=size if codes_pixels else None, progress=progress, size=size)
    return container.pack(container.Header(model, digest[:8], quality, mode, *size, tile), strings)


def _check_type(name: str, value, kind: type) -> None:
    if not isinstance(value, kind):
        raise errors.ArgumentError(f"{name} must be a {kind.__name__}, got {type(value).__name__} {value!r}")


def _check_progress(progress) -> None:
    if progress is not None and not callable(progress):
        raise errors.ArgumentError(f"progress must be a function of (done, total), got {type(progress).__name__}")


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise errors.ArgumentError(f"{name} must be a whole number from {low} to {high}, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise errors.ArgumentError(f"{name} must be between {low} and {high}, got {value}")


def _open(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """A file's header, streams and model, each checked before anything is decoded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise errors.ArgumentError(f"expected the bytes of a .dq file, got {type(data).__name__}")
    header, streams = container.unpack(bytes(data))
    check_pixels(header.height, header.width, max_pixels)
    net, digest = zoo.load(header.model, header.weights_hash)  # the version the file was written with
    if not registry.is_dq(net):
        raise errors.ModelError(f"file names model {header.model!r}, which is not a dq model and writes no .dq files")
    if digest[:8] != header.weights_hash:
        raise errors.ModelError(
            f"file was written with other weights of model {header.model!r} "
            f"({header.weights_hash.hex()}, installed {digest[:8].hex()})"
        )
    if not 1 <= header.quality <= net.num_qualities:
        raise errors.ContainerError(f"header names quality {header.quality}, but model {header.model!r} has qualities 1 to {net.num_qualities}")
    if len(streams) not in (net.num_levels, net.num_levels + 1):
        raise errors.ContainerError(f"file has {len(streams)} streams; model {header.model!r} writes {net.num_levels} (lossy) or {net.num_levels + 1} (lossless or residual)")
    if net.residual_step(header.quality) and len(streams) != net.num_levels + 1:
        raise errors.ContainerError(f"header names residual quality {header.quality}, but the file has no residual stream")
    if is_lossless(net, streams, header.quality) and not net.lossless:
        raise errors.ModelError(f"file is lossless, but model {header.model!r} has no pixel likelihood to decode it")
    if net.tolerance(header.quality) and not is_lossless(net, streams, header.quality):
        raise errors.ContainerError(f"header names near-lossless quality {header.quality}, but the file has no pixel stream")
    tiling.check_tile(header.tile, *tiling.padded_size(header.height, header.width))
    return header, streams, net


def decompress(data: bytes, preview: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS, progress: Progress | None = None) -> Image.Image:
    """Decode the bytes of a .dq file into a PIL image of the original size and mode.

    ``preview`` decodes a lossless file's lossy image from its codes, without decoding
    its pixel stream; a lossy file decodes the same either way. A file whose header names
    more than ``max_pixels`` pixels is refused before anything is allocated (None: no limit).
    ``progress(done, total)``, if given, is called as units of the work finish."""
    _check_type("preview", preview, bool)
    _check_progress(progress)
    header, streams, net = _open(data, max_pixels)
    size = (header.height, header.width)
    lossless = is_lossless(net, streams, header.quality) and not preview
    image = Image.fromarray(tiling.decode(net, streams, size, header.quality, header.tile, lossless, progress=progress), "RGB")
    return image.convert("L") if header.mode == "L" else image


def is_lossless(net, streams: list, quality: int) -> bool:
    """Whether a file's streams are those of a lossless (or near-lossless) file: one per level, then the
    pixels (a residual quality's one more stream is its difference)."""
    return len(streams) == len(net.stream_names(lossless=True)) and not net.residual_step(quality)


@dataclass
class FileInfo:
    header: container.Header
    file_bytes: int
    payload_bits: int
    ideal_payload_bits: float
    streams: dict[str, int]  # bytes of each stream, by name
    lossless: bool  # every sample exact
    near_lossless_bound: int = 0  # for a near-lossless file, how far (grey levels) a sample may decode from the original
    residual_step: int = 0  # for a residual quality's file, its DCTs' quantizer step

    @property
    def coding(self) -> str:
        if self.near_lossless_bound:
            return f"near-lossless (every sample within {self.near_lossless_bound} grey levels)"
        if self.residual_step:
            return f"lossy, codes and a residual (DCT step {self.residual_step})"
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
    (decoding a lossless file's pixels too)."""
    header, streams, net = _open(data, max_pixels)
    tables: list = []
    size = (header.height, header.width)
    pixels = is_lossless(net, streams, header.quality)
    if pixels or net.residual_step(header.quality):
        tiling.decode(net, streams, size, header.quality, header.tile, pixels, tables)
    else:
        tiling.decode_indices(net, streams, size, header.quality, header.tile, tables)
    ideal = sum(ideal_bits(symbols, frequencies) for frequencies, symbols in tables)
    sizes = dict(zip(net.stream_names(pixels, bool(net.residual_step(header.quality))), map(len, streams)))
    bound = 2 * net.tolerance(header.quality)
    return FileInfo(header, len(data), 8 * sum(map(len, streams)), ideal, sizes, pixels and not bound, bound, net.residual_step(header.quality))


def stream_bits(data: bytes) -> tuple[int, int]:
    """Bits of a lossless file's code streams and of its pixel stream."""
    header, streams, net = _open(data)
    if not is_lossless(net, streams, header.quality) or net.tolerance(header.quality):
        raise errors.ArgumentError("not a lossless .dq file")
    return 8 * sum(map(len, streams[:-1])), 8 * len(streams[-1])


def estimate_lossless_bits(data: bytes, image: ImageLike) -> float:
    """The model's own -log2 p of a lossless file's content: its codes under their
    tables plus the pixels under the continuous mixture (no table rounding or windows)."""
    header, streams, net = _open(data)
    rgb, _ = _rgb_and_mode(load_image(image))
    tables: list = []
    size = (header.height, header.width)
    pixel_bits = tiling.pixel_bits(net, streams, pad(to_tensor(rgb)), size, header.quality, header.tile, tables)
    return pixel_bits + sum(ideal_bits(symbols, frequencies) for frequencies, symbols in tables)
