"""The ways a run trains a model, each an object that owns its rules: which weights learn, which modules are
in training mode (a quantizer in training mode updates its codebook), which qualities the crops are coded at,
and which levels choose their indices entropy-constrained (``--ecvq``).

- ``Lossy``: every weight, on the rate-distortion loss, at every quality (a DQ model or a baseline);
- ``Lossless`` (``--lossless``): a DQ model's pixel likelihood only, on code + pixel bits; the rest stays
  frozen, so its lossy coding and its code bits stay exactly as they were;
- ``NewLevel`` (``--add-level``): a level ``DQCodec.with_level`` added, alone on the qualities that code it
  (the rest frozen), or with every weight (``--train-all``) on crops of every quality."""

from __future__ import annotations

import click
import torch

from .. import registry, surgery
from .distributed import Processes


def has_pixels(model) -> bool:
    """Whether a model is a DQ model with a pixel likelihood (it codes lossless files)."""
    return registry.is_dq(model) and model.pixels is not None


class Mode:
    """A way of training; by default every weight trains, the whole model in training mode, on crops of
    every quality weighed by the λ given."""

    name = "mode"
    updates_codebooks = True  # its quantizers train: under DDP, every process's crops update them

    def prepare(self, model, procs: Processes) -> None:
        """Check that the mode fits the model (a click error if not), and freeze what it does not train."""

    def train_modules(self, model) -> None:
        """Put the modules that train in training mode."""
        model.train()

    def first_quality(self, model) -> int:
        """The first quality (0-based) crops draw."""
        return 0

    def lmbda(self, lmbda: float | list[float]) -> float | list[float]:
        """The rate-distortion trade-off the loss weighs the crops by."""
        return lmbda

    def rate_levels(self, model) -> list:
        """The levels whose indices ``--ecvq`` chooses entropy-constrained."""
        return list(model.levels)


class Lossy(Mode):
    name = "lossy"

    def prepare(self, model, procs: Processes) -> None:
        if has_pixels(model):
            # its bits would enter the lossy loss, and it reads the decoder that lossy training changes
            surgery.drop_pixel_model(model)
            procs.echo(
                "the model's pixel likelihood is dropped: it reads the decoder this lossy training changes (train one again with --lossless)"
            )


class Lossless(Mode):
    name = "lossless"
    updates_codebooks = False

    def prepare(self, model, procs: Processes) -> None:
        if not has_pixels(model):
            raise click.ClickException("lossless training needs a dq model with a pixel likelihood")
        freeze_all_but_pixels(model)

    def train_modules(self, model) -> None:
        model.eval()  # the frozen quantizers must not update their codebooks
        model.pixels.train()

    def lmbda(self, lmbda):
        return 0.0  # code + pixel bits: no distortion term


class NewLevel(Mode):
    """The level ``DQCodec.with_level`` added: ``alone``, only its weights train, on crops of the qualities
    that code it; else every weight trains with it, on crops of every quality."""

    def __init__(self, alone: bool = True):
        self.alone = alone
        self.name = "new level" if alone else "new level with all"

    def prepare(self, model, procs: Processes) -> None:
        if not registry.is_dq(model):
            raise click.ClickException("a new level is trained on a dq model")
        if has_pixels(model):  # its pixel bits would train the new level too
            raise click.ClickException("a new level is trained on a model without a pixel likelihood")
        if self.alone:
            freeze_all_but_new_level(model)

    def train_modules(self, model) -> None:
        model.train()
        if self.alone:
            train_new_level(model)

    def first_quality(self, model) -> int:
        # the qualities that code the new level come after those of the levels above
        return next(i for i, q in enumerate(model.config.qualities) if q[-1]) if self.alone else 0

    def rate_levels(self, model) -> list:
        return list(model.levels[-1:])


def mode_for(lossless: bool = False, add_level: bool = False, train_all: bool = False) -> Mode:
    """The mode of ``dqcodec train``'s options."""
    if lossless:
        return Lossless()
    if add_level:
        return NewLevel(alone=not train_all)
    return Lossy()


# ---- freezing rules -----------------------------------------------------------------


def freeze_all_but_pixels(model) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("pixels.")


def new_level_parameters(model) -> list[str]:
    """The names of the parameters ``DQCodec.with_level`` added: the last level, its mixer, and the new level's
    codes' share of the synthesis' first convolution (its context's share and its bias stay)."""
    last = len(model.levels) - 1
    return [
        n
        for n, _ in model.named_parameters()
        if n.startswith((f"levels.{last}.", f"mixers.{last - 1}.")) or n == "synthesis.0.weight"
    ]


def freeze_all_but_new_level(model) -> None:
    """Train only what ``with_level`` added (``new_level_parameters``): every other weight, and the
    synthesis' first convolution's weights on its context input, stay as they are."""
    trainable = set(new_level_parameters(model))
    for name, p in model.named_parameters():
        p.requires_grad = name in trainable
    weight = model.synthesis[0].weight
    mask = torch.zeros_like(weight)
    mask[:, : model.levels[-1].out_channels] = 1
    weight.register_hook(lambda grad: grad * mask.to(grad.device))


def train_new_level(model) -> None:
    """Training mode for the new level only: the frozen quantizers must not update their codebooks."""
    model.eval()
    model.levels[-1].train()
    model.mixers[-1].train()
