"""Training throughput and the quality it buys: fp32, bfloat16 autocast, and bfloat16 with channels-last.

    python benchmarks/train_speed.py [TRAIN] [HELDOUT] [--minutes 6] [--every 4]

For each setting: seconds per Adam step of a fresh dq-hier-sized model on 8 crops of 128x128 (the
median of 10 after 2 warm-up steps), then a fresh model (same seed) trained for ``--minutes`` of wall
time on 64x64 crops in batches of 16 (lambda 0.01, lr 3e-4, every crop drawing a quality), coded as
real files at quality 4 and 6 on every ``--every``-th held-out image: total bpp and mean PSNR.
Run it on an idle machine: it times the whole process.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import click
import numpy as np
import torch
from compressai.losses import RateDistortionLoss
from PIL import Image

from dqcodec import codec
from dqcodec.model import DQCodec, DQConfig
from dqcodec.training import data, objective

SETTINGS = {"fp32": (False, False), "bf16": (True, False), "bf16+channels-last": (True, True)}


def step_fn(model, criterion, optimizer, bf16, channels_last):
    qualities = torch.tensor(model.config.qualities)

    def step(x):
        output = objective.forward(
            model, x, qualities[data.sample_qualities(len(qualities), x.shape[0], 0.0)], bf16, channels_last
        )
        loss = criterion(output, x)["loss"] + output["vq_loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def fresh(channels_last):
    torch.manual_seed(0)
    model = DQCodec(DQConfig(qualities=[[4, g] for g in (1, 2, 4, 6, 8, 12)], rate_weights=[0.0] * 6)).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=3e-4)


def coded(model, images, quality):
    model.eval()
    bits = pixels = 0
    psnr = []
    with torch.no_grad():
        for image in images:
            x = codec.pad(codec.to_tensor(Image.fromarray(image)))
            out = model.compress(x, quality)
            x_hat = model.decompress(out["strings"], out["shape"], quality)["x_hat"]
            decoded = codec.to_image(x_hat, *image.shape[:2], "RGB")
            bits += 8 * sum(map(len, out["strings"]))
            pixels += image.shape[0] * image.shape[1]
            psnr.append(10 * np.log10(255**2 / np.mean((np.asarray(decoded, dtype=float) - image) ** 2)))
    model.train()
    return bits / pixels, float(np.mean(psnr))


@click.command()
@click.argument("train_dir", default="data/train", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("heldout", default="data/heldout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--minutes", default=6.0, show_default=True)
@click.option("--every", default=4, show_default=True)
def main(train_dir, heldout, minutes, every):
    torch.set_num_threads(2)
    images = data.load_images(train_dir, 128)
    evaluation = [np.asarray(Image.open(p).convert("RGB")) for p in codec.image_files(heldout)[::every]]
    criterion = RateDistortionLoss(lmbda=0.01)
    rows = []
    for name, (bf16, channels_last) in SETTINGS.items():
        model, optimizer = fresh(channels_last)
        step = step_fn(model, criterion, optimizer, bf16, channels_last)
        rng = random.Random(0)
        times = []
        for i in range(12):
            x = data.random_batch(images, 128, 8, rng)
            started = time.perf_counter()
            step(x)
            if i >= 2:
                times.append(time.perf_counter() - started)
        model, optimizer = fresh(channels_last)
        step = step_fn(model, criterion, optimizer, bf16, channels_last)
        rng, steps, started = random.Random(0), 0, time.perf_counter()
        while time.perf_counter() - started < minutes * 60:
            step(data.random_batch(images, 64, 16, rng))
            steps += 1
        q4, q6 = coded(model, evaluation, 4), coded(model, evaluation, 6)
        rows.append((name, statistics.median(times), steps, q4, q6))
        click.echo(
            f"{name}: {statistics.median(times):.3f} s/step, {steps} steps in {minutes} min, q4 {q4}, q6 {q6}", err=True
        )
    click.echo(f"{len(evaluation)} held-out images; {minutes} minutes of training each, from the same seed\n")
    click.echo("| setting | s per step (8x128²) | steps in equal time (16x64²) | q4 bpp / PSNR | q6 bpp / PSNR |")
    click.echo("|---|---|---|---|---|")
    for name, seconds, steps, q4, q6 in rows:
        click.echo(f"| {name} | {seconds:.3f} | {steps} | {q4[0]:.3f} / {q4[1]:.2f} | {q6[0]:.3f} / {q6[1]:.2f} |")


if __name__ == "__main__":
    main()
