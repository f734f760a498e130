"""Proxy for a spatial context over the DQ indices (issue 29): how many of the base codes' bits would a
checkerboard context save?

    python benchmarks/spatial_context_proxy.py --train data/train --eval data/heldout --eval data/native \
        --eval data/sharp --out ~/dqcodec-runs/spatial-proxy

The codes are the encoder's own (``LevelChain.compress`` at each quality, rate-weighted choice included).
Today each index of group j is coded under the group-causal prior given the level's context and groups < j
(``GroupCausalPrior``); the proxy keeps that for the "anchor" half of the positions (a checkerboard) and
gives the other half a small network that also reads the anchors' codes of group j in a 5x5 window (the
decoder has them: anchors are coded first). It is trained per (level, group) with cross-entropy on codes of
training crops, in float, and measured as ideal bits (-log2 p) of the evaluation images' real indices,
against the same ideal bits under today's prior (which the file's bytes match to about 0.4%).

It prints, per set and quality, the base codes' ideal bits per pixel today and with the context, and the
saving; the file bytes of that quality are printed beside them so the saving can be read as a share of a file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dqcodec import codec, graph
from dqcodec.images import image_files, pad, to_tensor
from dqcodec.training.anchors import bits, crops, records

WINDOW = 5


class AnchorContext(nn.Module):
    """Extra logits for non-anchor positions from the anchors' codes of the same group and today's logits."""

    def __init__(self, code_dim: int, codebook: int, hidden: int = 64):
        super().__init__()
        self.codes_in = nn.Conv2d(code_dim + 1, hidden, WINDOW, padding=WINDOW // 2)
        self.logits_in = nn.Conv2d(codebook, hidden, 1)
        self.mix = nn.Conv2d(hidden, hidden, 1)
        self.out = nn.Conv2d(hidden, codebook, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, codes: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        seen = torch.cat([codes * anchors, anchors.expand_as(codes[:, :1])], 1)
        h = F.gelu(self.codes_in(seen) + self.logits_in(F.log_softmax(logits, 1)))
        h = F.gelu(self.mix(h))
        return logits + self.out(h)


def split_bits(model: AnchorContext | None, record: dict) -> tuple[float, float]:
    """(today's bits, bits with the context) of one record."""
    codes, logits, indices = record["codes"][None], record["logits"][None], record["indices"][None]
    anchors = torch.from_numpy(graph.anchor_mask(*indices.shape[-2:])).float()[None, None]
    today = bits(logits, indices)
    if model is None:
        return float(today.sum()), float(today.sum())
    with torch.no_grad():
        new = bits(model(codes, logits, anchors), indices)
    mixed = torch.where(anchors[:, 0] > 0, today, new)
    return float(today.sum()), float(mixed.sum())


def train(records: list[dict], code_dim: int, codebook: int, steps: int, seed: int) -> AnchorContext:
    torch.manual_seed(seed)
    model = AnchorContext(code_dim, codebook)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    codes = torch.stack([r["codes"] for r in records])
    logits = torch.stack([r["logits"] for r in records])
    indices = torch.stack([r["indices"] for r in records])
    anchors = torch.from_numpy(graph.anchor_mask(*indices.shape[-2:])).float()[None, None]
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = torch.randint(len(records), (32,), generator=generator)
        # random checkerboard phase, so both parities train
        flip = int(torch.randint(2, (1,), generator=generator))
        a = anchors if not flip else 1 - anchors
        out = model(codes[batch], logits[batch], a)
        loss = (bits(out, indices[batch]) * (1 - a[:, 0])).sum() / (1 - a).sum() / 32
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 500 == 0 or step == steps - 1:
            with torch.no_grad():
                base = (bits(logits[batch], indices[batch]) * (1 - a[:, 0])).sum() / (1 - a).sum() / 32
            print(f"    step {step}: {float(loss):.3f} bits/index at non-anchors (today {float(base):.3f})", flush=True)
    return model.eval()


@click.command()
@click.option("--train", "train_dir", type=click.Path(path_type=Path), required=True)
@click.option("--eval", "eval_dirs", type=click.Path(path_type=Path), multiple=True, required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--model", "model_name", default="dq-3")
@click.option("--quality", "qualities", type=int, multiple=True, default=(2, 1))
@click.option("--crop", default=256)
@click.option("--per-image", default=4)
@click.option("--steps", default=3000)
@click.option("--seed", default=0)
def main(train_dir, eval_dirs, out, model_name, qualities, crop, per_image, steps, seed):
    torch.set_num_threads(2)
    out.mkdir(parents=True, exist_ok=True)
    net, _ = codec.load_dq_model(model_name)
    top = max(qualities)  # the groups of the highest quality include the lower ones' (nested)
    started = time.time()
    training = [r for x in crops(train_dir, crop, per_image, seed) for r in records(net, x, top)]
    print(f"{len(training)} training records from {train_dir} in {time.time() - started:.0f} s", flush=True)
    models = {}
    for key in sorted({(r["level"], r["group"]) for r in training}):
        chosen = [r for r in training if (r["level"], r["group"]) == key]
        level = net.levels[key[0]]
        print(f"  level {key[0]} group {key[1]}: {len(chosen)} crops", flush=True)
        models[key] = train(chosen, level.quantizer.code_dim, level.quantizer.codebook_size, steps, seed)
    summary = {}
    for folder in eval_dirs:
        for quality in qualities:
            pixels = today = mixed = file_bytes = 0
            for path in image_files(folder):
                image = Image.open(path).convert("RGB")
                x = pad(to_tensor(image))
                for record in records(net, x, quality):
                    t, m = split_bits(models.get((record["level"], record["group"])), record)
                    today, mixed = today + t, mixed + m
                pixels += image.width * image.height
                file_bytes += len(codec.compress(image, quality=quality, model=model_name))
            row = {
                "file_bpp": 8 * file_bytes / pixels,
                "ideal_bpp_today": today / pixels,
                "ideal_bpp_context": mixed / pixels,
                "saving_of_codes": 1 - mixed / today,
                "saving_of_file": (today - mixed) / (8 * file_bytes),
            }
            summary[f"{folder.name} q{quality}"] = row
            print(
                f"{folder.name:8} q{quality}: file {row['file_bpp']:.4f} bpp, codes today {row['ideal_bpp_today']:.4f}"
                f" -> {row['ideal_bpp_context']:.4f} bpp ({100 * row['saving_of_codes']:.1f}% of the codes,"
                f" {100 * row['saving_of_file']:.1f}% of the file)",
                flush=True,
            )
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
