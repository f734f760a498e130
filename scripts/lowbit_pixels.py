"""Start a low-bit pixel likelihood (lossless format 2, issue 31) from a shipped model's fixed-point one: choose its
activation grids on training crops (``pixel_model.calibrate_grids``) and write a checkpoint that `dqcodec train
--lossless --init` trains with its quantization in the loop. It prints the crops' pixel bits per dimension with
the float likelihood and with the low-bit one before training.

    python scripts/lowbit_pixels.py --base dq-3 --data data/train --out ~/dqcodec-runs/lowbit-pixels/init.pt
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import click
import torch

from dqcodec import zoo
from dqcodec.model import DQCodec
from dqcodec.pixel_model import calibrate_grids
from dqcodec.training.data import load_images, random_batch


def decoder_outputs(model: DQCodec, x: torch.Tensor, groups: tuple[int, ...]):
    """What the pixel likelihood reads for crops x: the synthesis' last features and x_hat, and x in grey levels."""
    captured = []
    context = model.pixels.context
    model.pixels.context = lambda features, x_hat: captured.append((features, x_hat)) or context(features, x_hat)
    try:
        with torch.no_grad():
            model(x, torch.tensor(groups).expand(x.shape[0], -1))
    finally:
        del model.pixels.context
    features, x_hat = captured[0]
    return features, x_hat, torch.round(x * 255)


def pixel_bits(model: DQCodec, batches) -> float:
    """Pixel bits per dimension of the crops."""
    bits, dims = 0.0, 0
    with torch.no_grad():
        for features, x_hat, x in batches:
            log_prob = model.pixels.log_prob(model.pixels.context(features, x_hat), x_hat, x)
            bits += float(-log_prob.sum()) / float(torch.log(torch.tensor(2.0)))
            dims += x.numel()
    return bits / dims


@click.command()
@click.option("--base", default="dq-3", show_default=True, help="the installed model whose pixel likelihood to lower")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--batches", default=8, show_default=True)
@click.option("--crop", default=128, show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quantile", default=1.0, show_default=True, help="of activation magnitudes each grid holds")
def main(base: str, data: Path, out: Path, batches: int, crop: int, batch: int, seed: int, quantile: float) -> None:
    if out.exists():
        raise click.ClickException(f"{out} exists; remove it to calibrate again")
    model = zoo.load(base)[0]
    if model.pixels is None or model.config.pixel_grids:
        raise click.ClickException(f"{base} has no fixed-point pixel likelihood to lower")
    torch.manual_seed(seed)
    rng, images = random.Random(seed), load_images(data, crop)
    groups = model.ladder.resolve(lossless=True).groups
    crops = [decoder_outputs(model, random_batch(images, crop, batch, rng), groups) for _ in range(batches)]
    grids = calibrate_grids(model.pixels, crops, quantile)
    lowered = DQCodec(dataclasses.replace(model.config, pixel_grids=grids)).eval()
    lowered.load_state_dict(model.state_dict())
    click.echo(f"grids: {grids}")
    float_bits, lowbit_bits = pixel_bits(model, crops), pixel_bits(lowered, crops)
    click.echo(
        f"pixel bits/dim of {batches} x {batch} crops of {crop} px: float {float_bits:.4f}, low-bit {lowbit_bits:.4f}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": zoo.checkpoint_of(lowered)}, out)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
