"""Images in and out: Pillow images, paths or uint8 arrays, checked before anything large is allocated.

RGB and grayscale are coded; grayscale is coded as RGB and decoded back to grayscale. Modes that would
lose information (alpha, 16-bit, CMYK, ...) are refused.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps

from . import errors
from .config import STRIDE
from .container import check_pixels
from .defaults import DEFAULT_MAX_PIXELS
from .errors import UnsupportedImageError

if TYPE_CHECKING:  # loading, checking and measuring images needs no torch; only its tensors do
    import torch

ImageLike = Union[Image.Image, str, Path, np.ndarray]  # noqa: UP007  (a runtime alias: `|` needs Python 3.10's types)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}


def image_files(folder: Path) -> list[Path]:
    """Image files below a folder, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# Pillow modes accepted, and the container mode each decodes back to.
_ACCEPTED_MODES = {"RGB": "RGB", "L": "L", "1": "L", "P": "RGB"}


def load_image(image: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An image as Pillow holds it, turned upright by its EXIF orientation, after checking that it has
    one frame, at most ``max_pixels`` pixels and no samples deeper than 8 bits dqcodec would drop."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as opened:
                _check_image(opened, max_pixels)
                if opened.format == "PNG":
                    _check_png_rows(Path(image).read_bytes(), opened.width, opened.height)
                opened.load()
                return ImageOps.exif_transpose(opened)
        except errors.DQCodecError:
            raise
        except (
            Exception
        ) as error:  # Pillow reports a damaged file with OSError, ValueError, TypeError, SyntaxError, ...
            raise UnsupportedImageError(f"cannot read {image}: {type(error).__name__}: {error}") from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise UnsupportedImageError(
                f"arrays must be uint8 of shape (H, W) or (H, W, 3), got {image.dtype} {image.shape}"
            )
        check_pixels(image.shape[0], image.shape[1], max_pixels)
        return Image.fromarray(image)
    if isinstance(image, Image.Image):
        _check_image(image, max_pixels)
        return ImageOps.exif_transpose(image)
    raise errors.ArgumentError(f"expected a PIL image, a path or a uint8 array, got {type(image).__name__}")


def _check_image(image: Image.Image, max_pixels: int | None) -> None:
    check_pixels(image.height, image.width, max_pixels)
    _check_tiles_cover(image)
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise UnsupportedImageError(
            f"the image has {frames} frames (an animation or a multi-page file); dqcodec codes one, so save the frame you want first"
        )
    deep = [rawmode for rawmode in _rawmodes(image) if any(tag in rawmode for tag in (";16", ";32", "I;", "F;"))]
    if deep and image.mode in _ACCEPTED_MODES:
        raise UnsupportedImageError(
            f"the image has samples deeper than 8 bits ({deep[0]}), which Pillow would reduce to {image.mode!r}; "
            "dqcodec codes 8-bit samples only, so convert it first if that loss is acceptable"
        )


def _check_tiles_cover(image: Image.Image) -> None:
    """Refuse a file whose stored data covers fewer pixels than its header names (a TIFF whose height was
    raised has strips for the old rows only, and Pillow would fill the rest with zeros). A GIF's frame may
    be smaller than its screen, which the format fills with its background, so GIFs are not checked."""
    tiles = getattr(image, "tile", None) or []
    extents = [tile[1] for tile in tiles if len(tile) > 1 and isinstance(tile[1], tuple) and len(tile[1]) == 4]
    if image.format == "GIF" or not extents or len(extents) != len(tiles):
        return  # a GIF, a loaded image, or tiles this check does not know how to read
    covered = sum(max(0, min(x1, image.width) - x0) * max(0, min(y1, image.height) - y0) for x0, y0, x1, y1 in extents)
    if covered < image.width * image.height:
        raise UnsupportedImageError(
            f"the file is damaged: its data covers {covered} of the {image.width}x{image.height} pixels its header names"
        )


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_INFLATE_STEP = 1 << 20  # bytes inflated at a time, and so held at once
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _check_png_rows(data: bytes, width: int, height: int) -> None:
    """Refuse a PNG whose compressed data holds fewer rows than its header names (one whose height was
    raised, its CRC fixed: Pillow would decode the missing rows as zeros). Only the expected number of bytes
    is inflated, a megabyte at a time and none of it kept, so a forged stream cannot make this allocate more."""
    if len(data) < 29 or data[12:16] != b"IHDR":
        return  # Pillow opened it, so leave the finer points of the format to Pillow
    bit_depth, colour_type, interlaced = data[24], data[25], data[28]
    bits = bit_depth * _PNG_CHANNELS.get(colour_type, 0)
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))
    inflater, inflated, offset = zlib.decompressobj(), 0, 8
    while offset + 8 <= len(data) and inflated < expected:
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind == b"IDAT":
            chunk = data[offset + 8 : offset + 8 + length]
            try:
                inflated += len(inflater.decompress(chunk, min(expected - inflated, _INFLATE_STEP)))
                while inflater.unconsumed_tail and inflated < expected:
                    tail = inflater.unconsumed_tail
                    inflated += len(inflater.decompress(tail, min(expected - inflated, _INFLATE_STEP)))
            except zlib.error as error:
                raise UnsupportedImageError(f"the PNG's image data is damaged: {error}") from None
        elif kind == b"IEND":
            break
        offset += 12 + length
    if inflated < expected:
        rows = inflated * height // max(expected, 1)
        raise UnsupportedImageError(
            f"the PNG is damaged: its image data holds about {rows} of the {height} rows its header names"
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


def rgb_and_mode(image: Image.Image) -> tuple[Image.Image, str]:
    mode = _ACCEPTED_MODES.get(image.mode)
    if mode is None or (image.mode == "P" and "transparency" in image.info):
        raise UnsupportedImageError(
            f"image mode {image.mode!r} is not supported: dqcodec codes 8-bit RGB and grayscale; "
            "convert it first (an alpha channel, 16-bit samples or CMYK would otherwise be lost)"
        )
    return image.convert("RGB"), mode


def to_tensor(image: Image.Image) -> torch.Tensor:
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def to_array(image: Image.Image) -> np.ndarray:
    """``to_tensor`` as a numpy array (1, 3, H, W), float32 in [0, 1], for the torch-free runtime."""
    return (np.asarray(image.convert("RGB"), dtype=np.float32) / 255).transpose(2, 0, 1)[None]


def pad(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad (1, 3, H, W) to multiples of the model stride."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")


def pad_array(x: np.ndarray) -> np.ndarray:
    """``pad`` of a numpy array."""
    h, w = x.shape[-2:]
    return np.pad(x, ((0, 0), (0, 0), (0, -h % STRIDE), (0, -w % STRIDE)), mode="edge")


def psnr(reference: Image.Image, decoded: Image.Image) -> float:
    """PSNR in dB over every 8-bit sample of two images of one size and mode (inf for identical ones)."""
    error = np.mean((np.asarray(reference, dtype=np.float64) - np.asarray(decoded, dtype=np.float64)) ** 2)
    return math.inf if error == 0 else float(10 * np.log10(255**2 / error))


def to_image(x: torch.Tensor, height: int, width: int, mode: str) -> Image.Image:
    array = x[0, :, :height, :width].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(array), "RGB")
    return image.convert("L") if mode == "L" else image
