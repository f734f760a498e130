"""Write models/<name>.json, the machine-readable part of a model card, from the training
checkpoint and a benchmarks/rd.py --json result on the held-out photos; for a model with a
pixel likelihood, also from its lossless training checkpoint and a benchmarks/lossless.py --json result.

    python scripts/make_card.py runs/dq-hier/checkpoint.pt bench.json --name dq-hier \
        --lossless runs/dq-lossless/checkpoint.pt lossless.json
"""

import dataclasses
import json
from pathlib import Path

import click
import torch

from dqcodec import zoo


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("bench", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=zoo.DEFAULT_MODEL)
@click.option("--lossless", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CHECKPOINT BENCH_JSON")
def main(checkpoint, bench, name, lossless):
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model, digest = zoo.load(name)
    dq = json.loads(bench.read_text())["summaries"]["dq"]
    card = {
        "name": name,
        "weights": zoo.find(name).path.name,
        "sha256": digest.hex(),
        "config": dataclasses.asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "data": "data/train from scripts/build_dataset.py (see data/manifest.json)",
            "schedule": state["schedule"],
            "steps": state["step"],
            "lmbda": state["lmbda"],
            "wall_seconds": round(state["wall_seconds"]),
        },
        "heldout": [
            {"quality": q, "bpp": round(bpp, 4), "psnr": round(psnr, 3)}
            for q, bpp, psnr in zip(dq["settings"], dq["results"]["bpp"], dq["results"]["psnr-rgb"])
        ],
        "heldout_command": "python benchmarks/rd.py data/heldout --json bench.json",
    }
    if lossless:
        lossless_state = torch.load(lossless[0], map_location="cpu", weights_only=False)
        pooled = json.loads(lossless[1].read_text())["pooled"]
        card["lossless"] = {
            "training": {
                "objective": "code bits + pixel bits; only the pixel likelihood trained",
                "schedule": lossless_state["schedule"],
                "steps": lossless_state["step"],
                "wall_seconds": round(lossless_state["wall_seconds"]),
            },
            "heldout": {name: round(row["bpd"], 4) for name, row in pooled.items()},
            "heldout_command": "python benchmarks/lossless.py data/heldout --json lossless.json",
        }
    path = zoo.models_dir() / f"{name}.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    click.echo(path)


if __name__ == "__main__":
    main()
