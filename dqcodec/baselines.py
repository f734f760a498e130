"""CompressAI's bmshj2018 models as baselines, trained here with the same command as dq.

Their pretrained weights cannot be downloaded, so ``dqcodec train --arch`` trains them from
scratch and ``dqcodec export`` ships them; they code through their own compress/decompress
(CompressAI's rANS coder), not through the .dq container.
"""

from __future__ import annotations

import importlib
import struct
import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from compressai.models import CompressionModel

# CompressAI's zoo functions by architecture; compressai itself is imported only when one is built
ARCHITECTURES = {"bmshj2018-factorized": "bmshj2018_factorized", "bmshj2018-hyperprior": "bmshj2018_hyperprior"}
STRIDE = 64  # the hyperprior's total downsampling; inputs are padded to a multiple of it

# what importing compressai 1.2.8 warns about with torch 2.14: its own use of torch.jit.script
JIT_SCRIPT_WARNING = r"`torch\.jit\.script` is deprecated"


def compressai_module(name: str):
    """Import a compressai module (seconds: it imports its point-cloud data sets) without passing on
    the FutureWarning it raises on torch's jit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_SCRIPT_WARNING, category=FutureWarning)
        return importlib.import_module(name)


def build(arch: str, size: int) -> CompressionModel:
    """An untrained model; ``size`` is the CompressAI zoo quality whose channel counts it takes."""
    model = getattr(compressai_module("compressai.zoo"), ARCHITECTURES[arch])(quality=size, pretrained=False)
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


def to_bytes(name: str, out: dict, size: tuple[int, int]) -> bytes:
    """A minimal file around CompressAI's strings: model name, image size, latent shape,
    then each string with its length. Every byte of it is counted in evaluations."""
    encoded = name.encode()
    strings = [s[0] for s in out["strings"]]
    header = struct.pack(f"<B{len(encoded)}sIIHHB", len(encoded), encoded, *size, *out["shape"], len(strings))
    return header + b"".join(struct.pack("<I", len(s)) + s for s in strings)


def from_bytes(data: bytes) -> tuple[str, dict, tuple[int, int]]:
    (n,) = struct.unpack_from("<B", data)
    name = data[1 : 1 + n].decode()
    height, width, *shape, count = struct.unpack_from("<IIHHB", data, 1 + n)
    offset = 1 + n + struct.calcsize("<IIHHB")
    strings = []
    for _ in range(count):
        (length,) = struct.unpack_from("<I", data, offset)
        strings.append([data[offset + 4 : offset + 4 + length]])
        offset += 4 + length
    return name, {"strings": strings, "shape": tuple(shape)}, (height, width)
