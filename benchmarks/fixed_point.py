"""What the exact arithmetic's weight precision costs in rate: real files at several precisions.

    python benchmarks/fixed_point.py [FOLDER] [--every 4] [--weight-bits 6,8,10,14]

Codes every ``--every``-th image of FOLDER at qualities 1, 4 and 6 and losslessly, with the
exact networks' weights rounded to 2^-b for each b asked for (activations stay at 2^-12), and
prints the total bytes of each against the shipped precision (the last b). Files written at another
precision are not readable by the shipped decoder: this only measures what the rounding costs.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from PIL import Image

import dqcodec
from dqcodec import codec, exact


def total_bytes(images: list[np.ndarray], **options) -> int:
    return sum(len(dqcodec.compress(image, **options)) for image in images)


@click.command()
@click.argument("folder", default="data/heldout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--every", default=4, show_default=True)
@click.option("--weight-bits", default="6,8,10,14", show_default=True)
def main(folder, every, weight_bits):
    images = [np.asarray(Image.open(p).convert("RGB")) for p in codec.image_files(folder)[::every]]
    bits = [int(b) for b in weight_bits.split(",")]
    shipped = exact.WEIGHT_FRAC
    kinds = {"q1": {"quality": 1}, "q4": {"quality": 4}, "q6": {"quality": 6}, "lossless": {"lossless": True}}
    sizes = {}
    try:
        for b in bits:
            exact.WEIGHT_FRAC = b
            sizes[b] = {name: total_bytes(images, **options) for name, options in kinds.items()}
            click.echo(f"weights at 2^-{b}: " + ", ".join(f"{k} {v} B" for k, v in sizes[b].items()), err=True)
    finally:
        exact.WEIGHT_FRAC = shipped
    reference = sizes[bits[-1]]
    click.echo(f"{len(images)} images of {folder}; bytes against weights at 2^-{bits[-1]}\n")
    click.echo("| weights | " + " | ".join(kinds) + " |")
    click.echo("|---|" + "---|" * len(kinds))
    for b in bits:
        cells = [f"{sizes[b][k]} ({100 * (sizes[b][k] / reference[k] - 1):+.2f}%)" for k in kinds]
        click.echo(f"| 2^-{b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
