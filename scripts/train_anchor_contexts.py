"""Give a shipped model anchor contexts (checkerboard contexts over its DQ indices) and train them, the rest
frozen; resumable: re-running the same command continues where it stopped.

    python scripts/train_anchor_contexts.py --base dq-3 --anchors 4,2 --run ~/dqcodec-runs/anchors \
        --data data/train --eval data/heldout --eval data/native --eval data/sharp

It writes RUN/checkpoint.pt for `dqcodec export` (the Makefile's `dq3-anchors`), and prints, for every
--eval folder, the float bits of the quality's indices with the group-causal prior alone and with the
anchor contexts (real files: `dqcodec eval` after export).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click
import torch

from dqcodec import zoo
from dqcodec.images import image_files, pad, to_tensor
from dqcodec.model import DQCodec
from dqcodec.training import anchors as training


def anchored(base: DQCodec, per_level: list[int], hidden: int) -> DQCodec:
    """The base model with anchor contexts on the first groups of each level (untrained: they change nothing)."""
    levels = [dataclasses.replace(level, anchors=n) for level, n in zip(base.config.levels, per_level)]
    net = DQCodec(dataclasses.replace(base.config, levels=levels, anchor_hidden=hidden))
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(".prior.anchors." not in key for key in missing):
        raise click.ClickException(f"the base does not fit: missing {missing}, unexpected {unexpected}")
    return net.eval()


@click.command()
@click.option("--base", default="dq-3", show_default=True, help="the installed model to add anchor contexts to")
@click.option(
    "--base-weights", help="the first hex digits of its weights' hash, for a version other than the current one"
)
@click.option("--anchors", "per_level", default="4,2", show_default=True, help="anchored groups of each level")
@click.option("--hidden", default=64, show_default=True)
@click.option("--quality", default=2, show_default=True, help="the quality whose indices train them")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--run", type=click.Path(path_type=Path), required=True)
@click.option("--eval", "eval_dirs", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True)
@click.option("--crop", default=256, show_default=True)
@click.option("--per-image", default=6, show_default=True)
@click.option("--steps", default=4000, show_default=True, help="per anchor context")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(base, base_weights, per_level, hidden, quality, data, run, eval_dirs, crop, per_image, steps, seed, threads):
    torch.set_num_threads(threads)
    run.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.time(), time.process_time()
    weights_hash = bytes.fromhex(base_weights) if base_weights else None
    net = anchored(zoo.load(base, weights_hash)[0], [int(n) for n in per_level.split(",")], hidden)
    state_path = run / "state.pt"
    state = torch.load(state_path, weights_only=False) if state_path.exists() else {"done": {}, "cpu_seconds": 0.0}
    cpu_before = state["cpu_seconds"]  # of the runs before this one

    def save(current: dict | None) -> None:
        state["cpu_seconds"] = cpu_before + time.process_time() - cpu_started
        saved = {**state, "current": current} if current else {k: v for k, v in state.items() if k != "current"}
        torch.save(saved, state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)

    for key, weights in state["done"].items():
        net.levels[key[0]].prior.anchors[key[1]].load_state_dict(weights)
    records = _records(net, run / "records.pt", data, crop, per_image, seed, quality)
    keys = [(i, j) for i, level in enumerate(net.levels) for j in range(len(level.prior.anchors))]
    for key in keys:
        if key in state["done"]:
            continue
        anchor = net.levels[key[0]].prior.anchors[key[1]]
        chosen = [r for r in records if (r["level"], r["group"]) == key]
        resume = state.get("current")
        start, optimiser = 0, None
        if resume and resume["key"] == key:
            anchor.load_state_dict(resume["weights"])
            start, optimiser = resume["step"], resume["optimiser"]
        click.echo(f"level {key[0]} group {key[1]}: {len(chosen)} crops, from step {start} of {steps}")

        def checkpoint(step: int, optimiser_state: dict, key=key, anchor=anchor) -> None:
            save({"key": key, "step": step, "weights": anchor.state_dict(), "optimiser": optimiser_state})

        training.train_group(anchor, chosen, steps, seed, start, optimiser, checkpoint)
        state["done"][key] = anchor.state_dict()
        save(None)
    cpu_hours = state["cpu_seconds"] / 3600
    torch.save({"model": zoo.checkpoint_of(net)}, run / "checkpoint.pt")
    click.echo(
        f"wrote {run / 'checkpoint.pt'}; {cpu_hours:.2f} CPU-hours of training ({time.time() - started:.0f} s this run)"
    )
    for folder in eval_dirs:
        today = anchored_bits = pixels = 0.0
        for path in image_files(folder):
            x = pad(to_tensor(_rgb(path)))
            t, a = training.measured_bits(net, x, quality)
            today, anchored_bits = today + t, anchored_bits + a
            pixels += x.shape[-1] * x.shape[-2]
        click.echo(
            f"{folder.name}: quality {quality}'s indices {today / pixels:.4f} -> {anchored_bits / pixels:.4f} bits per"
            f" (padded) pixel, {100 * (1 - anchored_bits / today):.1f}% fewer"
        )


def _rgb(path: Path):
    from PIL import Image

    return Image.open(path).convert("RGB")


def _records(net, path: Path, data: Path, crop: int, per_image: int, seed: int, quality: int) -> list[dict]:
    if path.exists():
        return torch.load(path, weights_only=False)
    started = time.time()
    made = [r for x in training.crops(data, crop, per_image, seed) for r in training.records(net, x, quality)]
    torch.save(made, path)
    click.echo(f"{len(made)} records from {data} in {time.time() - started:.0f} s")
    return made


if __name__ == "__main__":
    main()
