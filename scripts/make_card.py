"""Write models/<name>.json, the machine-readable part of a model card, from the training
checkpoint and a benchmarks/rd.py --json result on the held-out photos; for a model with a
pixel likelihood, also from its lossless training checkpoint and a benchmarks/lossless.py --json result.

    python scripts/make_card.py runs/dq-hier/checkpoint.pt bench.json --name dq-hier \
        --lossless runs/dq-lossless-2/checkpoint.pt lossless.json --lossless-base runs/dq-lossless/checkpoint.pt

A CompressAI baseline takes its held-out row from `dqcodec eval`'s JSON for its architecture, and
the base run it was continued from:

    python scripts/make_card.py runs/bmshj2018-factorized-1/checkpoint.pt \
        docs/results/bmshj2018-factorized.json --name bmshj2018-factorized-1 \
        --base runs/bmshj2018-factorized-base/checkpoint.pt
"""

import dataclasses
import json
from pathlib import Path

import click
import torch

from dqcodec import registry, zoo


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("bench", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=zoo.DEFAULT_MODEL)
@click.option(
    "--lossless", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CHECKPOINT BENCH_JSON"
)
@click.option(
    "--lossless-base",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the lossless run the --lossless one was continued from",
)
@click.option(
    "--base", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="baselines: the base run's checkpoint"
)
@click.option(
    "--data",
    default="data/train from scripts/build_dataset.py (see data/manifest.json)",
    show_default=True,
    help="the training data, as the card should describe it",
)
def main(checkpoint, bench, name, lossless, lossless_base, base, data):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model, _ = zoo.load(name)
    card = {
        "name": name,
        "weights": zoo.find(name).path.name,
        "sha256": zoo.registered_digests()[zoo.find(name).path.name],  # the file's, as SHA256SUMS lists it
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "data": data,
            "schedule": state["schedule"],
            "steps": state["step"],
            "lmbda": state["lmbda"],
            "wall_seconds": round(state["wall_seconds"]),
        },
    }
    if not registry.is_dq(model):
        card |= baseline_heldout(state, json.loads(bench.read_text()), name)
        if base:
            base_state = torch.load(base, map_location="cpu", weights_only=True)
            card["training"] |= {"base_steps": base_state["step"], "base_lmbda": base_state["lmbda"]}
    else:
        card["config"] = dataclasses.asdict(model.config)
        card |= dq_heldout(json.loads(bench.read_text())["summaries"]["dq"])
    if lossless:
        runs = [lossless_base, lossless[0]] if lossless_base else [lossless[0]]
        pooled = json.loads(lossless[1].read_text())["pooled"]
        card["lossless"] = {
            "objective": "code bits + pixel bits; only the pixel likelihood trained",
            "training": [lossless_run(run) for run in runs],
            "heldout": {name: round(row["bpd"], 4) for name, row in pooled.items()},
            "heldout_command": "python benchmarks/lossless.py data/heldout --json lossless.json",
        }
    path = zoo.models_dir() / f"{name}.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    click.echo(path)


def lossless_run(checkpoint: Path) -> dict:
    """One lossless training run: its schedule, the codes it trained on and the pixel likelihood's width."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {
        "schedule": state["schedule"],
        "steps": state["step"],
        "quality": state.get("quality"),  # None: every crop drew a quality
        "pixel_hidden": state["model"]["config"]["pixel_hidden"],
        "wall_seconds": round(state["wall_seconds"]),
    }


def dq_heldout(dq: dict) -> dict:
    rows = zip(dq["settings"], dq["results"]["bpp"], dq["results"]["psnr-rgb"])
    return {
        "heldout": [{"quality": q, "bpp": round(bpp, 4), "psnr": round(psnr, 3)} for q, bpp, psnr in rows],
        "heldout_command": "python benchmarks/rd.py data/heldout --json bench.json",
    }


def baseline_heldout(state: dict, results: dict, name: str) -> dict:
    """Architecture and the model's row of `dqcodec eval`'s results for that architecture."""
    if name not in results["settings"]:
        raise click.ClickException(f"{name} is not among the settings of the results file: {results['settings']}")
    row = results["settings"].index(name)
    return {
        "arch": state["model"]["arch"],
        "zoo_quality": state["model"]["size"],
        "heldout": [
            {"bpp": round(results["results"]["bpp"][row], 4), "psnr": round(results["results"]["psnr-rgb"][row], 3)}
        ],
        "heldout_command": "dqcodec eval data/heldout -o docs/results",
    }


if __name__ == "__main__":
    main()
