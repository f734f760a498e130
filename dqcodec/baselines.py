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

from .steps import StepPolicy

if TYPE_CHECKING:
    from compressai.models import CompressionModel

# The baselines' architectures (CompressAI's names) and the names of the classes of their models here.
ARCHITECTURES = {"bmshj2018-factorized": "Bmshj2018Factorized", "bmshj2018-hyperprior": "Bmshj2018Hyperprior"}
STRIDE = 64  # the hyperprior's total downsampling; inputs are padded to a multiple of it

# what importing compressai 1.2.8 warns about with torch 2.14: its own use of torch.jit.script
JIT_SCRIPT_WARNING = r"`torch\.jit\.script` is deprecated"

# The relative steps of their weights files (see dqcodec.steps): the synthesis finer than the rest.
STEPS = StepPolicy(rules=((r"^g_s\.2\.", 1 / 2), (r"^g_s\.", 1 / 8), (r"^(g_a|h_a|h_s)\.", 1 / 2)))


def compressai_module(name: str):
    """Import a compressai module (seconds: it imports its point-cloud data sets) without passing on
    the FutureWarning it raises on torch's jit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_SCRIPT_WARNING, category=FutureWarning)
        return importlib.import_module(name)


_CLASSES: dict[str, type] = {}  # by architecture, made when first needed (importing compressai)


def model_class(arch: str) -> type:
    """The class of a baseline's models: CompressAI's model of that architecture, as a subclass that
    takes the zoo quality whose channel counts it uses (``size``) and holds its architecture and size."""
    if arch not in _CLASSES:
        image = compressai_module("compressai.zoo.image")
        _CLASSES[arch] = _baseline_class(arch, image.model_architectures[arch], image.cfgs[arch])
    return _CLASSES[arch]


def built_class(arch: str) -> type | None:
    """The class of a baseline's models if one was built or loaded in this process (compressai is not
    imported to find out)."""
    return _CLASSES.get(arch)


def _baseline_class(arch: str, base: type, channels: dict) -> type:
    def __init__(self, size: int):
        if size not in channels:
            raise ValueError(f"{arch} has sizes {min(channels)} to {max(channels)}, not {size}")
        base.__init__(self, *channels[size])
        self.size = size

    name = ARCHITECTURES[arch]
    doc = f"CompressAI's {arch} of a zoo quality's channel counts (``size``), as a baseline."
    return type(
        name,
        (base,),
        {"__init__": __init__, "arch": arch, "__module__": __name__, "__qualname__": name, "__doc__": doc},
    )


def __getattr__(name: str) -> type:
    """The baseline classes by name, as pickle finds them."""
    arch = next((a for a, n in ARCHITECTURES.items() if n == name), None)
    if arch is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return model_class(arch)


def build(arch: str, size: int) -> CompressionModel:
    """An untrained model; ``size`` is the CompressAI zoo quality whose channel counts it takes."""
    return model_class(arch)(size)


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
