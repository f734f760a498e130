"""CompressAI's bmshj2018 models as baselines, trained here with the same command as dq.

Their pretrained weights cannot be downloaded, so ``dqcodec train --arch`` trains them from
scratch and ``dqcodec export`` ships them; they code through their own compress/decompress
(CompressAI's rANS coder), not through the .dq container.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from compressai.zoo import bmshj2018_factorized, bmshj2018_hyperprior

ARCHITECTURES = {
    "bmshj2018-factorized": bmshj2018_factorized,
    "bmshj2018-hyperprior": bmshj2018_hyperprior,
}
STRIDE = 64  # the hyperprior's total downsampling; inputs are padded to a multiple of it


def build(arch: str, size: int) -> CompressionModel:
    """An untrained model; ``size`` is the CompressAI zoo quality whose channel counts it takes."""
    model = ARCHITECTURES[arch](quality=size, pretrained=False)
    model.arch, model.size = arch, size
    return model


def checkpoint(model: CompressionModel) -> dict:
    return {"arch": model.arch, "size": model.size, "state_dict": model.state_dict()}


def from_checkpoint(state: dict) -> CompressionModel:
    model = build(state["arch"], state["size"])
    model.load_state_dict(state["state_dict"])
    model.update(force=True)  # rebuild the coder's tables from the (possibly rounded) weights
    return model.eval()


@torch.no_grad()
def compress(model: CompressionModel, x: torch.Tensor) -> dict:
    """Strings and shapes for a (1, 3, H, W) image in [0, 1], padded (replicate) to the model's stride."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")
    return model.compress(padded)


@torch.no_grad()
def decompress(model: CompressionModel, out: dict, size: tuple[int, int]) -> torch.Tensor:
    x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    return x_hat[..., : size[0], : size[1]].clamp(0, 1)
