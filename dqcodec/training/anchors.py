"""Training a trained model's anchor contexts (``graph.AnchorContext``), everything else frozen.

A level with anchors codes each of its first groups in two passes over a checkerboard: the anchors under the
group-causal prior, then the other half given the anchors' codes too. Adding them to a shipped model changes
nothing it computes but those tables, so they can be trained alone, on the encoder's own indices:

1. ``records``: for crops of training photos, the indices the encoder chooses at a quality (its rate-weighted
   choice, ``LevelChain.compress``), each group's codes and the group-causal prior's logits;
2. ``train_group``: one anchor context per (level, group), by cross-entropy on the non-anchor positions
   (both checkerboard phases, so every position trains).

``scripts/train_anchor_contexts.py`` runs it, resumably, and writes a checkpoint for ``dqcodec export``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from .. import exact, graph
from ..entropy import StreamEncoder
from ..images import image_files, to_tensor
from ..model import DQCodec
from ..priors import AnchorNet


def crops(folder: Path, size: int, per_image: int, seed: int) -> list[torch.Tensor]:
    """``per_image`` random size x size crops (1, 3, size, size) of every photo of the folder at least that big."""
    rng = random.Random(seed)
    out = []
    for path in image_files(folder):
        image = Image.open(path).convert("RGB")
        if image.width < size or image.height < size:
            continue
        for _ in range(per_image):
            left, top = rng.randrange(image.width - size + 1), rng.randrange(image.height - size + 1)
            out.append(to_tensor(image.crop((left, top, left + size, top + size))))
    return out


@torch.no_grad()
def records(net: DQCodec, x: torch.Tensor, quality: int) -> list[dict]:
    """Per coded (level, group) of one crop: its indices (H, W), codes (D, H, W) and the group-causal prior's
    float logits (K, H, W) given the level's decoded context and the groups before it."""
    point = net.ladder.resolve(quality, False)
    features = net.analyse(x)
    decoded = net.chain.compress(features, x, point, [StreamEncoder() for _ in net.levels])
    out, context = [], None
    for i, level in enumerate(net.levels):
        groups = point.groups[i]
        if not groups:
            break
        codes = level.codes(decoded.indices[i], groups)
        logits = group_causal_logits(level.prior, context, codes)
        d = level.quantizer.code_dim
        for j in range(groups):
            out.append(
                {
                    "level": i,
                    "group": j,
                    "indices": decoded.indices[i][0, j].clone(),
                    "codes": codes[0, j * d : (j + 1) * d].clone(),
                    "logits": logits[0, j].clone(),
                }
            )
        if i < decoded.last:
            fixed = level.fixed_codes(decoded.indices[i], groups)
            previous = None if context is None else exact.to_fixed(context)
            context = exact.to_float(net.next_context(i, fixed, previous, exact.run_module))
    return out


def group_causal_logits(prior, context: torch.Tensor | None, codes: torch.Tensor) -> torch.Tensor:
    """The prior's logits without its anchor contexts."""
    anchors, prior.anchors = prior.anchors, torch.nn.ModuleList()
    try:
        return prior(context, codes)
    finally:
        prior.anchors = anchors


def bits(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """-log2 p of each index (B, H, W) under logits (B, K, H, W)."""
    return -F.log_softmax(logits, 1).gather(1, indices[:, None]).squeeze(1) / math.log(2)


def train_group(
    net: AnchorNet,
    chosen: list[dict],
    steps: int,
    seed: int,
    start: int = 0,
    optimiser_state: dict | None = None,
    checkpoint: Callable[[int, dict], None] | None = None,
    every: int = 500,
    batch: int = 32,
    learning_rate: float = 2e-3,
) -> None:
    """Train one anchor context on its group's records from step ``start``; ``checkpoint(step, optimiser
    state)`` every ``every`` steps and at the end. Prints the mean bits per non-anchor index as it goes."""
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    if optimiser_state is not None:
        optimiser.load_state_dict(optimiser_state)
    codes = torch.stack([r["codes"] for r in chosen])
    logits = torch.stack([r["logits"] for r in chosen])
    indices = torch.stack([r["indices"] for r in chosen])
    anchors = torch.from_numpy(graph.anchor_mask(*indices.shape[-2:])).float()[None, None]
    generator = torch.Generator().manual_seed(seed + start)
    net.train()
    for step in range(start, steps):
        picked = torch.randint(len(chosen), (batch,), generator=generator)
        mask = anchors if int(torch.randint(2, (1,), generator=generator)) == 0 else 1 - anchors  # both phases
        given = net(codes[picked], logits[picked], mask)
        others = 1 - mask[:, 0]
        loss = (bits(given, indices[picked]) * others).sum() / (others.sum() * batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            with torch.no_grad():
                today = (bits(logits[picked], indices[picked]) * others).sum() / (others.sum() * batch)
            print(
                f"    step {step + 1}: {float(loss):.3f} bits per non-anchor index (group-causal prior {float(today):.3f})"
            )
            if checkpoint is not None:
                checkpoint(step + 1, optimiser.state_dict())
    net.eval()


@torch.no_grad()
def measured_bits(net: DQCodec, x: torch.Tensor, quality: int) -> tuple[float, float]:
    """(the group-causal prior's, the anchored prior's) float bits of one image's indices at a quality."""
    today = anchored = 0.0
    for record in records(net, x, quality):
        level = net.levels[record["level"]]
        idx, logits = record["indices"][None], record["logits"][None]
        base = bits(logits, idx)
        today += float(base.sum())
        j = record["group"]
        if j < len(level.prior.anchors):
            mask = torch.from_numpy(graph.anchor_mask(*idx.shape[-2:])).float()[None, None]
            given = bits(level.prior.anchors[j](record["codes"][None], logits, mask), idx)
            base = torch.where(mask[:, 0] > 0, base, given)
        anchored += float(base.sum())
    return today, anchored
