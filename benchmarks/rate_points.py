"""Choose a model's rate points: sweep bottom-group counts and encoder rate weights on
training images (never the held-out ones), and print the sweep and its upper RD hull.

    python benchmarks/rate_points.py runs/dq-hier/checkpoint.pt [--images 'data/train/*.png'] [--every 30]

Each (groups, weight) pair is coded for real; bpp counts the streams plus the 30-byte header.
"""

from __future__ import annotations

import glob

import click
import numpy as np
import torch
from PIL import Image

from dqcodec import codec, registry
from dqcodec.evaluate import metrics

GROUPS = [1, 2, 3, 4, 6, 8, 12, 16]
WEIGHTS = [0.0, 0.1, 0.3, 1.0, 3.0]
HEADER_BYTES = 30


def upper_hull(points):
    """Points not beaten by any other (lower or equal bpp with higher PSNR), by rate."""
    best, hull = -np.inf, []
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if point[1] > best:
            hull.append(point)
            best = point[1]
    return hull


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", default="data/train/*.png")
@click.option("--every", default=30, help="take every N-th image")
@click.option("--threads", default=2)
def main(checkpoint, images, every, threads):
    torch.set_num_threads(threads)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = registry.from_checkpoint(state.get("model", state))
    paths = sorted(glob.glob(images))[::every]
    pictures = [Image.open(p).convert("RGB") for p in paths]
    groups = [g for g in GROUPS if g <= model.levels[1].num_groups]
    model.config.qualities = [[model.levels[0].num_groups, g] + [0] * (model.num_levels - 2) for g in groups]
    model.config.rate_weights = [0.0] * len(groups)
    click.echo(f"{len(paths)} images; step {state.get('step', '?')}")
    points = []
    for quality, g in enumerate(groups, 1):
        for weight in WEIGHTS:
            rates, psnrs = [], []
            for image in pictures:
                x = codec.pad(codec.to_tensor(image))
                out = model.compress(x, quality, rate_weight=weight)
                x_hat = model.decompress(out["strings"], out["shape"], quality)["x_hat"]
                decoded = codec.to_image(x_hat, image.height, image.width, "RGB")
                rates.append(8 * (sum(map(len, out["strings"])) + HEADER_BYTES) / (image.width * image.height))
                psnrs.append(metrics(image, decoded)[0])
            point = (float(np.mean(rates)), float(np.mean(psnrs)), g, weight)
            points.append(point)
            click.echo(f"groups {g:2d} weight {weight:4}: {point[0]:.4f} bpp {point[1]:.2f} dB")
    click.echo("upper hull (bpp, dB, groups, weight):")
    for point in upper_hull(points):
        click.echo(f"  {point[0]:.4f} {point[1]:.2f} {point[2]:2d} {point[3]}")


if __name__ == "__main__":
    main()
