"""Training that outgrows one machine: the processes torchrun launched (one DDP replica each), their
random streams, and codebooks kept identical on every process.

Rank 0, like a single process, draws its crops and qualities from the seed; every other rank from a
stream of its own, so the ranks see different crops and a run is reproducible. Only rank 0 writes the
checkpoint and the log; every rank resumes from the same checkpoint."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import click
import torch
import torch.distributed as dist

from .. import registry
from ..quantize import DepthwiseQuantizer


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

    def gather(self, obj) -> list:
        """Every process's ``obj``, by rank."""
        objects = [None] * self.world_size
        dist.all_gather_object(objects, obj)
        return objects


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


def stop_processes(procs: Processes) -> None:
    if procs.owned:
        dist.destroy_process_group()


# ---- random streams -----------------------------------------------------------------


def draws(procs: Processes, seed: int) -> random.Random:
    """This process's stream of crops (python), and torch's of qualities and any noise or re-seeding in the
    model: rank 0's from the seed, every other rank's from (seed, rank). (The caller seeded torch with the
    seed before building the model, so every rank builds the same one.)"""
    if not procs.rank:
        return random.Random(seed)
    rng = random.Random(f"dqcodec-train:{seed}:{procs.rank}")
    torch.manual_seed(rng.getrandbits(63))
    return rng


def resume_draws(procs: Processes, state: dict, rng: random.Random, seed: int) -> random.Random:
    """This process's streams as a checkpoint left them."""
    rank_rngs = state.get("rank_rngs")
    if rank_rngs and len(rank_rngs) == procs.world_size:  # the same processes: each goes on with its draws
        own = rank_rngs[procs.rank]
        rng.setstate(own["python_rng"])
        torch.set_rng_state(own["torch_rng"])
        if own.get("cuda_rng") is not None and procs.device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda_rng"], procs.device)
    elif procs.main:  # a single process's checkpoint, or rank 0 of another number of processes
        rng.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
    else:  # a rank the checkpoint has no draws of: a stream of its own from (seed, rank, step)
        rng = random.Random(f"dqcodec-train:{seed}:{procs.rank}:{state['step']}")
        torch.manual_seed(rng.getrandbits(63))
    return rng


def rank_draws(procs: Processes, rng: random.Random) -> list[dict] | None:
    """Every process's streams, for the checkpoint (None for a single process)."""
    if not procs.active:
        return None
    device = procs.device
    return procs.gather(
        {
            "python_rng": rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
    )


def agree_on_checkpoint(procs: Processes, state: dict | None, out: Path) -> None:
    """Every process must resume the same checkpoint (--out on a file system they all see)."""
    if not procs.active:
        return
    steps = procs.gather(state["step"] if state else None)
    if len(set(steps)) > 1:
        raise click.ClickException(
            f"the processes found different checkpoints in {out} (steps {steps} by rank): --out must be a folder every process sees"
        )


# ---- the replicas -------------------------------------------------------------------


def replicate(procs: Processes, model, aux_params: list, shared_codebooks: bool, seed: int):
    """(the model DDP trains, the shared codebook updates or None). Every parameter DDP manages must get a
    gradient from the loss at every step, or DDP stops with an error (find_unused_parameters=True would search
    the graph every step instead). A DQ model's do, at every quality: its nested dropout zeroes the dropped
    groups' codes and likelihoods, so their weights get zero gradients, not none; frozen weights do not
    require gradients, so DDP leaves them alone. A CompressAI baseline's entropy-bottleneck quantiles get no
    gradient from the loss (only from the aux loss, which runs on the unwrapped model outside DDP's forward
    and backward): DDP ignores them, and their aux-loss gradients are averaged by hand (``Processes.mean``)."""
    if not procs.active:
        return model, None
    if aux_params:
        names = [n for n, p in model.named_parameters() if n.endswith(".quantiles")]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
        for p in aux_params:  # DDP's initial broadcast skips ignored parameters
            dist.broadcast(p.data, 0)
    codebooks = (
        SharedCodebookUpdates(model, seed)
        if shared_codebooks and registry.is_dq(model) and procs.world_size > 1
        else None
    )
    # DDP broadcasts rank 0's parameters and buffers now, and (by default) rank 0's buffers at the
    # start of every forward
    device = procs.device
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    ), codebooks


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
    between machines. It plugs in through each quantizer's ``update_hook``."""

    def __init__(self, model, seed: int):
        self.seed = seed
        self.draws = random.Random()
        self.quantizers = [m for m in model.modules() if isinstance(m, DepthwiseQuantizer)]
        for q in self.quantizers:
            q.update_hook = self.update

    def begin_step(self, step: int) -> None:
        """The same random draws on every process, for every step."""
        self.draws.seed(f"dqcodec-codebooks:{self.seed}:{step}")

    def remove(self) -> None:
        for q in self.quantizers:
            q.update_hook = None

    def update(self, update, z: torch.Tensor, indices: torch.Tensor) -> None:
        """A quantizer's ``update`` from every process's (M, N, D) vectors z and (M, N) indices; every
        process has the same N (same stage, same batch)."""
        world = dist.get_world_size()
        zs, ids = [torch.empty_like(z) for _ in range(world)], [torch.empty_like(indices) for _ in range(world)]
        dist.all_gather(zs, z.contiguous())
        dist.all_gather(ids, indices.contiguous())
        with torch.random.fork_rng(devices=[z.device.index] if z.is_cuda else []):
            torch.manual_seed(self.draws.getrandbits(63))
            update(torch.cat(zs, 1), torch.cat(ids, 1))
