"""Every dq rate point against JPEG (Pillow, 4:2:0, a quality sweep) on the same images, in one run.

    python benchmarks/rd.py [FOLDER] [--model NAME] [--effort 0 [--effort 1 ...]] [--threads 2] [--json OUT]

Prints, per rate point, mean bpp, PSNR (RGB) and encode / decode seconds per image; then, for each
dq point (at each encoder effort asked for), JPEG's PSNR at the same mean bpp (interpolated on
JPEG's mean curve) and the gap; then the encode and decode time of examples/photo.png (768x512)
at the model's default quality, best of three.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click
import torch
from PIL import Image

import dqcodec
from dqcodec import codec, evaluate, zoo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.png"


def best_of_three(fn):
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


@click.command()
@click.argument("folder", default="data/heldout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", default=zoo.DEFAULT_MODEL)
@click.option(
    "--effort",
    "efforts",
    type=click.IntRange(0, len(codec.EFFORT_STEPS) - 1),
    multiple=True,
    default=[0],
    show_default=True,
)
@click.option("--threads", default=2)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write per-image points and means"
)
def main(folder, model, efforts, threads, json_out):
    torch.set_num_threads(threads)
    efforts = sorted(set(efforts))
    paths = codec.image_files(folder)
    if not paths:
        raise click.ClickException(f"no images in {folder}")
    dq_names = [f"dq-e{e}" if e else "dq" for e in efforts]
    codecs = [evaluate.make_codec(name, model) for name in dq_names] + [evaluate.make_codec("jpeg")]
    points = []
    with click.progressbar(paths, label=f"{len(paths)} images", file=sys.stderr) as bar:
        for path in bar:
            image = Image.open(path).convert("RGB")
            for c in codecs:
                points.extend(evaluate.measure(c, image, s, path.name) for s in c.settings)
    summaries = {c.name: evaluate.summarize(c, [p for p in points if p.codec == c.name]) for c in codecs}

    click.echo(f"{len(paths)} images from {folder}; torch threads {threads}; model {model}")
    click.echo(f"{'codec':6} {'q':>3} {'bpp':>8} {'PSNR':>7} {'enc s':>7} {'dec s':>7}")
    for name, s in summaries.items():
        r = s.results
        for i, setting in enumerate(s.settings):
            click.echo(
                f"{name:6} {setting:>3} {r['bpp'][i]:8.4f} {r['psnr-rgb'][i]:7.2f} {r['encoding_time'][i]:7.3f} {r['decoding_time'][i]:7.3f}"
            )
    jpeg = summaries["jpeg"].results
    jpeg_curve = list(zip(jpeg["bpp"], jpeg["psnr-rgb"]))
    for name in dq_names:
        click.echo(f"{name} against JPEG at the same mean bpp:")
        dq = summaries[name].results
        for q, bpp, psnr in zip(summaries[name].settings, dq["bpp"], dq["psnr-rgb"]):
            ref = evaluate.interpolate_psnr(jpeg_curve, bpp)
            if ref is None:
                end, side = (
                    (min(jpeg_curve), "below JPEG's lowest")
                    if bpp < min(jpeg_curve)[0]
                    else (max(jpeg_curve), "above JPEG's highest")
                )
                verdict = f"{side} rate ({end[0]:.4f} bpp, {end[1]:.2f} dB)"
            else:
                verdict = f"JPEG {ref:.2f} dB, dq {psnr - ref:+.2f} dB"
            click.echo(f"  quality {q}: {bpp:.4f} bpp, {psnr:.2f} dB; {verdict}")

    image = Image.open(EXAMPLE).convert("RGB")
    quality = zoo.load(model)[0].config.default_quality
    for effort in efforts:
        encode_s, data = best_of_three(lambda e=effort: dqcodec.compress(image, quality=quality, model=model, effort=e))
        decode_s, _ = best_of_three(lambda d=data: dqcodec.decompress(d))
        click.echo(
            f"{EXAMPLE.name} {image.width}x{image.height} at quality {quality}, effort {effort}: "
            f"encode {encode_s:.3f} s, decode {decode_s:.3f} s (best of 3)"
        )
    if json_out:
        json_out.write_text(
            json.dumps(
                {
                    "summaries": {k: v.as_compressai_json() for k, v in summaries.items()},
                    "points": [asdict(p) for p in points],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
