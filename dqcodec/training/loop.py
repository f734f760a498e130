"""The training loop: Adam over progressive crop sizes, a checkpoint every few minutes (and at the end), a
click progress bar and the log, on one process or, under torchrun, one DDP replica per process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import click
import torch
import torch.distributed as dist

from .. import registry, zoo
from . import checkpoints, distributed
from .checkpoints import CHECKPOINT, LOG
from .config import TrainConfig
from .data import load_folders, random_batch
from .distributed import Processes, SharedCodebookUpdates
from .objective import Objective, learning_rate, stage_at


def train(model, config: TrainConfig) -> Path:
    """Train ``model`` (a DQ codec or a baseline, from ``registry.build``) as ``config`` says, or resume the
    checkpoint in ``config.out`` if there is one; returns the checkpoint's path. Seed torch before building
    the model.

    Under torchrun (see ``dqcodec.training``) it trains one DDP replica per process: the batch of each stage
    is per process, only rank 0 writes the checkpoint and the log."""
    procs = distributed.start_processes()
    try:
        run = _start(procs, model, config)
        _loop(run)
        if run.trace:
            run.trace.finish(run)
        return config.out / CHECKPOINT
    finally:
        distributed.stop_processes(procs)


@dataclass
class Run:
    """One process's run in progress."""

    procs: Processes
    config: TrainConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer | None
    rng: random.Random
    step: int
    wall: float
    images: list
    objective: Objective
    net: torch.nn.Module | None = None  # the model, or its DDP wrapper
    codebooks: SharedCodebookUpdates | None = None
    trace: RankTrace | None = None

    @property
    def aux_params(self) -> list:
        return [p for g in self.aux_optimizer.param_groups for p in g["params"]] if self.aux_optimizer else []


def _start(procs: Processes, model, config: TrainConfig) -> Run:
    """The model, its optimizers and the random streams, fresh or as the checkpoint left them; the data."""
    config.out.mkdir(parents=True, exist_ok=True)
    rng = distributed.draws(procs, config.seed)
    state = checkpoints.load_checkpoint(config.out)
    distributed.agree_on_checkpoint(procs, state, config.out)
    model = _prepared(zoo.from_checkpoint(state["model"]) if state else model, config, procs)
    optimizer, aux_optimizer = (
        checkpoints.resumed_optimizers(model, config.lr, state, procs.echo)
        if state
        else checkpoints.optimizers(model, config.lr)
    )
    step, wall = 0, 0.0
    if state:
        step, wall = state["step"], state["wall_seconds"]
        rng = distributed.resume_draws(procs, state, rng, config.seed)
        procs.echo(f"resumed {config.out / CHECKPOINT} at step {step}")
    images = _images(procs, config, model)
    mode = config.mode
    objective = Objective(
        model,
        mode.lmbda(config.lmbda),
        procs.device,
        config.keep_all,
        config.quality,
        mode.first_quality(model),
        config.bf16,
        config.channels_last,
    )
    if procs.main:
        checkpoints.drop_rows_after(config.out / LOG, step)  # rows logged after the checkpoint we resumed from
    mode.train_modules(model)
    run = Run(procs, config, model, optimizer, aux_optimizer, rng, step, wall, images, objective)
    if config.debug_dir:  # what this process starts from, before DDP gives every process rank 0's weights
        run.trace = RankTrace(procs, step, model)
    run.net, run.codebooks = distributed.replicate(procs, model, run.aux_params, mode.updates_codebooks, config.seed)
    return run


def _prepared(model, config: TrainConfig, procs: Processes):
    """The model with the mode's freezing rules and the entropy-constrained levels, on the device."""
    config.mode.prepare(model, procs)
    if config.ecvq and registry.is_dq(model):
        for level in config.mode.rate_levels(model):
            level.training_rate_weight = config.ecvq
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.to(procs.device)


def _images(procs: Processes, config: TrainConfig, model) -> list:
    images = load_folders(config.folders, max(s.crop for s in config.schedule))
    names = ", ".join(map(str, config.folders))
    procs.echo(
        f"{len(images)} training images from {names}; {config.total_steps} steps; {sum(p.numel() for p in model.parameters())} parameters"
    )
    if procs.active:
        batches = ", ".join(str(s.batch) for s in config.schedule)
        procs.echo(
            f"{procs.world_size} processes ({dist.get_backend()}, {procs.device.type}): batch {batches} per process, {procs.world_size}x that in all"
        )
    return images


def _loop(run: Run) -> None:
    procs, config = run.procs, run.config
    last_save = time.monotonic()
    status = {"text": ""}
    with contextlib.ExitStack() as stack:
        if run.codebooks:
            stack.callback(run.codebooks.remove)
        log, bar = None, None
        if procs.main:  # the log and the progress bar: rank 0's
            log = checkpoints.Log(config.out / LOG)
            stack.callback(log.close)
            bar = stack.enter_context(
                click.progressbar(
                    length=config.total_steps, label="training", item_show_func=lambda _: status["text"], show_pos=True
                )
            )
            bar.update(run.step)
        while run.step < config.last_step:
            stage, loss, losses = _step(run)
            if procs.main:
                status["text"] = (
                    f"loss {loss.item():.3f} bpp {losses['bpp_loss'].item():.3f} psnr {_psnr(losses['mse_loss'].item()):.2f}"
                )
            if run.step % 10 == 0:
                _log(run, stage.crop, loss, losses, log)
            if bar:
                bar.update(1)
            if (
                procs.rank0_says(time.monotonic() - last_save > config.checkpoint_minutes * 60)
                or run.step == config.last_step
            ):
                _save(run)
                last_save = time.monotonic()


def _step(run: Run):
    """One Adam step on a batch of the stage's crops: (the stage, the loss, its parts)."""
    config, model = run.config, run.model
    started = time.monotonic()
    stage = stage_at(config.schedule, run.step)
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(run.step, config.total_steps, config.lr)
    if run.codebooks:
        run.codebooks.begin_step(run.step)
    x = random_batch(run.images, stage.crop, stage.batch, run.rng).to(run.procs.device)
    loss, losses, drawn = run.objective(run.net, x, run.step / config.total_steps)
    if run.trace:
        run.trace.record(x, drawn)
    run.optimizer.zero_grad()
    loss.backward()  # under DDP, the gradients come out averaged over the processes
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    run.optimizer.step()
    if run.aux_optimizer:
        run.aux_optimizer.zero_grad()
        model.aux_loss().backward()
        for p in run.aux_params:
            run.procs.mean(p.grad)  # the same on every process anyway (no data in it): kept so by construction
        run.aux_optimizer.step()
    run.step += 1
    run.wall += time.monotonic() - started
    return stage, loss, losses


def _psnr(mse: float) -> float:
    return 10 * math.log10(1 / max(mse, 1e-10))


def _log(run: Run, crop: int, loss, losses: dict, log: checkpoints.Log | None) -> None:
    """A row of the log: the means over every process's crops."""
    values = run.procs.mean(
        torch.stack([loss.detach(), losses["bpp_loss"].detach(), losses["mse_loss"].detach()]).float()
    )
    if log:
        loss_value, bpp, mse = values.tolist()
        log.row(run.step, crop, loss_value, bpp, mse, _psnr(mse), run.wall)


def _save(run: Run) -> None:
    config = run.config
    rank_rngs = distributed.rank_draws(run.procs, run.rng)
    if run.procs.main:
        content = {
            "model": zoo.checkpoint_of(run.model),  # the unwrapped model: no DDP "module." prefix
            "optimizer": run.optimizer.state_dict(),
            "aux_optimizer": run.aux_optimizer.state_dict() if run.aux_optimizer else None,
            "optimized_names": checkpoints.optimized_names(run.model),
            "step": run.step,
            "wall_seconds": run.wall,
            "python_rng": run.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "schedule": [s.__dict__ for s in config.schedule],
            "lmbda": config.lmbda,
            "keep_all": config.keep_all,
            "quality": config.quality,
            **({"rank_rngs": rank_rngs} if rank_rngs else {}),
        }
        checkpoints.save_atomic(checkpoints.to_cpu(content), config.out / CHECKPOINT)
    run.procs.barrier()  # no process goes on (or ends, and lets a next run read it) before the checkpoint is written


class RankTrace:
    """What a process drew and digests of its model's state when it started (before DDP copied rank 0's
    weights to it) and when it ended: a JSON file per process and run in ``debug_dir``, for tests."""

    def __init__(self, procs: Processes, step: int, model):
        self.content = {
            "rank": procs.rank,
            "world_size": procs.world_size,
            "start_step": step,
            "start_state": checkpoints.state_digest(model.state_dict()),
            "crops": [],
            "qualities": [],
        }

    def record(self, x: torch.Tensor, drawn: torch.Tensor | None) -> None:
        self.content["crops"].append(hashlib.sha256(x.cpu().numpy().tobytes()).hexdigest()[:16])
        self.content["qualities"].append(drawn.tolist() if drawn is not None else None)

    def finish(self, run: Run) -> None:
        self.content["end_step"] = run.step
        self.content["state"] = checkpoints.state_digest(run.model.state_dict())
        folder = run.config.debug_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{run.procs.rank}-from{self.content['start_step']}.json").write_text(json.dumps(self.content))
