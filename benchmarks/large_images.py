#!/usr/bin/env python3
"""Peak memory and time of encoding and decoding large images, lossy and lossless.

    python benchmarks/large_images.py data/native --sizes 1,4,12,24 --lossless-sizes 1,4

Each image is a mosaic of the photos in FOLDER (native-resolution crops) cut to the size asked for, in
megapixels, at 3:2. Every encode and decode runs in a fresh process (`dqcodec encode` / `decode`), and
the figures are that process's wall time and peak resident memory (ru_maxrss), next to those of a
process that only imports dqcodec and loads the model. Run it on an idle machine for the times.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dqcodec import codec

LOAD_ONLY = "import dqcodec; from dqcodec import zoo; zoo.load('{model}')"


def mosaic(folder: Path, megapixels: float) -> Image.Image:
    """A 3:2 image of about that many megapixels, tiled from the photos in folder."""
    width = int(math.sqrt(megapixels * 1e6 * 1.5)) // 16 * 16
    height = int(megapixels * 1e6 / width) // 16 * 16
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in codec.image_files(folder)]
    canvas = np.zeros((height, width, 3), np.uint8)
    i = 0
    for top in range(0, height, photos[0].shape[0]):
        for left in range(0, width, photos[0].shape[1]):
            photo = photos[i % len(photos)]
            i += 1
            h, w = min(photo.shape[0], height - top), min(photo.shape[1], width - left)
            canvas[top : top + h, left : left + w] = photo[:h, :w]
    return Image.fromarray(canvas)


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status:
        raise click.ClickException(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--sizes", default="1,4,12,24", help="megapixels, lossy")
@click.option("--lossless-sizes", default="1,4", help="megapixels, lossless")
@click.option("--model", default="dq-hier")
@click.option("--quality", type=int, help="lossy quality (default: the model's)")
def main(folder, sizes, lossless_sizes, model, quality):
    dq = str(Path(sys.executable).with_name("dqcodec"))
    base_seconds, base_mb = measure([sys.executable, "-c", LOAD_ONLY.format(model=model)])
    click.echo(f"import dqcodec and load {model}: {base_seconds:.1f} s, {base_mb:.0f} MB peak")
    click.echo(
        f"{'mode':9} {'MP':>6} {'size':>11} {'file bytes':>11} {'encode s':>9} {'encode MB':>10} {'decode s':>9} {'decode MB':>10}"
    )
    runs = [("lossy", float(s)) for s in sizes.split(",") if s] + [
        ("lossless", float(s)) for s in lossless_sizes.split(",") if s
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for mode, megapixels in runs:
            image = mosaic(folder, megapixels)
            source, coded, decoded = Path(tmp) / "in.png", Path(tmp) / "in.dq", Path(tmp) / "out.png"
            image.save(source, compress_level=1)
            options = ["--lossless"] if mode == "lossless" else (["-q", str(quality)] if quality else [])
            encode = measure([dq, "encode", str(source), "-o", str(coded), "--force", "--model", model, *options])
            decode = measure([dq, "decode", str(coded), "-o", str(decoded), "--force"])
            if mode == "lossless":
                assert np.array_equal(np.asarray(Image.open(decoded)), np.asarray(image)), (
                    "lossless round trip not exact"
                )
            click.echo(
                f"{mode:9} {image.width * image.height / 1e6:6.2f} {f'{image.width}x{image.height}':>11} {coded.stat().st_size:11d}"
                f" {encode[0]:9.1f} {encode[1]:10.0f} {decode[0]:9.1f} {decode[1]:10.0f}"
            )


if __name__ == "__main__":
    main()
