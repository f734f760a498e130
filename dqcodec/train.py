"""Training: random crops from a folder of images, progressive crop sizes, Adam,
resumable checkpoints, a click progress bar and a CSV log.

    python -m dqcodec.train DATA_DIR [DATA_DIR ...] --out runs/NAME --schedule 64x16:6000,128x8:2000

The loss is CompressAI's rate-distortion loss (λ·255²·MSE + bpp, where bpp is the
cross-entropy of the code indices under the learned priors, i.e. the exact rate),
plus the quantizers' commitment loss. Every crop draws a quality at random, so the
one model learns every rate point (nested dropout over the bottom groups).

``--arch`` picks the architecture (``registry.ARCHITECTURES``): dq-hier, dq-stride4, dq-hier-wide, or
``bmshj2018-factorized`` or ``bmshj2018-hyperprior`` to train CompressAI's model
of that name instead, with the same data, crops, schedule and loss, plus CompressAI's
auxiliary loss on its entropy bottleneck's quantiles (their own Adam, as in CompressAI's
example trainer).

Training that outgrows one machine: launched by torchrun, every process trains one replica
under DistributedDataParallel (gloo on CPUs, NCCL where CUDA is present) and averages the
gradients with the others every step:

    torchrun --standalone --nproc_per_node 4 -m dqcodec.train DATA_DIR --out runs/NAME ...

The batch of ``--schedule`` is per process (the global batch is processes x batch); each process
draws its own crops and qualities, seeded from (seed, rank). Only rank 0 writes the checkpoint
and the log and shows the progress bar; every rank resumes from the same checkpoint. Launched
without torchrun it is one process, as it always was. It runs on CUDA where it is present.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from . import registry, zoo
from .codec import image_files
from .errors import ModelError
from .levels import LevelConfig
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


def sample_qualities(count: int, batch: int, keep_all: float, quality: int | None = None, first: int = 0) -> torch.Tensor:
    """The quality (0-based) each crop is coded at: the last (every group) with probability keep_all,
    else a random one from ``first`` on (or, given ``quality``, that one)."""
    if quality is not None:
        return torch.full((batch,), quality - 1)
    drawn = torch.randint(first, count, (batch,))
    return torch.where(torch.rand(batch) < keep_all, count - 1, drawn)


def rate_distortion(output: dict, x: torch.Tensor, lmbdas: torch.Tensor) -> dict:
    """CompressAI's rate-distortion loss with a λ per crop: mean of λ·255²·MSE + bpp over the crops."""
    pixels = x.shape[-2] * x.shape[-1]
    bpp = sum(-torch.log2(l).flatten(1).sum(1) for l in output["likelihoods"].values()) / pixels
    mse = (output["x_hat"] - x).pow(2).flatten(1).mean(1)
    return {"loss": (lmbdas * 255**2 * mse + bpp).mean(), "bpp_loss": bpp.mean(), "mse_loss": mse.mean()}


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


def parse_lmbda(text: str) -> list[float]:
    """'0.01' (every quality) or '0.0018,0.0035,...' (one per quality)."""
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number or a list of numbers", param_hint="--lmbda") from None


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


def to_cpu(obj):
    """A checkpoint's content with every tensor on the CPU, so any machine loads it."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def write_snapshot(checkpoint: Path, snapshot: Path) -> None:
    """Write a training checkpoint's half-precision snapshot: its model's floating-point tensors in
    float16, its step, clock and random streams, and no optimizer state (a few MB, small enough to
    commit). Copied into an empty run folder as checkpoint.pt, it resumes the run at its step with
    fresh Adam moments, e.g. on a machine that lost the run folder."""
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    half = {key: value for key, value in state.items() if key not in ("optimizer", "aux_optimizer", "optimized_names")}
    half["model"] = _half_precision(state["model"])
    save_atomic(half, snapshot)


def write_seed(model_checkpoint: dict, step: int, seed: int, path: Path) -> None:
    """Write a training checkpoint that resumes, at ``step`` of its schedule and with fresh Adam
    moments, from the weights of a model checkpoint ({"config", "state_dict"}, e.g. a shipped model's
    legacy .pt): to train a model on, skipping the early stages of a schedule meant for a fresh one."""
    torch_rng = torch.Generator().manual_seed(seed).get_state()
    save_atomic({"model": model_checkpoint, "step": step, "wall_seconds": 0.0, "python_rng": random.Random(seed).getstate(), "torch_rng": torch_rng}, path)


def _half_precision(obj):
    if isinstance(obj, torch.Tensor):
        return obj.half() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {key: _half_precision(value) for key, value in obj.items()}
    return obj


def state_digest(state_dict: dict) -> dict[str, str]:
    """A short SHA-256 of each tensor of a state dict (its dtype, shape and bytes)."""

    def digest(t: torch.Tensor) -> str:
        t = t.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    return {name: digest(t) for name, t in state_dict.items()}


@dataclass
class Processes:
    """This process's place among the processes training together: rank 0 of 1 unless torchrun
    launched it (WORLD_SIZE and RANK in the environment), or a process group already exists."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    active: bool = False  # a process group is in use: the model trains under DDP
    owned: bool = False  # we created the process group, and destroy it at the end

    @property
    def main(self) -> bool:
        return self.rank == 0

    def echo(self, message: str) -> None:
        if self.main:
            click.echo(message)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over every process."""
        if self.active:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def rank0_says(self, flag: bool) -> bool:
        """Rank 0's flag, on every process (e.g. whether a checkpoint is due: clocks differ)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier(**({"device_ids": [self.device.index]} if self.device.type == "cuda" else {}))


def start_processes() -> Processes:
    """The device (CUDA where present, one GPU per process of a node) and, under torchrun, the process
    group: gloo on CPUs, NCCL on GPUs. Without torchrun, one process and no process group."""
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if dist.is_available() and dist.is_initialized():
        return Processes(dist.get_rank(), dist.get_world_size(), device, active=True)
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return Processes(device=device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), device, active=True, owned=True)


class SharedCodebookUpdates:
    """Keeps the quantizers' codebooks identical on every process, learnt from every process's crops.

    A DQ quantizer learns its codebook by exponential moving averages of the vectors assigned to
    each codeword, updated in place during the forward pass (``DepthwiseQuantizer._ema_update``),
    as buffers, not by gradients. Under DDP each process would update them from its own crops and
    the codebooks would diverge. DDP's buffer sync (broadcasting rank 0's buffers at the start of
    every forward, its default) would hide that, but then the codebooks would learn from rank 0's
    crops only, and between the last update and the next forward the ranks would differ. Instead
    every process all-gathers the projected vectors and their indices of every process before the
    update and updates from all of them, in rank order, with the same random draws (dead codewords
    are re-seeded from random vectors): every process computes the same update, the one a single
    process would from the global batch. All-gathering the vectors (not only summed statistics)
    keeps the quantizer's own update code, re-seeding included; it costs an all-gather of the
    projected vectors per level and step (small beside the gradients) and a one-hot over the
    global batch. DDP's buffer sync stays on as a safety net against bit-level differences
    between machines."""

    def __init__(self, model, seed: int):
        from .quantize import DepthwiseQuantizer

        self.seed = seed
        self.draws = random.Random()
        self.quantizers = [m for m in model.modules() if isinstance(m, DepthwiseQuantizer)]
        for q in self.quantizers:
            q._ema_update = self._gathered(q._ema_update)  # an instance attribute shadows the method

    def begin_step(self, step: int) -> None:
        """The same random draws on every process, for every step."""
        self.draws.seed(f"dqcodec-codebooks:{self.seed}:{step}")

    def remove(self) -> None:
        for q in self.quantizers:
            q.__dict__.pop("_ema_update", None)

    def _gathered(self, update):
        def gathered_update(z: torch.Tensor, indices: torch.Tensor) -> None:
            # (M, N, D) vectors and (M, N) indices; every process has the same N (same stage, same batch)
            world = dist.get_world_size()
            zs, ids = [torch.empty_like(z) for _ in range(world)], [torch.empty_like(indices) for _ in range(world)]
            dist.all_gather(zs, z.contiguous())
            dist.all_gather(ids, indices.contiguous())
            with torch.random.fork_rng(devices=[z.device.index] if z.is_cuda else []):
                torch.manual_seed(self.draws.getrandbits(63))
                update(torch.cat(zs, 1), torch.cat(ids, 1))

        return gathered_update


def optimized_names(model) -> tuple[list[str], list[str]]:
    """The names of the parameters the main and the auxiliary Adam update, in their order."""
    named = [name for name, p in model.named_parameters() if p.requires_grad]
    return [n for n in named if not n.endswith(".quantiles")], [n for n in named if n.endswith(".quantiles")]


def optimizers(model, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Adam on the trainable weights; a second Adam (lr 1e-3) on entropy-bottleneck quantiles, if any."""
    params = dict(model.named_parameters())
    main, aux = optimized_names(model)
    return torch.optim.Adam([params[n] for n in main], lr=lr), (torch.optim.Adam([params[n] for n in aux], lr=1e-3) if aux else None)


def restore_optimizer(optimizer, saved: dict, saved_names: list[str] | None, names: list[str], params: dict) -> bool:
    """Load an optimizer's saved state into ``optimizer`` (over the parameters ``names``, in order).
    Adam's state is stored by position, so it is matched by parameter name when the checkpoint lists
    them (another version of the model may register its parameters in another order). Returns False,
    leaving the optimizer fresh, when the state does not fit: other names, or (a checkpoint without
    names) other shapes."""
    state = dict(saved["state"])
    if saved_names is not None:
        if sorted(saved_names) != sorted(names):
            return False
        position = {name: i for i, name in enumerate(saved_names)}
        state = {i: state[position[name]] for i, name in enumerate(names) if position[name] in state}
    elif any(tuple(s["exp_avg"].shape) != tuple(params[names[i]].shape) for i, s in state.items() if "exp_avg" in s and i < len(names)) or len(saved["param_groups"][0]["params"]) != len(names):
        return False
    groups = [{**saved["param_groups"][0], "params": list(range(len(names)))}]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return True


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
    debug_dir: Path | None = None,
    new_level: str | None = None,
    ecvq: float = 0.0,
) -> Path:
    """Train ``model`` (a DQ codec or a baseline, from ``registry.build``), or resume the
    checkpoint in ``out`` if there is one. Seed torch before building the model.

    ``lossless`` trains only a DQ model's pixel likelihood, on the lossless objective:
    code bits plus pixel bits (the rest of the model is frozen, so its lossy coding and
    its code bits stay exactly as they were). ``quality`` fixes the codes every crop is
    coded with (by default each crop draws a quality). ``bf16`` runs the forward pass under
    ``torch.autocast`` of the training device, dtype bfloat16 (the quantizers stay in float32);
    ``channels_last`` keeps the model and the crops in that memory format. For a DQ model that got a
    level from ``DQCodec.with_level``, ``new_level="only"`` trains only that level
    (``freeze_all_but_new_level``), on crops coded at the qualities that code it, and ``new_level="all"``
    trains every weight with it, on crops of every quality. ``ecvq`` > 0 makes the trained levels (a DQ
    model's, or with ``new_level`` only the new one) choose their indices entropy-constrained in training, as the encoder does, at that rate weight
    (``LevelCodec.training_rate_weight``).

    Under torchrun (see the module's docstring) it trains one DDP replica per process: the batch
    of each stage is per process, only rank 0 writes the checkpoint and the log, and ``debug_dir``,
    if given, gets a JSON file per process and run (what its crops and qualities were, digests of
    its model's state when it started and when it ended) for tests."""
    procs = start_processes()
    try:
        return _train(procs, data, out, schedule, lmbda, lr, model, checkpoint_minutes, seed, keep_all, until, lossless, quality, bf16, channels_last, debug_dir, new_level, ecvq)
    finally:
        if procs.owned:
            dist.destroy_process_group()


def _train(procs: Processes, data, out, schedule, lmbda, lr, model, checkpoint_minutes, seed, keep_all, until, lossless, quality, bf16, channels_last, debug_dir, new_level=None, ecvq=0.0) -> Path:
    if new_level not in (None, "only", "all"):
        raise ValueError(f"new_level must be None, 'only' or 'all', not {new_level!r}")
    device = procs.device
    out.mkdir(parents=True, exist_ok=True)
    total_steps = sum(s.steps for s in schedule)
    last_step = min(total_steps, until or total_steps)
    step, wall = 0, 0.0
    # Crops (python), qualities and any noise or re-seeding in the model (torch): rank 0, like a
    # single process, draws from the seed; every other rank from its own stream of (seed, rank), so
    # the ranks see different crops and a run is reproducible. (main seeded torch with the seed
    # before building the model, so every rank builds the same one.)
    rng = random.Random(seed)
    if procs.rank:
        rng = random.Random(f"dqcodec-train:{seed}:{procs.rank}")
        torch.manual_seed(rng.getrandbits(63))
    ckpt_path = out / CHECKPOINT
    state = torch.load(ckpt_path, weights_only=True, map_location="cpu") if ckpt_path.exists() else None
    if procs.active:  # every process must resume the same checkpoint (--out on a file system they all see)
        steps = [None] * procs.world_size
        dist.all_gather_object(steps, state["step"] if state else None)
        if len(set(steps)) > 1:
            raise click.ClickException(f"the processes found different checkpoints in {out} (steps {steps} by rank): --out must be a folder every process sees")
    if state:
        model = zoo.from_checkpoint(state["model"])
    if lossless:
        freeze_all_but_pixels(model)
    elif new_level:
        if getattr(model, "lossless", False):  # its pixel bits would train the new level too
            raise click.ClickException("a new level is trained on a model without a pixel likelihood")
        if new_level == "only":
            model.freeze_all_but_new_level()
    elif getattr(model, "lossless", False):
        # its bits would enter the lossy loss, and it reads the decoder that lossy training changes
        model.drop_pixel_model()
        procs.echo("the model's pixel likelihood is dropped: it reads the decoder this lossy training changes (train one again with --lossless)")
    if ecvq and registry.is_dq(model):
        for level in model.levels[-1:] if new_level else model.levels:
            level.training_rate_weight = ecvq
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    optimizer, aux_optimizer = optimizers(model, lr)
    if state:
        if state.get("optimizer") is None:  # a half-precision snapshot (write_snapshot) or a seed (write_seed)
            procs.echo("the checkpoint holds no optimizer state (a snapshot or a seed); Adam starts with fresh moments")
        else:
            params, (main_names, aux_names) = dict(model.named_parameters()), optimized_names(model)
            saved_names = state.get("optimized_names") or (None, None)
            restored = restore_optimizer(optimizer, state["optimizer"], saved_names[0], main_names, params)
            if aux_optimizer:
                restored &= restore_optimizer(aux_optimizer, state["aux_optimizer"], saved_names[1], aux_names, params)
            if not restored:
                procs.echo("the checkpoint's optimizer state does not fit this version of the model; Adam restarts with fresh moments")
                optimizer, aux_optimizer = optimizers(model, lr)
        step, wall = state["step"], state["wall_seconds"]
        rank_rngs = state.get("rank_rngs")
        if rank_rngs and len(rank_rngs) == procs.world_size:  # the same processes: each goes on with its draws
            own = rank_rngs[procs.rank]
            rng.setstate(own["python_rng"])
            torch.set_rng_state(own["torch_rng"])
            if own.get("cuda_rng") is not None and device.type == "cuda":
                torch.cuda.set_rng_state(own["cuda_rng"], device)
        elif procs.main:  # a single process's checkpoint, or rank 0 of another number of processes
            rng.setstate(state["python_rng"])
            torch.set_rng_state(state["torch_rng"])
        else:  # a rank the checkpoint has no draws of: a stream of its own from (seed, rank, step)
            rng = random.Random(f"dqcodec-train:{seed}:{procs.rank}:{step}")
            torch.manual_seed(rng.getrandbits(63))
        procs.echo(f"resumed {ckpt_path} at step {step}")

    folders = [data] if isinstance(data, Path) else list(data)
    images = [image for folder in folders for image in load_images(folder, max(s.crop for s in schedule))]
    names = ", ".join(map(str, folders))
    procs.echo(f"{len(images)} training images from {names}; {total_steps} steps; {sum(p.numel() for p in model.parameters())} parameters")
    if procs.active:
        batches = ", ".join(str(s.batch) for s in schedule)
        procs.echo(f"{procs.world_size} processes ({dist.get_backend()}, {device.type}): batch {batches} per process, {procs.world_size}x that in all")
    is_dq = registry.is_dq(model)
    lmbdas = torch.tensor([0.0] if lossless else (lmbda if isinstance(lmbda, list) else [lmbda]))
    qualities = torch.tensor(model.config.qualities) if is_dq else None
    if is_dq and len(lmbdas) not in (1, len(qualities)):
        raise click.BadParameter(f"give one λ, or one per quality ({len(qualities)})", param_hint="--lmbda")
    if not is_dq and len(lmbdas) != 1:
        raise click.BadParameter("a baseline trains at one λ", param_hint="--lmbda")
    criterion = None
    if not is_dq:
        # imported here: importing dqcodec must not import compressai
        from compressai.losses import RateDistortionLoss

        criterion = RateDistortionLoss(lmbda=float(lmbdas[0]))
    lmbdas = lmbdas.to(device)
    log_path = out / "log.csv"
    if procs.main:
        drop_rows_after(log_path, step)  # rows logged after the checkpoint we resumed from
    new_log = not log_path.exists()
    model.train()
    if lossless:
        model.eval()  # the frozen quantizers must not update their codebooks
        model.pixels.train()
    if new_level == "only":
        model.train_new_level()
    # a new level trained alone trains on the qualities that code it (they come after those of the levels above)
    first_quality = next(i for i, q in enumerate(model.config.qualities) if q[-1]) if new_level == "only" else 0

    if debug_dir:  # what this process starts from, before DDP gives every process rank 0's weights
        trace = {"rank": procs.rank, "world_size": procs.world_size, "start_step": step, "start_state": state_digest(model.state_dict()), "crops": [], "qualities": []}
    aux_params = [p for g in aux_optimizer.param_groups for p in g["params"]] if aux_optimizer else []
    net, codebooks = model, None
    if procs.active:
        # Every parameter DDP manages must get a gradient from the loss at every step, or DDP stops
        # with an error (find_unused_parameters=True would search the graph every step instead). A
        # DQ model's do, at every quality: its nested dropout zeroes the dropped groups' codes and
        # likelihoods, so their weights get zero gradients, not none; frozen weights (--lossless)
        # do not require gradients, so DDP leaves them alone. A CompressAI baseline's
        # entropy-bottleneck quantiles get no gradient from the loss (only from the aux loss, which
        # runs on the unwrapped model outside DDP's forward and backward): DDP ignores them, and
        # their aux-loss gradients are averaged over the processes by hand below.
        if aux_params:
            names = [n for n, p in model.named_parameters() if n.endswith(".quantiles")]
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
            for p in aux_params:  # DDP's initial broadcast skips ignored parameters
                dist.broadcast(p.data, 0)
        if is_dq and not lossless and procs.world_size > 1:
            codebooks = SharedCodebookUpdates(model, seed)
        # DDP broadcasts rank 0's parameters and buffers now, and (by default) rank 0's buffers at the
        # start of every forward
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def checkpoint():
        rank_rngs = None
        if procs.active:
            own = {"python_rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
            rank_rngs = [None] * procs.world_size
            dist.all_gather_object(rank_rngs, own)
        if procs.main:
            save_atomic(
                to_cpu(
                    {
                        "model": zoo.checkpoint_of(model),  # the unwrapped model: no DDP "module." prefix
                        "optimizer": optimizer.state_dict(),
                        "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer else None,
                        "optimized_names": optimized_names(model),
                        "step": step,
                        "wall_seconds": wall,
                        "python_rng": rng.getstate(),
                        "torch_rng": torch.get_rng_state(),
                        "schedule": [s.__dict__ for s in schedule],
                        "lmbda": lmbda,
                        "keep_all": keep_all,
                        "quality": quality,
                        **({"rank_rngs": rank_rngs} if rank_rngs else {}),
                    }
                ),
                ckpt_path,
            )
        procs.barrier()  # no process goes on (or ends, and lets a next run read it) before the checkpoint is written

    last_save = time.monotonic()
    status = {"text": ""}
    with contextlib.ExitStack() as stack:
        if codebooks:
            stack.callback(codebooks.remove)
        log_file, bar = None, None
        if procs.main:  # the log and the progress bar: rank 0's
            log_file = stack.enter_context(open(log_path, "a", newline=""))
            bar = stack.enter_context(click.progressbar(length=total_steps, label="training", item_show_func=lambda _: status["text"], show_pos=True))
        log = csv.writer(log_file) if log_file else None
        if log and new_log:
            log.writerow(["step", "crop", "loss", "bpp", "mse", "psnr", "wall_seconds"])
        if bar:
            bar.update(step)
        while step < last_step:
            started = time.monotonic()
            stage = stage_at(schedule, step)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, lr)
            if codebooks:
                codebooks.begin_step(step)
            x = random_batch(images, stage.crop, stage.batch, rng).to(device)
            if is_dq:
                model.anneal(step / total_steps)
                drawn = sample_qualities(len(qualities), stage.batch, keep_all, quality, first_quality)
                output = forward(net, x, qualities[drawn].to(device), bf16, channels_last)
                losses = rate_distortion(output, x, lmbdas[drawn.to(device) % len(lmbdas)])
                loss = losses["loss"] + output["vq_loss"]
            else:
                output = forward(net, x, None, bf16, channels_last)
                losses = criterion(output, x)
                loss = losses["loss"]
            if debug_dir:
                trace["crops"].append(hashlib.sha256(x.cpu().numpy().tobytes()).hexdigest()[:16])
                trace["qualities"].append(drawn.tolist() if is_dq else None)
            optimizer.zero_grad()
            loss.backward()  # under DDP, the gradients come out averaged over the processes
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if aux_optimizer:
                aux_optimizer.zero_grad()
                model.aux_loss().backward()
                for p in aux_params:
                    procs.mean(p.grad)  # the same on every process anyway (no data in it): kept so by construction
                aux_optimizer.step()
            step += 1
            wall += time.monotonic() - started

            if procs.main:
                mse = losses["mse_loss"].item()
                psnr = 10 * math.log10(1 / max(mse, 1e-10))
                status["text"] = f"loss {loss.item():.3f} bpp {losses['bpp_loss'].item():.3f} psnr {psnr:.2f}"
            if step % 10 == 0:  # the log holds the means over every process's crops
                values = procs.mean(torch.stack([loss.detach(), losses["bpp_loss"].detach(), losses["mse_loss"].detach()]).float())
                if log:
                    loss_value, bpp, mse = values.tolist()
                    psnr = 10 * math.log10(1 / max(mse, 1e-10))
                    log.writerow([step, stage.crop, f"{loss_value:.5f}", f"{bpp:.5f}", f"{mse:.6f}", f"{psnr:.3f}", f"{wall:.1f}"])
                    log_file.flush()
            if bar:
                bar.update(1)
            if procs.rank0_says(time.monotonic() - last_save > checkpoint_minutes * 60) or step == last_step:
                checkpoint()
                last_save = time.monotonic()
    if debug_dir:
        trace["end_step"] = step
        trace["state"] = state_digest(model.state_dict())
        debug_dir.mkdir(parents=True, exist_ok=True)
        (debug_dir / f"rank{procs.rank}-from{trace['start_step']}.json").write_text(json.dumps(trace))
    return ckpt_path


def initial_model(init: str):
    """The model ``--init`` names, in training mode: a shipped model, or the float weights of a run's checkpoint file."""
    if init.endswith(".pt") and Path(init).is_file():
        return zoo.from_checkpoint(torch.load(init, weights_only=True, map_location="cpu")["model"]).train()
    if init.endswith(zoo.SUFFIX) and Path(init).is_file():  # one version of a model, e.g. in models/previous/
        return copy.deepcopy(zoo.load_file(Path(init))[0]).train()
    return copy.deepcopy(zoo.load(init)[0]).train()


@click.command(context_settings={"show_default": True})
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="run folder (checkpoint.pt, log.csv); an existing checkpoint there is resumed")
@click.option("--schedule", default="64x16:6000,128x8:2000", help="progressive crops: CROPxBATCH:STEPS,...")
@click.option("--lmbda", default="0.01", help="rate-distortion trade-off: λ·255²·MSE + bpp; one λ, or (dq) one per quality, comma-separated, for crops coded at that quality")
@click.option("--lr", default=3e-4)
@click.option("--channels", type=int, help="dq only: channels of the transforms (default: the architecture's)")
@click.option("--residual-blocks", type=int, help="dq only: residual blocks in the synthesis (default: the architecture's)")
@click.option("--plain-vq", is_flag=True, help="one shared projection and codebook per level (the ablation)")
@click.option("--soft-to-hard", is_flag=True, help="codebooks learnt by gradients through annealed soft assignments, with their entropy in the loss, instead of EMA (the second seed; quantize.py)")
@click.option("--checkpoint-minutes", default=2.0)
@click.option("--seed", default=0)
@click.option("--keep-all", default=0.0, help="fraction of crops that keep every bottom group (the rest draw a quality)")
@click.option("--until", type=int, help="stop after this step (a checkpoint to resume from, e.g. with other options)")
@click.option("--init", "init_model", help="start from the weights of this shipped model, of one version's .dqw file, or of a run's checkpoint.pt (fresh optimizer), e.g. to train on")
@click.option("--arch", type=click.Choice(list(registry.ARCHITECTURES)), default="dq-hier", help="a DQ architecture, or a CompressAI baseline")
@click.option("--size", default=3, help="baselines only: the CompressAI zoo quality whose channel counts to use")
@click.option("--lossless", is_flag=True, help="train only the pixel likelihood of the --init model (added if it has none), on code + pixel bits")
@click.option("--pixels-from", help="with --lossless: start the --init model's new pixel likelihood from this shipped model's (its size and weights)")
@click.option("--mixtures", default=3, help="with --lossless: logistic components of a new pixel likelihood")
@click.option("--pixel-hidden", type=int, help="with --lossless: channels of a new pixel likelihood, or widen the --init model's to this many")
@click.option("--add-level", help="GROUPSxCODEBOOKxDIM[xHIDDEN]: give the --init dq model a level at half its last stride (DQCodec.with_level) and train only that")
@click.option("--train-all", is_flag=True, help="with --add-level: train every weight with the new level, on crops of every quality, not the new level alone")
@click.option("--level-qualities", default="2,4,8,16", help="with --add-level: groups of the new level coded at each new quality")
@click.option("--ecvq", default=0.0, help="dq only: choose the trained levels' indices (the new one's, with --add-level) as the encoder does, |z - e|^2 + ECVQ * bits under the prior: entropy-constrained VQ in training; 0 picks the nearest codeword")
@click.option("-q", "--quality", type=int, help="dq only: code every crop at this quality (default: each crop draws one)")
@click.option("--bf16", is_flag=True, help="forward pass in bfloat16 autocast (quantizers in float32); about 2x faster on CPUs with AVX-512 BF16")
@click.option("--channels-last", is_flag=True, help="channels-last memory format for the model and the crops")
@click.option("--debug-ranks", type=click.Path(file_okay=False, path_type=Path), hidden=True, help="write each process's crops and weight digests here (for tests)")
def main(data, out, schedule, lmbda, lr, channels, residual_blocks, plain_vq, soft_to_hard, checkpoint_minutes, seed, keep_all, until, init_model, arch, size, lossless, pixels_from, mixtures, pixel_hidden, add_level, train_all, level_qualities, ecvq, quality, bf16, channels_last, debug_ranks):
    """Train a DQ codec (or, with --arch, a CompressAI baseline) on the images in the DATA folders
    (e.g. data/train data/train-native); every crop draws an image from all of them alike.

    Launched with torchrun (torchrun --standalone --nproc_per_node N -m dqcodec.train ...), N
    processes train together under DistributedDataParallel; each stage's batch is per process."""
    resuming = (out / CHECKPOINT).exists()
    if lossless and not init_model and not resuming:
        raise click.UsageError("--lossless needs --init MODEL (or a checkpoint in --out to resume)")
    if add_level and (not init_model or lossless):
        raise click.UsageError("--add-level needs --init MODEL, without --lossless")
    if train_all and not add_level:
        raise click.UsageError("--train-all applies to --add-level")
    if pixels_from and not (lossless and init_model):
        raise click.UsageError("--pixels-from applies to a pixel likelihood trained with --lossless --init MODEL")
    if pixel_hidden and not (lossless and init_model):
        raise click.UsageError("--pixel-hidden applies to a pixel likelihood trained with --lossless --init MODEL")
    torch.manual_seed(seed)
    if resuming:  # the checkpoint holds the model: --init and the options that shape a new model do not apply
        model = zoo.from_checkpoint(torch.load(out / CHECKPOINT, weights_only=True, map_location="cpu")["model"])
    elif init_model:
        model = initial_model(init_model)
        if lossless and registry.is_dq(model):  # anything else gets train()'s clear refusal
            if pixels_from:
                if model.lossless:
                    raise click.UsageError("--pixels-from applies to an --init model without a pixel likelihood")
                try:
                    model.adopt_pixel_model(zoo.load(pixels_from)[0])
                except ModelError as error:
                    raise click.UsageError(f"--pixels-from: {error}") from None
            elif not model.lossless:
                model.add_pixel_model(mixtures, pixel_hidden or DQConfig.pixel_hidden)
            if model.lossless and pixel_hidden and pixel_hidden != model.config.pixel_hidden:
                try:
                    model.widen_pixel_model(pixel_hidden)
                except ValueError as error:
                    raise click.BadParameter(str(error), param_hint="--pixel-hidden") from None
        if add_level:
            if not registry.is_dq(model):
                raise click.UsageError("--add-level applies to a dq model")
            model = model.with_level(parse_level(add_level), parse_groups(level_qualities))
    else:
        model = registry.build(arch, channels=channels, depthwise=not plain_vq, residual_blocks=residual_blocks, size=size,
                               codebook_learning="soft-to-hard" if soft_to_hard else "ema")
    if quality is not None and not (registry.is_dq(model) and 1 <= quality <= model.lossy_qualities):
        raise click.BadParameter("must be one of the dq model's qualities", param_hint="--quality")
    lmbdas = parse_lmbda(lmbda)
    path = train(data, out, parse_schedule(schedule), lmbdas if len(lmbdas) > 1 else lmbdas[0], lr, model, checkpoint_minutes, seed, keep_all, until, lossless, quality, bf16, channels_last, debug_ranks, ("all" if train_all else "only") if add_level else None, ecvq)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"checkpoint: {path}")


if __name__ == "__main__":
    main()
