"""Every dq rate point against JPEG (Pillow, 4:2:0, a quality sweep) on the same images, in one run.

    python benchmarks/rd.py [FOLDER] [--model NAME] [--threads 2] [--json OUT]

Prints, per rate point, mean bpp, mean PSNR (RGB) and mean encode / decode seconds per image; then,
for each dq point, JPEG's PSNR at the same mean bpp (interpolated on JPEG's mean curve) and the gap.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import click
import torch
from PIL import Image

from dqcodec import zoo
from dqcodec.evaluate import dq_point, interpolate_psnr, pillow_point

JPEG_QUALITIES = [2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95]


def mean_rows(points):
    grouped = defaultdict(list)
    for p in points:
        grouped[(p.codec, p.setting)].append(p)
    rows = []
    for (name, setting), group in grouped.items():
        n = len(group)
        rows.append(
            {
                "codec": name,
                "setting": setting,
                "bpp": sum(p.bpp for p in group) / n,
                "psnr": sum(p.psnr for p in group) / n,
                "encode_s": sum(p.encode_seconds for p in group) / n,
                "decode_s": sum(p.decode_seconds for p in group) / n,
            }
        )
    return rows


@click.command()
@click.argument("folder", default="data/heldout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", default=zoo.DEFAULT_MODEL)
@click.option("--threads", default=2)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write per-image points and means")
def main(folder, model, threads, json_out):
    torch.set_num_threads(threads)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".ppm"})
    if not paths:
        raise click.ClickException(f"no images in {folder}")
    codec_model, _ = zoo.load(model)
    points = []
    with click.progressbar(paths, label=f"{len(paths)} images", file=sys.stderr) as bar:
        for path in bar:
            image = Image.open(path).convert("RGB")
            for q in range(1, codec_model.num_qualities + 1):
                points.append(dq_point(image, q, path.name, model))
            for q in JPEG_QUALITIES:
                points.append(pillow_point(image, "JPEG", q, path.name, subsampling=2))
    rows = mean_rows(points)
    click.echo(f"{len(paths)} images from {folder}; torch threads {threads}; model {model}")
    click.echo(f"{'codec':6} {'q':>3} {'bpp':>8} {'PSNR':>7} {'enc s':>7} {'dec s':>7}")
    for r in rows:
        click.echo(f"{r['codec']:6} {r['setting']:>3} {r['bpp']:8.4f} {r['psnr']:7.2f} {r['encode_s']:7.3f} {r['decode_s']:7.3f}")
    jpeg_curve = [(r["bpp"], r["psnr"]) for r in rows if r["codec"] == "jpeg"]
    click.echo("dq against JPEG at the same mean bpp:")
    for r in rows:
        if r["codec"] == "dq":
            ref = interpolate_psnr(jpeg_curve, r["bpp"])
            verdict = "outside JPEG's range" if ref is None else f"JPEG {ref:.2f} dB, dq {r['psnr'] - ref:+.2f} dB"
            click.echo(f"  quality {r['setting']}: {r['bpp']:.4f} bpp, {r['psnr']:.2f} dB; {verdict}")
    if json_out:
        json_out.write_text(json.dumps({"means": rows, "points": [asdict(p) for p in points]}, indent=1))


if __name__ == "__main__":
    main()
