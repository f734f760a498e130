"""Rate–distortion measurements that count the bytes of real files."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import codec


@dataclass
class Point:
    codec: str
    setting: int
    image: str
    bytes: int
    bpp: float
    psnr: float
    encode_seconds: float
    decode_seconds: float


def psnr(reference: Image.Image, decoded: Image.Image) -> float:
    a = np.asarray(reference.convert("RGB"), dtype=np.float64)
    b = np.asarray(decoded.convert("RGB"), dtype=np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def _timed(encode, decode, name, setting, image, image_name) -> Point:
    started = time.perf_counter()
    data = encode()
    encoded = time.perf_counter()
    decoded = decode(data)
    finished = time.perf_counter()
    return Point(
        name,
        setting,
        image_name,
        len(data),
        8 * len(data) / (image.width * image.height),
        psnr(image, decoded),
        encoded - started,
        finished - encoded,
    )


def dq_point(image: Image.Image, quality: int, image_name: str = "", model: str | None = None) -> Point:
    kwargs = {"model": model} if model else {}
    return _timed(
        lambda: codec.compress(image, quality=quality, **kwargs), codec.decompress, "dq", quality, image, image_name
    )


def pillow_point(image: Image.Image, fmt: str, quality: int, image_name: str = "", **options) -> Point:
    """A classical codec through Pillow, e.g. fmt="JPEG", options={"subsampling": 2} for 4:2:0."""

    def encode():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, quality=quality, **options)
        return buffer.getvalue()

    def decode(data):
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()
            return decoded.copy()

    return _timed(encode, decode, fmt.lower(), quality, image, image_name)


def interpolate_psnr(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR of a (bpp, psnr) curve at the given rate, linear in between; None outside it."""
    curve = sorted(curve)
    for (r0, p0), (r1, p1) in zip(curve, curve[1:]):
        if r0 <= bpp <= r1:
            return p0 + (p1 - p0) * (bpp - r0) / (r1 - r0) if r1 > r0 else max(p0, p1)
    return None
