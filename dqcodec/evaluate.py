"""Rate–distortion evaluation that counts the bytes of real files.

Every codec is a name, a list of settings (its rate sweep) and an encode/decode pair.
Results follow CompressAI's conventions: its metric names ("psnr-rgb", "ms-ssim-rgb", MS-SSIM
from pytorch_msssim as in ``compressai.utils.eval_model``) and one JSON per codec in that
tool's format, which ``python -m compressai.utils.plot`` reads and which drives the RD plot.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import zoo  # codec (and with it torch) is imported where it is used: listing codecs needs neither

JPEG_QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]


@dataclass
class Codec:
    name: str
    description: str
    settings: list
    encode: Callable[[Image.Image, object], bytes]
    decode: Callable[[bytes], Image.Image]


@dataclass
class Point:
    codec: str
    setting: object
    image: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_seconds: float
    decode_seconds: float


def pillow_codec(name: str, fmt: str, settings, options: Callable[[object], dict], description: str) -> Codec:
    def encode(image, setting):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options(setting))
        return buffer.getvalue()

    def decode(data):
        with Image.open(io.BytesIO(data)) as decoded:
            return decoded.convert("RGB")

    return Codec(name, description, list(settings), encode, decode)


def _dq(model: str, effort: int = 0) -> Codec:
    from . import codec

    ladder = zoo.load(model)[0].ladder
    # effort is for lossy and residual qualities
    qualities = range(1, (ladder.lossy_count + len(ladder.residual_steps) if effort else len(ladder)) + 1)
    return Codec(
        "dq" if not effort else f"dq-e{effort}",
        f"dqcodec model {model}" + (f", encoder effort {effort}" if effort else ""),
        list(qualities),
        lambda image, q: codec.compress(image, quality=q, model=model, effort=effort),
        codec.decompress,
    )


def _jxl() -> Codec:
    import pillow_jxl  # noqa: F401  registers the JXL format with Pillow

    return pillow_codec(
        "jxl",
        "JXL",
        [10, 20, 30, 50, 70, 80, 90, 95],
        lambda q: {"quality": q, "effort": 7},
        "JPEG XL (pillow-jxl-plugin), effort 7",
    )


def _baseline(arch: str) -> Codec:
    """A CompressAI baseline: its shipped models <arch>-1, <arch>-2, ... are its rate points."""
    from . import baselines, codec

    names = sorted(
        m.name for m in zoo.available() if m.name.startswith(arch + "-") and m.name[len(arch) + 1 :].isdigit()
    )
    if not names:
        raise ValueError(f"no {arch} models are installed (train them with scripts/train_baselines.sh)")

    def encode(image, name):
        out = baselines.compress(zoo.load(name)[0], codec.to_tensor(image.convert("RGB")))
        return baselines.to_bytes(name, out, (image.height, image.width))

    def decode(data):
        name, out, size = baselines.from_bytes(data)
        x_hat = baselines.decompress(zoo.load(name)[0], out, size)
        return codec.to_image(x_hat, *size, "RGB")

    return Codec(arch, f"CompressAI {arch} trained here (scripts/train_baselines.sh)", names, encode, decode)


CODEC_FACTORIES: dict[str, Callable[[str], Codec]] = {
    "dq": _dq,
    "dq-e1": lambda model: _dq(model, effort=1),
    "dq-e2": lambda model: _dq(model, effort=2),
    "jpeg": lambda _: pillow_codec(
        "jpeg", "JPEG", JPEG_QUALITIES, lambda q: {"quality": q, "subsampling": 2}, "JPEG (Pillow), 4:2:0"
    ),
    "webp": lambda _: pillow_codec(
        "webp", "WEBP", JPEG_QUALITIES, lambda q: {"quality": q, "method": 6}, "WebP (Pillow), method 6"
    ),
    "avif": lambda _: pillow_codec(
        "avif", "AVIF", [10, 20, 30, 40, 50, 60, 70, 80, 90], lambda q: {"quality": q}, "AVIF (Pillow), default speed"
    ),
    "jp2": lambda _: pillow_codec(
        "jp2",
        "JPEG2000",
        [200, 100, 60, 40, 25, 16, 10],
        lambda r: {"quality_mode": "rates", "quality_layers": [r]},
        "JPEG 2000 (Pillow, OpenJPEG), compression ratio sweep",
    ),
    "jxl": lambda _: _jxl(),
    "bmshj2018-factorized": lambda _: _baseline("bmshj2018-factorized"),
    "bmshj2018-hyperprior": lambda _: _baseline("bmshj2018-hyperprior"),
}
# what `dqcodec eval` runs unless told: dq's higher encoder efforts take seconds per image and rate point
DEFAULT_CODECS = tuple(name for name in CODEC_FACTORIES if name not in ("dq-e1", "dq-e2"))


def make_codec(name: str, model: str = zoo.DEFAULT_MODEL) -> Codec:
    """The named codec, checked to work on a small image; raises ValueError if it cannot run here."""
    if name not in CODEC_FACTORIES:
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(CODEC_FACTORIES)})")
    try:
        made = CODEC_FACTORIES[name](model)
        made.decode(made.encode(Image.new("RGB", (16, 16), (90, 120, 30)), made.settings[0]))
    except (ImportError, OSError, KeyError, ValueError) as error:
        raise ValueError(f"codec {name!r} is not available here: {error}") from None
    return made


def metrics(reference: Image.Image, decoded: Image.Image) -> tuple[float, float]:
    """(PSNR, MS-SSIM) on RGB; MS-SSIM is NaN for images under 161 px a side, which it cannot measure."""
    from pytorch_msssim import ms_ssim  # what CompressAI's eval_model uses

    from . import codec
    from .images import psnr

    value = psnr(reference.convert("RGB"), decoded.convert("RGB"))
    a, b = codec.to_tensor(reference) * 255, codec.to_tensor(decoded) * 255
    quality = ms_ssim(a, b, data_range=255).item() if min(a.shape[-2:]) > 160 else math.nan
    return value, quality


def round_trip(made: Codec, image: Image.Image, setting) -> tuple[bytes, Image.Image, float, float]:
    """(file bytes, decoded image, encode seconds, decode seconds)."""
    started = time.perf_counter()
    data = made.encode(image, setting)
    encoded = time.perf_counter()
    decoded = made.decode(data)
    return data, decoded, encoded - started, time.perf_counter() - encoded


def measure(made: Codec, image: Image.Image, setting, image_name: str) -> Point:
    data, decoded, encode_seconds, decode_seconds = round_trip(made, image, setting)
    value, quality = metrics(image, decoded)
    return Point(
        made.name,
        setting,
        image_name,
        len(data),
        8 * len(data) / (image.width * image.height),
        value,
        quality,
        encode_seconds,
        decode_seconds,
    )


@dataclass
class Summary:
    """Per codec and setting, the mean over images of every metric."""

    codec: str
    description: str
    settings: list = field(default_factory=list)
    results: dict = field(default_factory=lambda: defaultdict(list))

    def as_compressai_json(self) -> dict:
        return {
            "name": self.codec,
            "description": self.description,
            "settings": self.settings,
            "results": dict(self.results),
        }


def summarize(made: Codec, points: list[Point]) -> Summary:
    summary = Summary(made.name, made.description)
    by_setting = defaultdict(list)
    for p in points:
        by_setting[p.setting].append(p)
    for setting in made.settings:
        group = by_setting.get(setting)
        if not group:
            continue
        summary.settings.append(setting)
        for key, attr in (
            ("bpp", "bpp"),
            ("psnr-rgb", "psnr"),
            ("ms-ssim-rgb", "ms_ssim"),
            ("encoding_time", "encode_seconds"),
            ("decoding_time", "decode_seconds"),
        ):
            summary.results[key].append(_mean([getattr(p, attr) for p in group]))
    return summary


def _mean(values: list[float]) -> float | None:
    """Mean of the measured values (NaN marks 'not measurable'); None if there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def bd_rate(anchor: tuple[list, list], test: tuple[list, list]) -> float | None:
    """Bjøntegaard delta rate (%) of test against anchor, each (bpp list, PSNR list):
    the mean rate difference over the PSNR range both cover; negative means test saves bits.
    None when the curves do not overlap, have fewer than two points or cannot be fitted.
    Each curve is its points that no other point of it dominates (as many bits or more for as much quality
    or less): a fit through a point off the curve, such as a near-lossless quality that costs more than a
    residual one for less PSNR, would bend it."""
    anchor, test = undominated(*anchor), undominated(*test)
    if min(len(anchor[0]), len(test[0])) < 2:
        return None
    integrals = []
    lo = max(min(anchor[1]), min(test[1]))
    hi = min(max(anchor[1]), max(test[1]))
    if lo >= hi:
        return None
    for rates, psnrs in (anchor, test):
        order = np.argsort(psnrs)
        p, r = np.asarray(psnrs)[order], np.log(np.asarray(rates)[order])
        fit = np.polyint(np.polyfit(p, r, min(3, len(p) - 1)))
        integrals.append(np.polyval(fit, hi) - np.polyval(fit, lo))
    mean_log_ratio = (integrals[1] - integrals[0]) / (hi - lo)
    if not abs(mean_log_ratio) < 700:  # the fits do not describe the curves (math.exp would overflow)
        return None
    return float((math.exp(mean_log_ratio) - 1) * 100)


def undominated(rates: list, psnrs: list) -> tuple[list, list]:
    """The (bpp, PSNR) points of a curve that no other point of it dominates, in their order."""
    points = list(zip(rates, psnrs))
    kept = [(r, p) for r, p in points if not any(r2 <= r and p2 >= p and (r2, p2) != (r, p) for r2, p2 in points)]
    return [r for r, _ in kept], [p for _, p in kept]


def interpolate_psnr(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR of a (bpp, psnr) curve at the given rate, linear in between; None outside it."""
    curve = sorted(curve)
    for (r0, p0), (r1, p1) in zip(curve, curve[1:]):
        if r0 <= bpp <= r1:
            return p0 + (p1 - p0) * (bpp - r0) / (r1 - r0) if r1 > r0 else max(p0, p1)
    return None


# bd_rate.json is what dqcodec 0.2 wrote; it is cleared with the rest of an earlier run
RESULT_FILES = ("points.csv", "rd.png", "bd_rate.csv", "bd_rate.json")


def previous_results(outdir: Path) -> list[Path]:
    """The files an earlier ``write_results`` left in outdir."""
    names = [*RESULT_FILES, *(f"{name}.json" for name in CODEC_FACTORIES)]
    return [outdir / name for name in names if os.path.lexists(outdir / name)]


def write_results(outdir, summaries: list[Summary], points: list[Point], metric: str = "psnr") -> dict:
    """One CompressAI-style JSON per codec (and no other JSON, so ``python -m compressai.utils.plot
    --results-file OUTDIR/*.json`` reads them all), points.csv, rd.png and bd_rate.csv; returns the BD-rates."""
    import csv
    import dataclasses
    import json

    from .baselines import compressai_module

    plot = compressai_module("compressai.utils.plot.__main__")
    matplotlib_plt, parse_json_file = plot.matplotlib_plt, plot.parse_json_file
    outdir.mkdir(parents=True, exist_ok=True)
    for summary in summaries:
        (outdir / f"{summary.codec}.json").write_text(json.dumps(summary.as_compressai_json(), indent=2))
    with open(outdir / "points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in dataclasses.fields(Point)])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(p) for p in points)
    scatters = [parse_json_file(outdir / f"{s.codec}.json", metric) for s in summaries]
    ylabel = "PSNR-RGB [dB]" if metric == "psnr" else "MS-SSIM-RGB [dB]"
    matplotlib_plt(scatters, f"{len({p.image for p in points})} images", ylabel, str(outdir / "rd.png"))
    key = "psnr-rgb" if metric == "psnr" else "ms-ssim-rgb"
    deltas = {}
    dq = next((s for s in summaries if s.codec == "dq"), None)
    if dq is not None:
        for other in summaries:
            if other.codec != "dq":
                deltas[other.codec] = bd_rate(
                    (other.results["bpp"], _as_db(other.results[key], metric)),
                    (dq.results["bpp"], _as_db(dq.results[key], metric)),
                )
        write_bd_rates(outdir / "bd_rate.csv", deltas, metric)
    return deltas


def write_bd_rates(path: Path, deltas: dict, metric: str) -> None:
    """One row per codec: dq's Bjøntegaard delta rate against it, in percent (empty where the curves do not overlap)."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["against", "metric", "bd_rate_percent"])
        for name, delta in deltas.items():
            writer.writerow([name, metric, "" if delta is None else f"{delta:.2f}"])


def read_bd_rates(path: Path) -> dict[str, float | None]:
    import csv

    with open(path, newline="") as f:
        return {
            row["against"]: float(row["bd_rate_percent"]) if row["bd_rate_percent"] else None
            for row in csv.DictReader(f)
        }


def _as_db(values, metric):
    if metric == "psnr":
        return list(values)
    return [math.nan if v is None else -10 * math.log10(max(1 - v, 1e-10)) for v in values]
