"""Lossless evaluation: bits per dimension from the bytes of real files, each decoded and checked exact.

A file's bits per dimension are its bits over H·W·3; pooled over a folder, total bits over total
dimensions. dq's files also give their code and pixel bits and the model's own estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import zoo
from .evaluate import Codec, pillow_codec, round_trip


def _lossless_jxl(name: str, effort: int) -> Codec:
    import pillow_jxl  # noqa: F401  registers the JXL format with Pillow

    return pillow_codec(
        name, "JXL", [None], lambda _: {"lossless": True, "effort": effort}, f"JPEG XL lossless, effort {effort}"
    )


LOSSLESS_CODECS: dict[str, Callable[[], Codec]] = {
    "png": lambda: pillow_codec("png", "PNG", [None], lambda _: {"optimize": True}, "PNG (Pillow), optimize"),
    "webp": lambda: pillow_codec(
        "webp", "WEBP", [None], lambda _: {"lossless": True, "quality": 100, "method": 6}, "WebP lossless, method 6"
    ),
    "jxl": lambda: _lossless_jxl("jxl", 7),
    "jxl-e9": lambda: _lossless_jxl("jxl-e9", 9),
}


def make_lossless_codec(name: str, model: str = zoo.DEFAULT_LOSSLESS_MODEL, quality: int | None = None) -> Codec:
    """A lossless codec with one setting; dq's is the quality of its codes (None: the model's
    lossless quality). Raises ValueError if it cannot run here."""
    from . import codec

    if name == "dq":

        def encode(image, q):
            return codec.compress(image, quality=q, model=model, lossless=True)

        return Codec("dq", f"dqcodec model {model}, lossless", [quality], encode, codec.decompress)
    try:
        return LOSSLESS_CODECS[name]()
    except ImportError as error:
        raise ValueError(f"codec {name!r} is not available here: {error}") from None


@dataclass
class LosslessPoint:
    codec: str
    image: str
    dims: int  # height * width * 3
    bits: int  # 8 * file bytes
    exact: bool  # decoded pixels equal the input's
    encode_seconds: float
    decode_seconds: float
    # dq only: bits of the code streams and of the pixel stream, and the model's own -log2 p
    code_bits: int | None = None
    pixel_bits: int | None = None
    estimated_bits: float | None = None


def measure_lossless(made: Codec, image: Image.Image, image_name: str) -> LosslessPoint:
    """Code an RGB image with a lossless codec and check the round trip."""
    from . import codec

    data, decoded, encode_seconds, decode_seconds = round_trip(made, image, made.settings[0])
    exact = np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(image))
    point = LosslessPoint(
        made.name, image_name, image.width * image.height * 3, 8 * len(data), exact, encode_seconds, decode_seconds
    )
    if made.name == "dq":
        point.code_bits, point.pixel_bits = codec.stream_bits(data)
        point.estimated_bits = codec.estimate_lossless_bits(data, image)
    return point


def pool_lossless(points: list[LosslessPoint]) -> dict:
    """Per codec, over all its images: bits per dimension (total bits / total dimensions),
    its split for dq, and seconds per megapixel."""
    pooled = {}
    for name in dict.fromkeys(p.codec for p in points):
        group = [p for p in points if p.codec == name]
        dims = sum(p.dims for p in group)
        megapixels = dims / 3 / 1e6
        row = {
            "images": len(group),
            "all_exact": all(p.exact for p in group),
            "bpd": sum(p.bits for p in group) / dims,
            "encode_s_per_mp": sum(p.encode_seconds for p in group) / megapixels,
            "decode_s_per_mp": sum(p.decode_seconds for p in group) / megapixels,
        }
        if name == "dq":
            row["code_bpd"] = sum(p.code_bits for p in group) / dims
            row["pixel_bpd"] = sum(p.pixel_bits for p in group) / dims
            row["estimated_bpd"] = sum(p.estimated_bits for p in group) / dims
        pooled[name] = row
    return pooled
