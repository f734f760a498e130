"""Mean decode time of a model's .dq files over a folder, one quality at a time, as `dqcodec eval` times
it (one decode per file, after one warm-up decode), for A/B runs of two commits on an idle machine.

    python benchmarks/decode_time.py data/native --quality 6 [--model dq-2] [--threads 2]
"""

from __future__ import annotations

import time

import click
import torch
from PIL import Image

import dqcodec
from dqcodec import codec, zoo


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-q", "--quality", "qualities", type=int, multiple=True, default=[6], show_default=True)
@click.option("--model", default=zoo.DEFAULT_MODEL, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(folder, qualities, model, threads):
    torch.set_num_threads(threads)
    images = [Image.open(path).convert("RGB") for path in codec.image_files(folder)]
    for quality in qualities:
        files = [dqcodec.compress(image, model=model, quality=quality) for image in images]
        dqcodec.decompress(files[0])
        seconds = []
        for data in files:
            started = time.perf_counter()
            dqcodec.decompress(data)
            seconds.append(time.perf_counter() - started)
        size = f"{images[0].width}x{images[0].height}" if len({im.size for im in images}) == 1 else "mixed sizes"
        click.echo(
            f"{model} quality {quality}: mean decode {sum(seconds) / len(seconds):.3f} s, max {max(seconds):.3f} s over {len(files)} files ({size}), {threads} threads"
        )


if __name__ == "__main__":
    main()
