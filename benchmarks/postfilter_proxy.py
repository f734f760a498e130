"""Proxy for a learned post-filter on dq-3's residual qualities (issue 29): does a small CNN trained here for
minutes lift the decoded images enough to pay for its decode time?

    python benchmarks/postfilter_proxy.py data/heldout data/native data/sharp --train data/train

Training pairs: photos of --train (every --every-th), each coded at dq-2's quality 2 and then at three of
dq-3's residual steps, exactly as a dq-3 file decodes them (rate-distortion rounding, the difference
deblocked: ``residual.ResidualCodec``), against the original. The filter sees the decoded image and the
step, and adds a correction. Then, on each evaluation set, every rung's decoded image is filtered and
measured: the rates are the real streams' (the filter adds no bits), so the BD-rates against WebP, AVIF,
JPEG XL and JPEG (coded in the same run, cached as in benchmarks/residual_proxies.py) and against the
unfiltered curve are what shipping the filter would give, up to the decoder's rounding.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import residual_proxies
import residual_variants

from dqcodec import evaluate
from dqcodec.images import psnr

DQ3_STEPS = (116, 88, 72, 61, 52, 44, 37, 31, 26, 21, 17, 14, 11, 8)
BASE_QUALITY = 2


def dq3_rung(original: np.ndarray, base: np.ndarray, step: int) -> tuple[int, np.ndarray]:
    """The residual stream's bytes and decoded image of one dq-3 rung, as the library codes it."""
    data, decoded = residual_variants.shipped_dq3(original, base, step)
    return len(data), decoded


class PostFilter(nn.Module):
    """Three 3x3 convolutions over the decoded image and a plane of its step; the output is added."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, decoded: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in 0..1 and each one's step, (B,)."""
        plane = (steps.float() / 64).view(-1, 1, 1, 1).expand_as(decoded[:, :1])
        return decoded + self.body(torch.cat([decoded, plane], 1))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]


def filtered(model: PostFilter, image: np.ndarray, step: int) -> np.ndarray:
    with torch.no_grad():
        out = model(to_tensor(image), torch.tensor([step]))[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def training_pairs(
    paths: list[Path], cache: Path, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    pairs = []
    with click.progressbar(paths, label="coding training pairs") as bar:
        for path in bar:
            image = Image.open(path).convert("RGB")
            original = np.asarray(image)
            base = residual_proxies.lossy_bases(image, cache)[BASE_QUALITY][1]
            for step in rng.choice(DQ3_STEPS, 3, replace=False):
                pairs.append((dq3_rung(original, base, int(step))[1], original, int(step)))
    return pairs


def train(pairs, width: int, steps: int, crop: int, batch: int, seed: int, lr: float) -> PostFilter:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PostFilter(width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    started, recent, unfiltered = time.perf_counter(), [], []
    for number in range(1, steps + 1):
        inputs, targets, steps = [], [], []
        for _ in range(batch):
            decoded, original, step = pairs[rng.integers(len(pairs))]
            y, x = (int(rng.integers(0, s - crop + 1)) for s in decoded.shape[:2])
            window = np.s_[y : y + crop, x : x + crop]
            inputs.append(to_tensor(decoded[window]))
            targets.append(to_tensor(original[window]))
            steps.append(step)
        optimizer.zero_grad()
        decoded, original = torch.cat(inputs), torch.cat(targets)
        loss = ((model(decoded, torch.tensor(steps)) - original) ** 2).mean()
        loss.backward()
        unfiltered.append(((decoded - original) ** 2).mean().item())
        optimizer.step()
        schedule.step()
        recent.append(loss.item())
        if number % 200 == 0:
            mse, before = np.mean(recent[-200:]), np.mean(unfiltered[-200:])
            click.echo(
                f"step {number}: {10 * np.log10(1 / mse):.2f} dB on crops, {10 * np.log10(1 / before):.2f} unfiltered, "
                f"{time.perf_counter() - started:.0f} s"
            )
    return model


def evaluate_set(folder: str, model: PostFilter, cache: Path, every: int) -> dict:
    paths = sorted(Path(folder).glob("*.png"))[::every]
    plain, lifted, seconds = [], [], 0.0
    others = {name: [] for name in residual_proxies.OTHER_CODECS}
    for path in paths:
        image = Image.open(path).convert("RGB")
        original, pixels = np.asarray(image), image.width * image.height
        bases = residual_proxies.lossy_bases(image, cache)
        for name, points in residual_proxies.other_points(image, path.name, cache).items():
            others[name].append(points)
        base_bytes, base = bases[BASE_QUALITY]
        low = [(8 * bases[q][0] / pixels, psnr(original, bases[q][1])) for q in (1, 2)]
        plain_points, lifted_points = list(low), list(low)
        for step in DQ3_STEPS:
            size, decoded = dq3_rung(original, base, step)
            bpp = 8 * (base_bytes + 4 + size) / pixels
            started = time.perf_counter()
            better = filtered(model, decoded, step)
            seconds += time.perf_counter() - started
            plain_points.append((bpp, psnr(original, decoded)))
            lifted_points.append((bpp, psnr(original, better)))
        plain.append(plain_points)
        lifted.append(lifted_points)
    curves = {name: residual_proxies.mean_curve(points) for name, points in others.items()}
    curves["dq-3"], curves["filtered"] = residual_proxies.mean_curve(plain), residual_proxies.mean_curve(lifted)
    return {"images": len(paths), "curves": curves, "filter_seconds": seconds / (len(paths) * len(DQ3_STEPS))}


@click.command()
@click.argument("sets", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--train", "train_folder", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--train-every", default=5, show_default=True)
@click.option("--every", default=1, show_default=True, help="take every N-th image of each evaluation set")
@click.option("--width", default=16, show_default=True)
@click.option("--steps", default=1500, show_default=True)
@click.option("--crop", default=64, show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--cache", default=str(Path.home() / "dqcodec-runs" / "residual-cache"), show_default=True)
def main(sets, train_folder, train_every, every, width, steps, crop, batch, seed, lr, cache):
    torch.set_num_threads(2)
    cache_dir = Path(cache)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(train_folder).glob("*.png"))[::train_every]
    pairs = training_pairs(paths, cache_dir, np.random.default_rng(seed))
    started = time.perf_counter()
    model = train(pairs, width, steps, crop, batch, seed, lr)
    click.echo(f"trained {steps} steps in {time.perf_counter() - started:.0f} s on {len(pairs)} pairs")
    for folder in sets:
        report = evaluate_set(folder, model, cache_dir, every)
        curves = report["curves"]
        click.echo(f"\n{folder}: {report['images']} images; filter {report['filter_seconds']:.3f} s a rung")
        for name in ("dq-3", "filtered"):
            deltas = [
                f"vs {other} {evaluate.bd_rate(curves[other], curves[name]):+.1f}%"
                for other in (*residual_proxies.OTHER_CODECS, "dq-3")
            ]
            gains = np.array(curves["filtered"][1]) - np.array(curves["dq-3"][1])
            click.echo(f"{name:9s} " + "  ".join(deltas))
        click.echo("gain per rung (dB): " + " ".join(f"{g:+.2f}" for g in gains))


if __name__ == "__main__":
    main()
