"""A level added to a model (dqcodec train --add-level) measured from its training checkpoint, in float:
real .dq streams (bytes counted) and the decoded image, at the highest quality without the new level and at
every quality with it, with Pillow's JPEG on the same images in the same run.

    python scripts/new_level_check.py ~/dqcodec-runs/p10-stride4-ecvq/checkpoint.pt data/native --every 8

It skips `dqcodec export`: re-quantizing the weights of an already shipped base for a .dqw file is not
yet lossless for a grown model (see docs/design.md), and a proxy should measure the level, not that.
PSNR is of the mean squared error over the images (the worst images weigh most), bpp the mean.
"""

import math
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from dqcodec import codec, evaluate, registry


def mse_of(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--every", default=8, show_default=True, help="take every Nth image of the folder")
@click.option("--threads", default=2, show_default=True)
def main(checkpoint, folder, every, threads):
    torch.set_num_threads(threads)
    model = registry.from_checkpoint(torch.load(checkpoint, weights_only=True, map_location="cpu")["model"])
    qualities = model.config.qualities
    first_new = next(i for i, q in enumerate(qualities) if q[-1])
    measured = range(first_new - 1, len(qualities))  # the base's top quality, then the new level's
    paths = codec.image_files(folder)[::every]
    jpeg = evaluate.make_codec("jpeg")
    sums = {}
    for path in paths:
        image = Image.open(path).convert("RGB")
        pixels = np.asarray(image)
        x = codec.pad(codec.to_tensor(image))
        for index in measured:
            out = model.compress(x, index + 1)
            y = model.decompress(out["strings"], out["shape"], index + 1)["x_hat"]
            decoded = np.asarray(codec.to_image(y, image.height, image.width, "RGB"))
            bits = 8 * sum(len(s) for s in out["strings"])
            row = sums.setdefault(f"dq {'+'.join(map(str, qualities[index]))}", [0.0, 0.0])
            row[0] += bits / (image.width * image.height)
            row[1] += mse_of(pixels, decoded)
        for quality in (50, 70, 80, 90, 95):  # dqcodec eval's JPEG
            data = jpeg.encode(image, quality)
            row = sums.setdefault(f"jpeg {quality}", [0.0, 0.0])
            row[0] += 8 * len(data) / (image.width * image.height)
            row[1] += mse_of(pixels, np.asarray(jpeg.decode(data).convert("RGB")))
    click.echo(f"{len(paths)} images of {folder}, {checkpoint}")
    for name, (bpp, mse) in sums.items():
        click.echo(f"{name:16s} {bpp / len(paths):7.4f} bpp  {10 * math.log10(255**2 / (mse / len(paths))):6.2f} dB")


if __name__ == "__main__":
    main()
