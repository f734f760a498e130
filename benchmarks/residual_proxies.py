"""Proxies for the residual layer (issue 29): the same dq-2 codes, other residual coders, ranked by BD-rate.

    python benchmarks/residual_proxies.py data/heldout data/native data/sharp --variant v1 --variant rdoq

Every figure comes from real streams: a residual point's bytes are the bytes of the lossy file of its base
quality (dq-2, coded here with `codec.compress`) plus the residual stream and its 4-byte length, which is
what a residual file holds; each stream is decoded again and its image measured. WebP, AVIF, JPEG XL and
JPEG are coded in the same run (`dqcodec.evaluate`'s codecs, real files). The mean bpp and PSNR over the
images of a set at each setting make a curve, as in `dqcodec eval`, and BD-rates compare the curves.

The dq-2 bases (lossy files and their decoded images) and the other codecs' points are cached in --cache,
keyed by the image's pixels, so a second run codes only the residual variants.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import residual_variants

from dqcodec import codec, evaluate
from dqcodec.images import psnr

OTHER_CODECS = ("webp", "avif", "jxl", "jpeg")
BASES = (1, 2, 3, 4)
DQ2_LADDER = ((2, 40), (2, 28), (2, 20), (2, 14), (2, 10))


def image_key(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()[:16]


def lossy_bases(image: Image.Image, cache: Path) -> dict[int, tuple[int, np.ndarray]]:
    """Every lossy quality's (file bytes, decoded image) with dq-2, cached."""
    path = cache / f"bases-{image_key(image)}.npz"
    if path.exists():
        stored = np.load(path)
        return {q: (int(stored[f"bytes{q}"]), stored[f"image{q}"]) for q in BASES}
    bases = {}
    for q in BASES:
        data = codec.compress(image, quality=q, model="dq-2")
        bases[q] = (len(data), np.asarray(codec.decompress(data).convert("RGB")))
    np.savez(path, **{f"bytes{q}": b for q, (b, _) in bases.items()}, **{f"image{q}": i for q, (_, i) in bases.items()})
    return bases


def other_points(image: Image.Image, name: str, cache: Path) -> dict[str, list[tuple[float, float]]]:
    """(bpp, PSNR) of every setting of every other codec, real files, cached."""
    path = cache / f"others-{image_key(image)}.json"
    if path.exists():
        return json.loads(path.read_text())
    points = {}
    for codec_name in OTHER_CODECS:
        made = evaluate.make_codec(codec_name)
        points[codec_name] = []
        for setting in made.settings:
            data, decoded, _, _ = evaluate.round_trip(made, image, setting)
            points[codec_name].append((8 * len(data) / (image.width * image.height), psnr(image, decoded)))
    path.write_text(json.dumps(points))
    return points


def dq_points(image: Image.Image, bases, variant: str, ladder, lossy=BASES) -> list[tuple[float, float, float]]:
    """(bpp, PSNR, residual seconds) of the lossy qualities and every residual rung of the ladder."""
    original = np.asarray(image)
    pixels = image.width * image.height
    points = [(8 * bases[q][0] / pixels, psnr(original, bases[q][1]), 0.0) for q in lossy]
    for base_quality, step in ladder:
        base_bytes, base = bases[base_quality]
        started = time.perf_counter()
        stream, decoded = residual_variants.code(variant, original, base, step)
        seconds = time.perf_counter() - started
        points.append((8 * (base_bytes + 4 + len(stream)) / pixels, psnr(original, decoded), seconds))
    return points


def mean_curve(per_image: list[list[tuple]]) -> tuple[list[float], list[float]]:
    stacked = np.array(per_image)  # (images, settings, 2+)
    return list(stacked[:, :, 0].mean(0)), list(stacked[:, :, 1].mean(0))


def parse_ladder(text: str | None):
    if not text:
        return DQ2_LADDER
    return tuple(tuple(int(v) for v in rung.split(":")) for rung in text.split(","))


@click.command()
@click.argument("sets", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--variant", "variants", multiple=True, default=["v1"], show_default=True)
@click.option("--ladder", default=None, help="residual rungs base:step,... (default dq-2's: 2:40,2:28,2:20,2:14,2:10)")
@click.option("--lossy", default="1,2,3,4", show_default=True, help="dq-2's lossy qualities in the curve")
@click.option("--every", default=1, help="take every N-th image of each set")
@click.option("--cache", default=str(Path.home() / "dqcodec-runs" / "residual-cache"), show_default=True)
@click.option("--json-out", default=None, help="write every curve and BD-rate here")
@click.option(
    "--others/--no-others", default=True, help="code WebP, AVIF, JPEG XL and JPEG too (not to tune on training photos)"
)
def main(sets, variants, ladder, lossy, every, cache, json_out, others):
    cache_dir = Path(cache)
    cache_dir.mkdir(parents=True, exist_ok=True)
    rungs = parse_ladder(ladder)
    report = {}
    for folder in sets:
        paths = sorted(Path(folder).glob("*.png"))[::every]
        compared = OTHER_CODECS if others else ()
        other = {name: [] for name in compared}
        dq = {variant: [] for variant in variants}
        seconds = dict.fromkeys(variants, 0.0)
        for path in paths:
            image = Image.open(path).convert("RGB")
            bases = lossy_bases(image, cache_dir)
            if compared:
                for name, points in other_points(image, path.name, cache_dir).items():
                    other[name].append(points)
            for variant in variants:
                points = dq_points(image, bases, variant, rungs, [int(q) for q in lossy.split(",")])
                dq[variant].append(points)
                seconds[variant] += sum(p[2] for p in points)
        curves = {name: mean_curve(points) for name, points in {**other, **dq}.items()}
        report[folder] = {"images": len(paths), "curves": curves, "bd_rate": {}}
        click.echo(f"\n{folder}: {len(paths)} images; ladder {rungs}")
        header = "variant".ljust(14) + "".join(f"{'vs ' + n:>10}" for n in (*compared, variants[0]))
        click.echo(header + "   resid s/img   bpp / PSNR of each rung")
        for variant in variants:
            deltas = {n: evaluate.bd_rate(curves[n], curves[variant]) for n in (*compared, variants[0])}
            report[folder]["bd_rate"][variant] = deltas
            row = variant.ljust(14) + "".join(f"{_percent(deltas[n]):>10}" for n in (*compared, variants[0]))
            rates, quality = curves[variant]
            rungs_text = " ".join(f"{b:.3f}/{p:.2f}" for b, p in zip(rates, quality))
            click.echo(f"{row}   {seconds[variant] / len(paths):10.2f}   {rungs_text}")
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=1))


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


if __name__ == "__main__":
    main()
