"""``dqcodec train``'s options: parsed into one ``Options``, which builds (or loads) the model and the
``TrainConfig`` that ``train`` runs."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from .. import extras, registry, surgery, zoo
from ..errors import MissingExtraError, ModelError
from ..levels import LevelConfig
from ..model import DQConfig
from .checkpoints import CHECKPOINT
from .config import TrainConfig
from .loop import train
from .modes import has_pixels, mode_for
from .objective import parse_schedule


def parse_level(text: str) -> LevelConfig:
    """'16x64x4' or '16x64x4x8' -> a level of 16 groups of 64 codewords of 4 dimensions (and 8 hidden
    channels per group in its prior)."""
    try:
        values = [int(v) for v in text.split("x")]
        if len(values) in (3, 4) and min(values) > 0:
            return LevelConfig(*values)
    except ValueError:
        pass
    raise click.BadParameter(f"{text!r} is not GROUPSxCODEBOOKxDIM[xHIDDEN]", param_hint="--add-level")


def parse_groups(text: str) -> list[int]:
    """'2,4,8,16' -> [2, 4, 8, 16]."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of group counts", param_hint="--level-qualities") from None


def parse_lmbda(text: str) -> float | list[float]:
    """'0.01' (every quality) or '0.0018,0.0035,...' (one per quality)."""
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number or a list of numbers", param_hint="--lmbda") from None
    return values if len(values) > 1 else values[0]


def initial_model(init: str):
    """The model ``--init`` names, in training mode: a shipped model, or the float weights of a run's checkpoint file."""
    if init.endswith(".pt") and Path(init).is_file():
        return zoo.from_checkpoint(torch.load(init, weights_only=True, map_location="cpu")["model"]).train()
    if init.endswith(zoo.SUFFIX) and Path(init).is_file():  # one version of a model, e.g. in models/previous/
        return copy.deepcopy(zoo.load_file(Path(init))[0]).train()
    return copy.deepcopy(zoo.load(init)[0]).train()


@dataclass
class Options:
    """``dqcodec train``'s options, as click parsed them (their help is the command's)."""

    data: tuple[Path, ...]
    out: Path
    schedule: str
    lmbda: str
    lr: float
    channels: int | None
    residual_blocks: int | None
    plain_vq: bool
    soft_to_hard: bool
    checkpoint_minutes: float
    seed: int
    keep_all: float
    until: int | None
    init_model: str | None
    arch: str
    size: int
    lossless: bool
    pixels_from: str | None
    mixtures: int
    pixel_hidden: int | None
    add_level: str | None
    train_all: bool
    level_qualities: str
    ecvq: float
    quality: int | None
    bf16: bool
    channels_last: bool
    debug_ranks: Path | None

    @property
    def resuming(self) -> bool:
        return (self.out / CHECKPOINT).exists()

    def check(self) -> None:
        """Refuse options that do not go together."""
        if self.lossless and not self.init_model and not self.resuming:
            raise click.UsageError("--lossless needs --init MODEL (or a checkpoint in --out to resume)")
        if self.add_level and (not self.init_model or self.lossless):
            raise click.UsageError("--add-level needs --init MODEL, without --lossless")
        if self.train_all and not self.add_level:
            raise click.UsageError("--train-all applies to --add-level")
        if self.pixels_from and not (self.lossless and self.init_model):
            raise click.UsageError("--pixels-from applies to a pixel likelihood trained with --lossless --init MODEL")
        if self.pixel_hidden and not (self.lossless and self.init_model):
            raise click.UsageError("--pixel-hidden applies to a pixel likelihood trained with --lossless --init MODEL")

    def model(self):
        """The model to train: the run's checkpoint's when resuming (--init and the options that shape a new
        model do not apply), else the --init model (with the pixel likelihood or level the options give it),
        else a new one of --arch."""
        if self.resuming:
            model = zoo.from_checkpoint(
                torch.load(self.out / CHECKPOINT, weights_only=True, map_location="cpu")["model"]
            )
        elif self.init_model:
            model = initial_model(self.init_model)
            if self.lossless and registry.is_dq(model):  # anything else gets the lossless mode's clear refusal
                self._give_pixels(model)
            if self.add_level:
                if not registry.is_dq(model):
                    raise click.UsageError("--add-level applies to a dq model")
                model = surgery.with_level(model, parse_level(self.add_level), parse_groups(self.level_qualities))
        else:
            if registry.ARCHITECTURES[self.arch].family != registry.DQ:
                try:
                    extras.require("train", f"training {self.arch}")
                except MissingExtraError as error:
                    raise click.ClickException(str(error)) from None
            model = registry.build(
                self.arch,
                channels=self.channels,
                depthwise=not self.plain_vq,
                residual_blocks=self.residual_blocks,
                size=self.size,
                codebook_learning="soft-to-hard" if self.soft_to_hard else "ema",
            )
        if self.quality is not None and not (registry.is_dq(model) and 1 <= self.quality <= model.ladder.lossy_count):
            raise click.BadParameter(
                f"must be one of the dq model's lossy qualities, counted among them (1 to {model.ladder.lossy_count})",
                param_hint="--quality",
            )
        return model

    def _give_pixels(self, model) -> None:
        """The --init model's pixel likelihood to train: another model's (--pixels-from), a new one, or its own
        (widened to --pixel-hidden)."""
        if self.pixels_from:
            if has_pixels(model):
                raise click.UsageError("--pixels-from applies to an --init model without a pixel likelihood")
            try:
                surgery.adopt_pixel_model(model, zoo.load(self.pixels_from)[0])
            except ModelError as error:
                raise click.UsageError(f"--pixels-from: {error}") from None
        elif not has_pixels(model):
            surgery.add_pixel_model(model, self.mixtures, self.pixel_hidden or DQConfig.pixel_hidden)
        if has_pixels(model) and self.pixel_hidden and self.pixel_hidden != model.config.pixel_hidden:
            try:
                surgery.widen_pixel_model(model, self.pixel_hidden)
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="--pixel-hidden") from None

    def config(self) -> TrainConfig:
        return TrainConfig(
            data=list(self.data),
            out=self.out,
            schedule=parse_schedule(self.schedule),
            lmbda=parse_lmbda(self.lmbda),
            lr=self.lr,
            checkpoint_minutes=self.checkpoint_minutes,
            seed=self.seed,
            keep_all=self.keep_all,
            until=self.until,
            quality=self.quality,
            bf16=self.bf16,
            channels_last=self.channels_last,
            ecvq=self.ecvq,
            debug_dir=self.debug_ranks,
            mode=mode_for(self.lossless, bool(self.add_level), self.train_all),
        )


@click.command(context_settings={"show_default": True})
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="run folder (checkpoint.pt, log.csv); an existing checkpoint there is resumed",
)
@click.option("--schedule", default="64x16:6000,128x8:2000", help="progressive crops: CROPxBATCH:STEPS,...")
@click.option(
    "--lmbda",
    default="0.01",
    help="rate-distortion trade-off: λ·255²·MSE + bpp; one λ, or (dq) one per quality, comma-separated, for crops coded at that quality",
)
@click.option("--lr", default=3e-4)
@click.option("--channels", type=int, help="dq only: channels of the transforms (default: the architecture's)")
@click.option(
    "--residual-blocks", type=int, help="dq only: residual blocks in the synthesis (default: the architecture's)"
)
@click.option("--plain-vq", is_flag=True, help="one shared projection and codebook per level (the ablation)")
@click.option(
    "--soft-to-hard",
    is_flag=True,
    help="codebooks learnt by gradients through annealed soft assignments, with their entropy in the loss, instead of EMA (the second seed; quantize.py)",
)
@click.option("--checkpoint-minutes", default=2.0)
@click.option("--seed", default=0)
@click.option(
    "--keep-all", default=0.0, help="fraction of crops that keep every bottom group (the rest draw a quality)"
)
@click.option("--until", type=int, help="stop after this step (a checkpoint to resume from, e.g. with other options)")
@click.option(
    "--init",
    "init_model",
    help="start from the weights of this shipped model, of one version's .dqw file, or of a run's checkpoint.pt (fresh optimizer), e.g. to train on",
)
@click.option(
    "--arch",
    type=click.Choice(list(registry.ARCHITECTURES)),
    default="dq-hier",
    help="a DQ architecture, or a CompressAI baseline",
)
@click.option("--size", default=3, help="baselines only: the CompressAI zoo quality whose channel counts to use")
@click.option(
    "--lossless",
    is_flag=True,
    help="train only the pixel likelihood of the --init model (added if it has none), on code + pixel bits",
)
@click.option(
    "--pixels-from",
    help="with --lossless: start the --init model's new pixel likelihood from this shipped model's (its size and weights)",
)
@click.option("--mixtures", default=3, help="with --lossless: logistic components of a new pixel likelihood")
@click.option(
    "--pixel-hidden",
    type=int,
    help="with --lossless: channels of a new pixel likelihood, or widen the --init model's to this many",
)
@click.option(
    "--add-level",
    help="GROUPSxCODEBOOKxDIM[xHIDDEN]: give the --init dq model a level at half its last stride (DQCodec.with_level) and train only that",
)
@click.option(
    "--train-all",
    is_flag=True,
    help="with --add-level: train every weight with the new level, on crops of every quality, not the new level alone",
)
@click.option(
    "--level-qualities", default="2,4,8,16", help="with --add-level: groups of the new level coded at each new quality"
)
@click.option(
    "--ecvq",
    default=0.0,
    help="dq only: choose the trained levels' indices (the new one's, with --add-level) as the encoder does, |z - e|^2 + ECVQ * bits under the prior: entropy-constrained VQ in training; 0 picks the nearest codeword",
)
@click.option(
    "-q",
    "--quality",
    type=int,
    help="dq only: code every crop at the model's N-th lossy quality, counted among its lossy ones as --lmbda counts them (default: each crop draws one)",
)
@click.option(
    "--bf16",
    is_flag=True,
    help="forward pass in bfloat16 autocast (quantizers in float32); about 2x faster on CPUs with AVX-512 BF16",
)
@click.option("--channels-last", is_flag=True, help="channels-last memory format for the model and the crops")
@click.option(
    "--debug-ranks",
    type=click.Path(file_okay=False, path_type=Path),
    hidden=True,
    help="write each process's crops and weight digests here (for tests)",
)
def main(**options):
    """Train a DQ codec (or, with --arch, a CompressAI baseline) on the images in the DATA folders
    (e.g. data/train data/train-native); every crop draws an image from all of them alike.

    Launched with torchrun (torchrun --standalone --nproc_per_node N -m dqcodec.training ...), N
    processes train together under DistributedDataParallel; each stage's batch is per process."""
    options = Options(**options)
    options.check()
    torch.manual_seed(options.seed)
    path = train(options.model(), options.config())
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"checkpoint: {path}")
