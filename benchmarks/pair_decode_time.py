"""Decode times of pair files (issue 32): view 1 alone, both views, against a single file of view 1 at the
same quality, over a folder of pairs (``dqcodec eval --pairs``'s layout), in one process, on an idle machine.

    python benchmarks/pair_decode_time.py data/pairs -q 2 -q 6 -q 12 [--model dq-3] [--repeat 3]

Each time is the best of ``--repeat`` decodes after a warm-up; the backend is what ``dqcodec.decompress`` picks
(``DQCODEC_BACKEND``: torch when the process has imported it, which this script does, as decode_time.py's
"torch" path). The BLAS numpy ran on is printed first.
"""

from __future__ import annotations

import time

import click
import torch
from decode_time import blas_kernels  # type: ignore[import-not-found]

import dqcodec
from dqcodec import evaluate_pairs, pairs
from dqcodec.images import load_image


def best_time(work, repeat: int) -> float:
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-q", "--quality", "qualities", type=int, multiple=True, default=(2, 6, 12), show_default=True)
@click.option("--model", default="dq-3", show_default=True)
@click.option("--repeat", default=3, show_default=True)
def main(folder, qualities, model, repeat):
    from pathlib import Path

    click.echo(f"BLAS: {blas_kernels()}; torch threads {torch.get_num_threads()}")
    click.echo("pair                          q  coding      view 1   both   single  view1/single")
    ratios = {q: [] for q in qualities}
    for pair in evaluate_pairs.find_pairs(Path(folder)):
        views = [load_image(path) for path in pair.paths]
        for quality in qualities:
            data = pairs.compress_pair(views[0], views[1], quality=quality, model=model)
            single = dqcodec.compress(views[1], quality=quality, model=model)
            view_1 = best_time(lambda data=data: pairs.decompress_pair(data, (1,)), repeat)
            both = best_time(lambda data=data: pairs.decompress_pair(data), repeat)
            alone = best_time(lambda single=single: dqcodec.decompress(single), repeat)
            ratios[quality].append(view_1 / alone)
            coding = pairs.unpack(data).coding.name.lower()
            click.echo(
                f"{pair.name:28} {quality:2}  {coding:9} {view_1:7.3f} {both:7.3f} {alone:7.3f}  {view_1 / alone:6.2f}",
            )
    for quality, values in ratios.items():
        click.echo(
            f"quality {quality}: view 1 alone / single file, mean {sum(values) / len(values):.2f}, max {max(values):.2f}"
        )


if __name__ == "__main__":
    main()
