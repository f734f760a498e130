"""A run's files: its checkpoint (written atomically, resumed from, and its optimizer state restored by
parameter name), half-precision snapshots and seeds of it, and its log.csv."""

from __future__ import annotations

import csv
import hashlib
import os
import random
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
LOG_HEADER = ["step", "crop", "loss", "bpp", "mse", "psnr", "wall_seconds"]


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(out: Path) -> dict | None:
    """The checkpoint of the run folder ``out``, or None for a new run."""
    path = out / CHECKPOINT
    return torch.load(path, weights_only=True, map_location="cpu") if path.exists() else None


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
    save_atomic(
        {
            "model": model_checkpoint,
            "step": step,
            "wall_seconds": 0.0,
            "python_rng": random.Random(seed).getstate(),
            "torch_rng": torch_rng,
        },
        path,
    )


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


# ---- optimizers ---------------------------------------------------------------------


def optimized_names(model) -> tuple[list[str], list[str]]:
    """The names of the parameters the main and the auxiliary Adam update, in their order."""
    named = [name for name, p in model.named_parameters() if p.requires_grad]
    return [n for n in named if not n.endswith(".quantiles")], [n for n in named if n.endswith(".quantiles")]


def optimizers(model, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Adam on the trainable weights; a second Adam (lr 1e-3) on entropy-bottleneck quantiles, if any."""
    params = dict(model.named_parameters())
    main, aux = optimized_names(model)
    return torch.optim.Adam([params[n] for n in main], lr=lr), (
        torch.optim.Adam([params[n] for n in aux], lr=1e-3) if aux else None
    )


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
    elif any(
        tuple(s["exp_avg"].shape) != tuple(params[names[i]].shape)
        for i, s in state.items()
        if "exp_avg" in s and i < len(names)
    ) or len(saved["param_groups"][0]["params"]) != len(names):
        return False
    groups = [{**saved["param_groups"][0], "params": list(range(len(names)))}]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return True


def resumed_optimizers(model, lr: float, state: dict, echo) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """The optimizers of ``model`` with a checkpoint's saved state, where it has one that fits (else fresh
    ones, and ``echo`` says why)."""
    optimizer, aux_optimizer = optimizers(model, lr)
    if state.get("optimizer") is None:  # a half-precision snapshot (write_snapshot) or a seed (write_seed)
        echo("the checkpoint holds no optimizer state (a snapshot or a seed); Adam starts with fresh moments")
        return optimizer, aux_optimizer
    params, (main_names, aux_names) = dict(model.named_parameters()), optimized_names(model)
    saved_names = state.get("optimized_names") or (None, None)
    restored = restore_optimizer(optimizer, state["optimizer"], saved_names[0], main_names, params)
    if aux_optimizer:
        restored &= restore_optimizer(aux_optimizer, state["aux_optimizer"], saved_names[1], aux_names, params)
    if restored:
        return optimizer, aux_optimizer
    echo("the checkpoint's optimizer state does not fit this version of the model; Adam restarts with fresh moments")
    return optimizers(model, lr)


# ---- the log ------------------------------------------------------------------------


def drop_rows_after(log_path: Path, step: int) -> None:
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    log_path.write_text("".join(kept))


class Log:
    """A run's log.csv, appended to (with its header if the file is new): a row every ten steps."""

    def __init__(self, path: Path):
        new = not path.exists()
        self.file = open(path, "a", newline="")  # noqa: SIM115  (held for the run; closed by close())
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(LOG_HEADER)

    def row(self, step: int, crop: int, loss: float, bpp: float, mse: float, psnr: float, wall: float) -> None:
        self.writer.writerow([step, crop, f"{loss:.5f}", f"{bpp:.5f}", f"{mse:.6f}", f"{psnr:.3f}", f"{wall:.1f}"])
        self.file.flush()

    def close(self) -> None:
        self.file.close()
