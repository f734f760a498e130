"""Rate control: the quality of a model's ladder that meets a target file size or image quality, as cwebp's
``-size`` and ``-psnr`` do.

Taken in the order ``rising`` gives (the lossy and residual qualities as numbered, then near-lossless ones
from the widest tolerance), a model's qualities rise in rate and in PSNR, so a binary
search over them codes a few candidate files (about log2 of their number) and keeps the one that meets the
target: for a size, the largest
quality whose file is within it; for a PSNR, the smallest quality whose decoded image reaches it. The
ladder's rungs are fixed, so the target is met from below (size) or above (PSNR), not hit exactly.
(The shipped ladders rise on every image of the evaluation sets. A ladder that places residual qualities over a
lower lossy quality below a higher one may not, on some images; the search still returns a quality that meets
the target whenever the first quality does for a size, or the last for a PSNR, though not always the best one.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import codec, errors, images
from .defaults import DEFAULT_MAX_PIXELS, default_model
from .images import ImageLike, load_image, rgb_and_mode
from .point import Kind, Ladder, OperatingPoint


@dataclass(frozen=True)
class Coded:
    """A file rate control chose, with its quality and what it measured of it."""

    data: bytes
    quality: int
    bpp: float
    psnr: float | None  # measured when the target was a PSNR


def compress_to(
    image: ImageLike,
    bpp: float | None = None,
    psnr: float | None = None,
    model: str | None = None,
    effort: int = 0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Coded:
    """The file of the largest quality within ``bpp`` bits per pixel, or of the smallest quality whose decoded
    image reaches ``psnr`` dB (give one of the two). When no quality meets the target, the nearest one: the
    smallest file, or the highest quality. ``effort`` > 0 searches the lossy and residual qualities only."""
    by_size = _by_size(bpp, psnr)
    loaded, mode = rgb_and_mode(load_image(image, max_pixels))
    source = loaded if mode == "RGB" else loaded.convert("L")
    model = default_model() if model is None else model
    ladder = codec.load_dq_model(model)[0].ladder
    qualities = [p.quality for p in rising(ladder) if not effort or p.kind in (Kind.LOSSY, Kind.RESIDUAL)]
    tried: dict[int, Coded] = {}

    def coded(index: int) -> Coded:
        if index not in tried:
            quality = qualities[index]
            data = codec.compress(source, quality=quality, model=model, effort=effort, max_pixels=max_pixels)
            measured = None if by_size else images.psnr(source, codec.decompress(data, max_pixels=max_pixels))
            tried[index] = Coded(data, quality, 8 * len(data) / (source.width * source.height), measured)
        return tried[index]

    if by_size:
        return coded(_last(len(qualities), lambda i: coded(i).bpp <= bpp))  # type: ignore[operator]
    return coded(_first(len(qualities), lambda i: coded(i).psnr >= psnr))  # type: ignore[operator]


def rising(ladder: Ladder) -> list[OperatingPoint]:
    """A ladder's points in the order their rates rise by construction: the lossy and residual qualities as
    numbered (a model lists its residual steps coarse to fine, and places its lossy qualities among them so that
    they rise: ``point.Ladder``), then near-lossless ones from the widest tolerance."""
    rungs = ladder.rungs()
    coded = [p for p in rungs if p.kind != Kind.NEAR_LOSSLESS]
    return coded + sorted((p for p in rungs if p.kind == Kind.NEAR_LOSSLESS), key=lambda p: (-p.tolerance, p.quality))


def _by_size(bpp: float | None, psnr: float | None) -> bool:
    """Whether the target is a size (else a PSNR), once it is checked."""
    if (bpp is None) == (psnr is None):
        raise errors.ArgumentError("give one target: bpp or psnr")
    value = bpp if bpp is not None else psnr
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise errors.ArgumentError(f"a target must be a positive number, got {value!r}")
    return bpp is not None


def _last(count: int, meets: Callable[[int], bool]) -> int:
    """The last index of 0..count-1 that meets a condition its indices meet as a prefix (0 if none does)."""
    low, high = 0, count - 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if meets(middle) else (low, middle - 1)
    return low


def _first(count: int, meets: Callable[[int], bool]) -> int:
    """The first index of 0..count-1 that meets a condition its indices meet as a suffix (the last if none does)."""
    low, high = 0, count - 1
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle + 1, high)
    return low
