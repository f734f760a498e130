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
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import container, registry, zoo
from .entropy import ideal_bits
from .model import STRIDE

ImageLike = Union[Image.Image, str, Path, np.ndarray]


class UnsupportedImageError(ValueError):
    """An image dqcodec cannot code without losing information it would not tell about."""


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}


def image_files(folder: Path) -> list[Path]:
    """Image files below a folder, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# Pillow modes accepted, and the container mode each decodes back to.
_ACCEPTED_MODES = {"RGB": "RGB", "L": "L", "1": "L", "P": "RGB"}


def load_image(image: ImageLike) -> Image.Image:
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as opened:
                opened.load()
                return opened
        except (OSError, Image.DecompressionBombError) as error:
            raise UnsupportedImageError(f"cannot read {image}: {error}") from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise UnsupportedImageError(f"arrays must be uint8 of shape (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    if isinstance(image, Image.Image):
        return image
    raise TypeError(f"expected a PIL image, a path or a uint8 array, got {type(image).__name__}")


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


def code_shape(height: int, width: int) -> tuple[int, int]:
    return -(-height // STRIDE), -(-width // STRIDE)


# refinement steps per encoder effort (see refine.py); effort never changes the decoder
EFFORT_STEPS = (0, 10, 30)


def compress(
    image: ImageLike, quality: int | None = None, model: str = zoo.DEFAULT_MODEL, lossless: bool = False, effort: int = 0
) -> bytes:
    """Encode an image into the bytes of a .dq file; quality defaults to the model's.

    A lossless file carries the codes of a quality (the model's lossless quality by
    default) and then every pixel, coded with its likelihood given the codes.
    A lossy file at ``effort`` 1 or 2 searches longer for its codes: a smaller file
    for the same quality of image, several times the encoding time."""
    if not 0 <= effort < len(EFFORT_STEPS):
        raise ValueError(f"effort must be between 0 and {len(EFFORT_STEPS) - 1}, got {effort}")
    if lossless and effort:
        raise ValueError("effort applies to lossy files; a lossless file codes every pixel whatever its codes")
    rgb, mode = _rgb_and_mode(load_image(image))
    net, digest = zoo.load(model)
    x = pad(to_tensor(rgb))
    if quality is None:
        quality = net.config.lossless_quality if lossless else net.config.default_quality
    if lossless:
        out = net.compress_lossless(x, (rgb.height, rgb.width), quality)
    else:
        out = net.compress(x, quality, refine_steps=EFFORT_STEPS[effort])
    header = container.Header(model, digest[:8], quality, mode, rgb.height, rgb.width)
    return container.pack(header, out["strings"])


def _open(data: bytes):
    header, streams = container.unpack(data)
    net, digest = zoo.load(header.model)
    if not registry.is_dq(net):
        raise zoo.ModelError(f"file names model {header.model!r}, which is not a dq model and writes no .dq files")
    if digest[:8] != header.weights_hash:
        raise zoo.ModelError(
            f"file was written with other weights of model {header.model!r} "
            f"({header.weights_hash.hex()}, installed {digest[:8].hex()})"
        )
    return header, streams, net


def decompress(data: bytes, preview: bool = False) -> Image.Image:
    """Decode the bytes of a .dq file into a PIL image of the original size and mode.

    ``preview`` decodes a lossless file's lossy image from its codes, without decoding
    its pixel stream; a lossy file decodes the same either way."""
    header, streams, net = _open(data)
    shape = code_shape(header.height, header.width)
    if is_lossless(net, streams) and not preview:
        out = net.decompress_lossless(streams, shape, header.quality, (header.height, header.width))
    else:
        out = net.decompress(streams[: net.num_levels], shape, header.quality)
    return to_image(out["x_hat"], header.height, header.width, header.mode)


def is_lossless(net, streams: list) -> bool:
    """Whether a file's streams are those of a lossless file: one per level, then the pixels."""
    return len(streams) == len(net.stream_names(lossless=True))


@dataclass
class FileInfo:
    header: container.Header
    file_bytes: int
    payload_bits: int
    ideal_payload_bits: float
    streams: dict[str, int]  # bytes of each stream, by name
    lossless: bool

    @property
    def bits_per_pixel(self) -> float:
        return 8 * self.file_bytes / (self.header.height * self.header.width)


def inspect(data: bytes) -> FileInfo:
    """Header fields, and the payload's real size next to -sum log2 p of what it codes
    (decoding a lossless file's pixels too)."""
    header, streams, net = _open(data)
    tables: list = []
    shape = code_shape(header.height, header.width)
    lossless = is_lossless(net, streams)
    if lossless:
        net.decompress_lossless(streams, shape, header.quality, (header.height, header.width), tables)
    else:
        net.decode_indices(streams, shape, header.quality, tables)
    ideal = sum(ideal_bits(symbols, frequencies) for frequencies, symbols in tables)
    sizes = dict(zip(net.stream_names(lossless), map(len, streams)))
    return FileInfo(header, len(data), 8 * sum(map(len, streams)), ideal, sizes, lossless)


def stream_bits(data: bytes) -> tuple[int, int]:
    """Bits of a lossless file's code streams and of its pixel stream."""
    header, streams, net = _open(data)
    if not is_lossless(net, streams):
        raise ValueError("not a lossless .dq file")
    return 8 * sum(map(len, streams[:-1])), 8 * len(streams[-1])


def estimate_lossless_bits(data: bytes, image: ImageLike) -> float:
    """The model's own -log2 p of a lossless file's content: its codes under their
    tables plus the pixels under the continuous mixture (no table rounding or windows)."""
    header, streams, net = _open(data)
    rgb, _ = _rgb_and_mode(load_image(image))
    tables: list = []
    size = (header.height, header.width)
    pixel_bits = net.pixel_bits(streams, code_shape(*size), header.quality, pad(to_tensor(rgb)), size, tables)
    return pixel_bits + sum(ideal_bits(symbols, frequencies) for frequencies, symbols in tables)
