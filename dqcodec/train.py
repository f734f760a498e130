"""Training: random crops from a folder of images, progressive crop sizes, Adam,
resumable checkpoints, a click progress bar and a CSV log.

    python -m dqcodec.train DATA_DIR [DATA_DIR ...] --out runs/NAME --schedule 64x16:6000,128x8:2000

The loss is CompressAI's rate-distortion loss (λ·255²·MSE + bpp, where bpp is the
cross-entropy of the code indices under the learned priors, i.e. the exact rate),
plus the quantizers' commitment loss. Every crop draws a quality at random, so the
one model learns every rate point (nested dropout over the bottom groups).

``--arch`` picks the architecture (``registry.ARCHITECTURES``): dq-hier, dq-2, or
``bmshj2018-factorized`` or ``bmshj2018-hyperprior`` to train CompressAI's model
of that name instead, with the same data, crops, schedule and loss, plus CompressAI's
auxiliary loss on its entropy bottleneck's quantiles (their own Adam, as in CompressAI's
example trainer).
"""

from __future__ import annotations

import copy
import csv
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
from compressai.losses import RateDistortionLoss
from PIL import Image

from . import registry, zoo
from .codec import image_files
from .model import DQConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class Stage:
    crop: int
    batch: int
    steps: int


def parse_schedule(text: str) -> list[Stage]:
    """'64x16:6000,128x8:2000' -> stages of (crop, batch, steps)."""
    stages = []
    for part in text.split(","):
        try:
            size, steps = part.split(":")
            crop, batch = size.split("x")
            stages.append(Stage(int(crop), int(batch), int(steps)))
        except ValueError:
            raise click.BadParameter(f"schedule entry {part!r} is not CROPxBATCH:STEPS") from None
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    for stage in stages:
        if step < stage.steps:
            return stage
        step -= stage.steps
    return stages[-1]


def load_images(folder: Path, min_side: int) -> list[np.ndarray]:
    images = []
    for path in image_files(folder):
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
        if min(array.shape[:2]) >= min_side:
            images.append(array)
    if not images:
        raise click.ClickException(f"no images of at least {min_side} px found in {folder}")
    return images


def random_batch(images: list[np.ndarray], crop: int, batch: int, rng: random.Random) -> torch.Tensor:
    crops = []
    for _ in range(batch):
        image = images[rng.randrange(len(images))]
        h, w = image.shape[:2]
        top, left = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
        patch = image[top : top + crop, left : left + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        crops.append(np.ascontiguousarray(patch))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)


def sample_qualities(count: int, batch: int, keep_all: float, quality: int | None = None) -> torch.Tensor:
    """The quality (0-based) each crop is coded at: the last (every group) with probability keep_all,
    else a random one (or, given ``quality``, that one)."""
    if quality is not None:
        return torch.full((batch,), quality - 1)
    drawn = torch.randint(count, (batch,))
    return torch.where(torch.rand(batch) < keep_all, count - 1, drawn)


def rate_distortion(output: dict, x: torch.Tensor, lmbdas: torch.Tensor) -> dict:
    """CompressAI's rate-distortion loss with a λ per crop: mean of λ·255²·MSE + bpp over the crops."""
    pixels = x.shape[-2] * x.shape[-1]
    bpp = sum(-torch.log2(l).flatten(1).sum(1) for l in output["likelihoods"].values()) / pixels
    mse = (output["x_hat"] - x).pow(2).flatten(1).mean(1)
    return {"loss": (lmbdas * 255**2 * mse + bpp).mean(), "bpp_loss": bpp.mean(), "mse_loss": mse.mean()}


def parse_lmbda(text: str) -> list[float]:
    """'0.01' (every quality) or '0.0018,0.0035,...' (one per quality)."""
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number or a list of numbers", param_hint="--lmbda") from None


def forward(model, x: torch.Tensor, groups: torch.Tensor | None, bf16: bool, channels_last: bool) -> dict:
    """The model's training output for crops x (a DQ model keeps ``groups`` bottom groups per crop),
    under bfloat16 autocast if asked, with x_hat and the likelihoods back in float32 for the loss."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = model(x) if groups is None else model(x, groups)
    output["x_hat"] = output["x_hat"].float()
    output["likelihoods"] = {k: v.float() for k, v in output["likelihoods"].items()}
    return output


def freeze_all_but_pixels(model) -> None:
    if not getattr(model, "lossless", False):
        raise click.ClickException("lossless training needs a dq model with a pixel likelihood")
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("pixels.")


def learning_rate(step: int, total: int, base: float) -> float:
    """Linear warm-up over 300 steps, constant, then cosine decay to a tenth over the last 30%."""
    if step < 300:
        return base * (step + 1) / 300
    start = int(0.7 * total)
    if step < start:
        return base
    progress = (step - start) / max(1, total - start)
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def drop_rows_after(log_path: Path, step: int) -> None:
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    log_path.write_text("".join(kept))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def optimizers(model, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Adam on the trainable weights; a second Adam (lr 1e-3) on entropy-bottleneck quantiles, if any."""
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    aux = [p for name, p in named.items() if name.endswith(".quantiles")]
    main = [p for name, p in named.items() if not name.endswith(".quantiles")]
    return torch.optim.Adam(main, lr=lr), (torch.optim.Adam(aux, lr=1e-3) if aux else None)


def train(
    data: Path | list[Path],
    out: Path,
    schedule: list[Stage],
    lmbda: float | list[float],
    lr: float,
    model,
    checkpoint_minutes: float,
    seed: int,
    keep_all: float = 0.0,
    until: int | None = None,
    lossless: bool = False,
    quality: int | None = None,
    bf16: bool = False,
    channels_last: bool = False,
) -> Path:
    """Train ``model`` (a DQ codec or a baseline, from ``registry.build``), or resume the
    checkpoint in ``out`` if there is one. Seed torch before building the model.

    ``lossless`` trains only a DQ model's pixel likelihood, on the lossless objective:
    code bits plus pixel bits (the rest of the model is frozen, so its lossy coding and
    its code bits stay exactly as they were). ``quality`` fixes the codes every crop is
    coded with (by default each crop draws a quality). ``bf16`` runs the forward pass under
    ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the quantizers stay in float32);
    ``channels_last`` keeps the model and the crops in that memory format."""
    out.mkdir(parents=True, exist_ok=True)
    total_steps = sum(s.steps for s in schedule)
    last_step = min(total_steps, until or total_steps)
    step, wall = 0, 0.0
    rng = random.Random(seed)
    ckpt_path = out / CHECKPOINT
    state = torch.load(ckpt_path, weights_only=True) if ckpt_path.exists() else None
    if state:
        model = zoo.from_checkpoint(state["model"])
    if lossless:
        freeze_all_but_pixels(model)
    elif getattr(model, "lossless", False):
        # its bits would enter the lossy loss, and it reads the decoder that lossy training changes
        model.drop_pixel_model()
        click.echo("the model's pixel likelihood is dropped: it reads the decoder this lossy training changes (train one again with --lossless)")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, aux_optimizer = optimizers(model, lr)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        if aux_optimizer:
            aux_optimizer.load_state_dict(state["aux_optimizer"])
        step, wall = state["step"], state["wall_seconds"]
        rng.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        click.echo(f"resumed {ckpt_path} at step {step}")

    folders = [data] if isinstance(data, Path) else list(data)
    images = [image for folder in folders for image in load_images(folder, max(s.crop for s in schedule))]
    names = ", ".join(map(str, folders))
    click.echo(f"{len(images)} training images from {names}; {total_steps} steps; {sum(p.numel() for p in model.parameters())} parameters")
    is_dq = registry.is_dq(model)
    lmbdas = torch.tensor([0.0] if lossless else (lmbda if isinstance(lmbda, list) else [lmbda]))
    qualities = torch.tensor(model.config.qualities) if is_dq else None
    if is_dq and len(lmbdas) not in (1, len(qualities)):
        raise click.BadParameter(f"give one λ, or one per quality ({len(qualities)})", param_hint="--lmbda")
    if not is_dq and len(lmbdas) != 1:
        raise click.BadParameter("a baseline trains at one λ", param_hint="--lmbda")
    criterion = RateDistortionLoss(lmbda=float(lmbdas[0]))
    log_path = out / "log.csv"
    drop_rows_after(log_path, step)  # rows logged after the checkpoint we resumed from
    new_log = not log_path.exists()
    model.train()
    if lossless:
        model.eval()  # the frozen quantizers must not update their codebooks
        model.pixels.train()

    def checkpoint():
        save_atomic(
            {
                "model": zoo.checkpoint_of(model),
                "optimizer": optimizer.state_dict(),
                "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer else None,
                "step": step,
                "wall_seconds": wall,
                "python_rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "schedule": [s.__dict__ for s in schedule],
                "lmbda": lmbda,
                "keep_all": keep_all,
                "quality": quality,
            },
            ckpt_path,
        )

    last_save = time.monotonic()
    status = {"text": ""}
    with open(log_path, "a", newline="") as log_file, click.progressbar(
        length=total_steps, label="training", item_show_func=lambda _: status["text"], show_pos=True
    ) as bar:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "crop", "loss", "bpp", "mse", "psnr", "wall_seconds"])
        bar.update(step)
        while step < last_step:
            started = time.monotonic()
            stage = stage_at(schedule, step)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, lr)
            x = random_batch(images, stage.crop, stage.batch, rng)
            if is_dq:
                drawn = sample_qualities(len(qualities), stage.batch, keep_all, quality)
                output = forward(model, x, qualities[drawn], bf16, channels_last)
                losses = rate_distortion(output, x, lmbdas[drawn % len(lmbdas)])
                loss = losses["loss"] + output["vq_loss"]
            else:
                output = forward(model, x, None, bf16, channels_last)
                losses = criterion(output, x)
                loss = losses["loss"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if aux_optimizer:
                aux_optimizer.zero_grad()
                model.aux_loss().backward()
                aux_optimizer.step()
            step += 1
            wall += time.monotonic() - started

            mse = losses["mse_loss"].item()
            psnr = 10 * math.log10(1 / max(mse, 1e-10))
            status["text"] = f"loss {loss.item():.3f} bpp {losses['bpp_loss'].item():.3f} psnr {psnr:.2f}"
            if step % 10 == 0:
                log.writerow([step, stage.crop, f"{loss.item():.5f}", f"{losses['bpp_loss'].item():.5f}", f"{mse:.6f}", f"{psnr:.3f}", f"{wall:.1f}"])
                log_file.flush()
            bar.update(1)
            if time.monotonic() - last_save > checkpoint_minutes * 60 or step == last_step:
                checkpoint()
                last_save = time.monotonic()
    return ckpt_path


@click.command(context_settings={"show_default": True})
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="run folder (checkpoint.pt, log.csv); an existing checkpoint there is resumed")
@click.option("--schedule", default="64x16:6000,128x8:2000", help="progressive crops: CROPxBATCH:STEPS,...")
@click.option("--lmbda", default="0.01", help="rate-distortion trade-off: λ·255²·MSE + bpp; one λ, or (dq) one per quality, comma-separated, for crops coded at that quality")
@click.option("--lr", default=3e-4)
@click.option("--channels", type=int, help="dq only: channels of the transforms (default: the architecture's)")
@click.option("--residual-blocks", type=int, help="dq only: residual blocks in the synthesis (default: the architecture's)")
@click.option("--plain-vq", is_flag=True, help="one shared projection and codebook per level (the ablation)")
@click.option("--checkpoint-minutes", default=2.0)
@click.option("--seed", default=0)
@click.option("--keep-all", default=0.0, help="fraction of crops that keep every bottom group (the rest draw a quality)")
@click.option("--until", type=int, help="stop after this step (a checkpoint to resume from, e.g. with other options)")
@click.option("--init", "init_model", help="start from the weights of this shipped model (fresh optimizer), e.g. to train on")
@click.option("--arch", type=click.Choice(list(registry.ARCHITECTURES)), default="dq-hier", help="a DQ architecture, or a CompressAI baseline")
@click.option("--size", default=3, help="baselines only: the CompressAI zoo quality whose channel counts to use")
@click.option("--lossless", is_flag=True, help="train only the pixel likelihood of the --init model (added if it has none), on code + pixel bits")
@click.option("--mixtures", default=3, help="with --lossless: logistic components of a new pixel likelihood")
@click.option("--pixel-hidden", type=int, help="with --lossless: channels of a new pixel likelihood, or widen the --init model's to this many")
@click.option("-q", "--quality", type=int, help="dq only: code every crop at this quality (default: each crop draws one)")
@click.option("--bf16", is_flag=True, help="forward pass in bfloat16 autocast (quantizers in float32); about 2x faster on CPUs with AVX-512 BF16")
@click.option("--channels-last", is_flag=True, help="channels-last memory format for the model and the crops")
def main(data, out, schedule, lmbda, lr, channels, residual_blocks, plain_vq, checkpoint_minutes, seed, keep_all, until, init_model, arch, size, lossless, mixtures, pixel_hidden, quality, bf16, channels_last):
    """Train a DQ codec (or, with --arch, a CompressAI baseline) on the images in the DATA folders
    (e.g. data/train data/train-native); every crop draws an image from all of them alike."""
    if lossless and not init_model and not (out / CHECKPOINT).exists():
        raise click.UsageError("--lossless needs --init MODEL (or a checkpoint in --out to resume)")
    if pixel_hidden and not (lossless and init_model):
        raise click.UsageError("--pixel-hidden applies to a pixel likelihood trained with --lossless --init MODEL")
    torch.manual_seed(seed)
    if init_model:
        model = copy.deepcopy(zoo.load(init_model)[0]).train()
        if lossless and registry.is_dq(model):  # anything else gets train()'s clear refusal
            if not model.lossless:
                model.add_pixel_model(mixtures, pixel_hidden or DQConfig.pixel_hidden)
            elif pixel_hidden:
                model.widen_pixel_model(pixel_hidden)
    else:
        model = registry.build(arch, channels=channels, depthwise=not plain_vq, residual_blocks=residual_blocks, size=size)
    if quality is not None and not (registry.is_dq(model) and 1 <= quality <= model.num_qualities):
        raise click.BadParameter("must be one of the dq model's qualities", param_hint="--quality")
    lmbdas = parse_lmbda(lmbda)
    path = train(data, out, parse_schedule(schedule), lmbdas if len(lmbdas) > 1 else lmbdas[0], lr, model, checkpoint_minutes, seed, keep_all, until, lossless, quality, bf16, channels_last)
    click.echo(f"checkpoint: {path}")


if __name__ == "__main__":
    main()
