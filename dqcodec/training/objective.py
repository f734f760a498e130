"""What training minimises, and when: the stages of a schedule, the learning rate over the run, and the
loss of a batch.

The loss is CompressAI's rate-distortion loss (λ·255²·MSE + bpp, where bpp is the cross-entropy of the
code indices under the learned priors, i.e. the exact rate), with a λ per crop, plus the quantizers'
commitment loss. A CompressAI baseline trains on CompressAI's own loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import click
import torch

from .. import registry
from .data import sample_qualities


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


def learning_rate(step: int, total: int, base: float) -> float:
    """Linear warm-up over 300 steps, constant, then cosine decay to a tenth over the last 30%."""
    if step < 300:
        return base * (step + 1) / 300
    start = int(0.7 * total)
    if step < start:
        return base
    progress = (step - start) / max(1, total - start)
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def rate_distortion(output: dict, x: torch.Tensor, lmbdas: torch.Tensor) -> dict:
    """CompressAI's rate-distortion loss with a λ per crop: mean of λ·255²·MSE + bpp over the crops."""
    pixels = x.shape[-2] * x.shape[-1]
    bpp = sum(-torch.log2(p).flatten(1).sum(1) for p in output["likelihoods"].values()) / pixels
    mse = (output["x_hat"] - x).pow(2).flatten(1).mean(1)
    return {"loss": (lmbdas * 255**2 * mse + bpp).mean(), "bpp_loss": bpp.mean(), "mse_loss": mse.mean()}


def forward(model, x: torch.Tensor, groups: torch.Tensor | None, bf16: bool, channels_last: bool) -> dict:
    """The model's training output for crops x (a DQ model keeps ``groups`` bottom groups per crop),
    under bfloat16 autocast (of x's device) if asked, with x_hat and the likelihoods back in float32
    for the loss. ``model`` may be wrapped in DistributedDataParallel."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        output = model(x) if groups is None else model(x, groups)
    output["x_hat"] = output["x_hat"].float()
    output["likelihoods"] = {k: v.float() for k, v in output["likelihoods"].items()}
    return output


class Objective:
    """The loss of a batch of crops. A DQ model codes each crop at a quality it draws (``sample_qualities``:
    from the mode's first quality on, the last with probability ``keep_all``, or always ``quality``) and
    weighs it by that quality's λ (one λ, or one per quality); a baseline trains at one λ on CompressAI's
    loss."""

    def __init__(
        self,
        model,
        lmbda: float | list[float],
        device: torch.device,
        keep_all: float = 0.0,
        quality: int | None = None,
        first_quality: int = 0,
        bf16: bool = False,
        channels_last: bool = False,
    ):
        self.model, self.keep_all, self.quality, self.first_quality = model, keep_all, quality, first_quality
        self.bf16, self.channels_last = bf16, channels_last
        self.is_dq = registry.is_dq(model)
        lmbdas = torch.tensor(lmbda if isinstance(lmbda, list) else [lmbda])
        self.qualities = torch.tensor(model.config.qualities) if self.is_dq else None
        if self.is_dq and len(lmbdas) not in (1, len(self.qualities)):
            raise click.BadParameter(f"give one λ, or one per quality ({len(self.qualities)})", param_hint="--lmbda")
        if not self.is_dq and len(lmbdas) != 1:
            raise click.BadParameter("a baseline trains at one λ", param_hint="--lmbda")
        self.criterion = None
        if not self.is_dq:
            # imported here: importing dqcodec must not import compressai
            from compressai.losses import RateDistortionLoss

            self.criterion = RateDistortionLoss(lmbda=float(lmbdas[0]))
        self.lmbdas = lmbdas.to(device)

    def __call__(self, net, x: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        """(loss, its parts, the qualities drawn (0-based) or None) for crops x at ``progress`` (0 to 1) of the
        run; ``net`` is the model, or its DDP wrapper."""
        if not self.is_dq:
            losses = self.criterion(forward(net, x, None, self.bf16, self.channels_last), x)
            return losses["loss"], losses, None
        self.model.anneal(progress)
        drawn = sample_qualities(len(self.qualities), x.shape[0], self.keep_all, self.quality, self.first_quality)
        output = forward(net, x, self.qualities[drawn].to(x.device), self.bf16, self.channels_last)
        losses = rate_distortion(output, x, self.lmbdas[drawn.to(x.device) % len(self.lmbdas)])
        return losses["loss"] + output["vq_loss"], losses, drawn
