"""Rate–distortion of pair files (``dqcodec eval --pairs``, issue 32): one file for two views against two
independent dq files of the same model and qualities, and against other codecs coding each view.

A folder of pairs holds one sub-folder per pair with its two images (sorted by name: view 0 first), or
one sub-folder per kind of pair (stereo, motion, ...) holding such pair folders. Every point is real
files: bits per pixel are all the bytes of the pair (a pair file, or both views' files) over both views'
pixels, and the distortion is the mean of the two views' PSNRs. BD-rates compare mean curves over the
pairs of a kind, as ``dqcodec eval`` does over images.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import evaluate
from .codec import ladder as model_ladder
from .images import IMAGE_SUFFIXES, load_image, psnr
from .point import Kind, Ladder

PAIR_CODEC = "dq-pair"
BASELINES = ("jpeg", "webp", "avif", "jxl")
RESULT_FILES = ("pair_points.csv", "pair_summary.json", "pair_bd_rate.csv")


@dataclass
class Pair:
    name: str  # its folder, relative to the root
    kind: str  # the kind folder it is in ("" when the root holds pairs directly)
    paths: tuple[Path, Path]


@dataclass
class PairPoint:
    codec: str
    setting: object
    pair: str
    kind: str
    bytes: int
    bpp: float
    psnr: float  # mean of the views'
    psnr_0: float
    psnr_1: float
    encode_seconds: float
    decode_seconds: float  # both views
    view_1_seconds: float  # view 1 alone
    coding: str = ""  # a pair file's coding of view 1


def _images_in(folder: Path) -> list[Path]:
    """The images directly in a folder (not in its sub-folders), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_pairs(root: Path) -> list[Pair]:
    """Every folder at most one level below ``root`` that holds exactly two images, in name order."""
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = _images_in(folder)
        if len(images) == 2:
            pairs.append(Pair(folder.name, "", (images[0], images[1])))
            continue
        for inner in sorted(p for p in folder.iterdir() if p.is_dir()):
            images = _images_in(inner)
            if len(images) == 2:
                pairs.append(Pair(f"{folder.name}/{inner.name}", folder.name, (images[0], images[1])))
    return pairs


def _timed(work: Callable):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _point(codec: str, setting, pair: Pair, views, decoded, size: int, times: tuple, coding: str = "") -> PairPoint:
    pixels = sum(v.width * v.height for v in views)
    first, second = (psnr(v.convert("RGB"), d.convert("RGB")) for v, d in zip(views, decoded, strict=True))
    encode_seconds, decode_seconds, view_seconds = times
    return PairPoint(
        codec,
        setting,
        pair.name,
        pair.kind,
        size,
        8 * size / pixels,
        (first + second) / 2,
        first,
        second,
        encode_seconds,
        decode_seconds,
        view_seconds,
        coding,
    )


def measure_pair_file(pair: Pair, views, quality: int, model: str) -> PairPoint:
    from . import pairs

    data, encode_seconds = _timed(lambda: pairs.compress_pair(views[0], views[1], quality=quality, model=model))
    decoded, decode_seconds = _timed(lambda: pairs.decompress_pair(data))
    _, view_seconds = _timed(lambda: pairs.decompress_pair(data, (1,)))
    coding = pairs.unpack(data).coding.name.lower()
    times = (encode_seconds, decode_seconds, view_seconds)
    return _point(PAIR_CODEC, quality, pair, views, decoded, len(data), times, coding)


def measure_separately(made: evaluate.Codec, pair: Pair, views, setting) -> PairPoint:
    """Each view in a file of its own (dq, or another codec)."""
    trips = [evaluate.round_trip(made, view, setting) for view in views]
    times = (sum(t[2] for t in trips), sum(t[3] for t in trips), trips[1][3])
    return _point(made.name, setting, pair, views, [t[1] for t in trips], sum(len(t[0]) for t in trips), times)


def dq_qualities(ladder: Ladder) -> list[int]:
    """dq's rate points (every lossy and residual quality would take a pair file minutes): the lossy qualities,
    and every other residual quality above the last of them, down from the finest (dq-3: 1, 2, 4, ..., 16; the
    placed ladder of `make dq3-placed`: 1, 4, 6, ..., 18, the same points)."""
    coded = [p for p in ladder.rungs() if p.kind in (Kind.LOSSY, Kind.RESIDUAL)]
    above = [p.quality for p in coded if p.quality > max(ladder.lossy_positions)]
    return sorted({*ladder.lossy_positions, *above[::-1][::2]})


def run(root: Path, model: str, codecs: tuple[str, ...], progress=None) -> tuple[list[PairPoint], list[str]]:
    """Every point of every pair; and what was skipped, one line each."""
    skipped: list[str] = []
    made = []
    for name in codecs:
        try:
            made.append(evaluate.make_codec(name, model))
        except ValueError as error:
            skipped.append(str(error))
    points = []
    qualities = dq_qualities(model_ladder(model))
    jobs = [(pair, c) for pair in find_pairs(root) for c in [None, *made]]
    for pair, made_codec in jobs if progress is None else progress(jobs):
        views = [load_image(path) for path in pair.paths]
        if made_codec is None:
            points += [measure_pair_file(pair, views, q, model) for q in qualities]
            continue
        settings = qualities if made_codec.name == "dq" else made_codec.settings
        points += [measure_separately(made_codec, pair, views, s) for s in settings]
    return points, skipped


def summarize(points: list[PairPoint]) -> dict:
    """Per kind ("all" too) and codec: the mean over pairs of bpp, PSNR and times at each setting, and the
    BD-rate of pair files against every other codec."""
    kinds = sorted({p.kind for p in points} - {""})
    summary = {}
    for kind in ["all", *kinds]:
        chosen = [p for p in points if kind == "all" or p.kind == kind]
        curves: dict[str, dict] = {}
        for codec in dict.fromkeys(p.codec for p in chosen):
            by_setting = defaultdict(list)
            for p in chosen:
                if p.codec == codec:
                    by_setting[p.setting].append(p)
            settings = [s for s, group in by_setting.items() if len(group) == len({p.pair for p in chosen})]
            curves[codec] = {
                "settings": settings,
                **{
                    key: [sum(getattr(p, key) for p in by_setting[s]) / len(by_setting[s]) for s in settings]
                    for key in ("bpp", "psnr", "encode_seconds", "decode_seconds", "view_1_seconds")
                },
            }
        pair_curve = curves.get(PAIR_CODEC)
        bd = {}
        if pair_curve:
            for codec, curve in curves.items():
                if codec != PAIR_CODEC:
                    bd[codec] = evaluate.bd_rate((curve["bpp"], curve["psnr"]), (pair_curve["bpp"], pair_curve["psnr"]))
        summary[kind] = {"pairs": len({p.pair for p in chosen}), "curves": curves, "bd_rate": bd}
    return summary


def write(outdir: Path, points: list[PairPoint], summary: dict) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "pair_points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in dataclasses.fields(PairPoint)])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(p) for p in points)
    (outdir / "pair_summary.json").write_text(json.dumps(summary, indent=1))
    with open(outdir / "pair_bd_rate.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["kind", "pairs", "against", "metric", "bd_rate_percent"])
        for kind, entry in summary.items():
            for codec, delta in entry["bd_rate"].items():
                rows.writerow([kind, entry["pairs"], codec, "psnr", "" if delta is None else f"{delta:.2f}"])


def read_points(path: Path) -> list[PairPoint]:
    """The points a run wrote (``pair_points.csv``), to summarize again."""
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            number = {k: float(row[k]) for k in ("bpp", "psnr", "psnr_0", "psnr_1")}
            seconds = {k: float(row[k]) for k in ("encode_seconds", "decode_seconds", "view_1_seconds")}
            setting = int(row["setting"]) if row["setting"].isdigit() else row["setting"]
            points.append(
                PairPoint(
                    codec=row["codec"],
                    setting=setting,
                    pair=row["pair"],
                    kind=row["kind"],
                    bytes=int(row["bytes"]),
                    coding=row["coding"],
                    **number,
                    **seconds,
                )
            )
    return points


def previous_results(outdir: Path) -> list[Path]:
    return [outdir / name for name in RESULT_FILES if (outdir / name).exists()]


def table(summary: dict) -> list[str]:
    """The lines ``dqcodec eval --pairs`` prints: BD-rates per kind, then the pair files' codings."""
    lines = []
    for kind, entry in summary.items():
        deltas = ", ".join(
            f"{codec} {'n/a' if delta is None else f'{delta:+.2f}%'}" for codec, delta in entry["bd_rate"].items()
        )
        lines.append(f"{kind} ({entry['pairs']} pairs): BD-rate of pair files against {deltas}")
    return lines
