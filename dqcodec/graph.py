"""A DQ model's networks as data: the one definition that torch's modules and the torch-free runtime are built from.

Each network is a tree of layer descriptions (``Conv``, ``Gelu``, ``Shuffle``, ``Gdn``, ``Chain``, ``Block``,
``MaskedConv``). ``transforms.build`` makes torch modules of it, whose state-dict keys are the tree's paths
("synthesis.2.0.weight"); ``runtime.network`` runs the same tree on the arrays of a weights file under
those keys, in float or in exact fixed point. ``networks(config)`` names every network of a model, so
neither side writes an architecture out by hand.

Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import STRIDE, DQConfig


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with bias, "same" padding (kernel // 2); transposed: an up-sampling one."""

    cin: int
    cout: int
    kernel: int
    stride: int = 1
    transposed: bool = False

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def output_padding(self) -> int:
        return self.stride - 1 if self.transposed else 0


@dataclass(frozen=True)
class Gelu:
    """GELU, the erf form."""


@dataclass(frozen=True)
class Shuffle:
    """Sub-pixel shuffle: (C * r^2, H, W) -> (C, H * r, W * r)."""

    factor: int


@dataclass(frozen=True)
class Gdn:
    """Generalized divisive normalization (analysis only; ``layers.GDN``)."""

    channels: int


@dataclass(frozen=True)
class Chain:
    """Layers applied in order; layer i's parameters are under "i."."""

    layers: tuple


@dataclass(frozen=True)
class Block:
    """x + body(x), the body's parameters under "body."."""

    body: Chain


@dataclass(frozen=True)
class MaskedConv:
    """A prior's convolution whose output group j sees ``free_in`` context channels and the input groups up to
    j (``inclusive``) or up to j - 1 (``priors.GroupCausalPrior``); its mask is ``mask()``."""

    free_in: int
    group_in: int
    group_out: int
    groups: int
    kernel: int
    inclusive: bool

    @property
    def cin(self) -> int:
        return self.free_in + self.groups * self.group_in

    @property
    def cout(self) -> int:
        return self.groups * self.group_out

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def visible_inputs(self, j: int) -> int:
        """How many input channels (context first) output group j sees."""
        return self.free_in + (j + 1 if self.inclusive else j) * self.group_in

    def mask(self) -> np.ndarray:
        """(cout, cin, 1, 1) float32 ones where an output may see an input."""
        mask = np.zeros((self.cout, self.cin, 1, 1), dtype=np.float32)
        for j in range(self.groups):
            mask[j * self.group_out : (j + 1) * self.group_out, : self.visible_inputs(j)] = 1
        return mask


@dataclass(frozen=True)
class AnchorContext:
    """Extra logits for the non-anchor half of a group's positions (a checkerboard: anchors at y + x even, coded
    first): ``codes`` (a ``window`` x ``window`` convolution over the anchors' codes of the group, zero elsewhere,
    and the anchor mask) plus ``logits`` (1x1 over the group-causal prior's logits), GELU, ``mix`` (1x1), GELU,
    ``out`` (1x1), added to the prior's logits. Parameters under "codes.", "logits.", "mix.", "out."."""

    code_dim: int
    codebook: int
    hidden: int
    window: int = 5

    @property
    def codes(self) -> Conv:
        return Conv(self.code_dim + 1, self.hidden, self.window)

    @property
    def logits(self) -> Conv:
        return Conv(self.codebook, self.hidden, 1)

    @property
    def mix(self) -> Conv:
        return Conv(self.hidden, self.hidden, 1)

    @property
    def out(self) -> Conv:
        return Conv(self.hidden, self.codebook, 1)


def anchor_mask(height: int, width: int) -> np.ndarray:
    """(H, W) booleans, True at a checkerboard's anchors (y + x even), which a level codes first."""
    return (np.add.outer(np.arange(height), np.arange(width)) % 2) == 0


Layer = Conv | Gelu | Shuffle | Gdn | Chain | Block | MaskedConv


# ---- a DQ model's networks --------------------------------------------------------------------------------


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> Conv:
    return Conv(cin, cout, k, stride)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> Conv:
    return Conv(cin, cout, k, stride, transposed=True)


def upsample(cin: int, cout: int) -> Chain:
    """Sub-pixel convolution (``layers.subpel_conv3x3``): about a third of the cost of a 5x5 transposed conv on CPU."""
    return Chain((Conv(cin, cout * 4, 3), Shuffle(2)))


def analysis_stages(n: int, levels: int) -> list[Chain]:
    """The analysis, applied in order: image -> the last level's features, then each stage halves the
    resolution for the level above."""
    first: list[Layer] = [conv(3, n)]
    for _ in range(int(math.log2(STRIDE)) - levels):
        first += [Gdn(n), conv(n, n, 3)]
    middle = [Chain((Gdn(n), conv(n, n, 3))) for _ in range(levels - 2)]
    return [Chain(tuple(first)), *middle, Chain((conv(n, n, 3, 1), Gelu(), conv(n, n)))]


def context_decoder(n: int, codes: int, first: bool) -> Chain:
    """Decodes a level's codes (and, below the first level, its context) into the next level's context."""
    if first:
        return Chain((deconv(codes, n), Gelu(), conv(n, n, 3, 1)))
    return Chain((conv(codes + n, n, 3, 1), Gelu(), upsample(n, n)))


def resnet_block(n: int) -> Block:
    return Block(Chain((conv(n, n, 3, 1), Gelu(), conv(n, n, 3, 1))))


def synthesis(n: int, codes: int, stride: int, blocks: int = 0) -> Chain:
    """The last level's codes and context -> the image; its last layer gives the image from the features the
    pixel likelihood reads."""
    layers: list[Layer] = [conv(codes + n, n, 3, 1), Gelu(), *(resnet_block(n) for _ in range(blocks))]
    for _ in range(int(math.log2(stride)) - 1):
        layers += [upsample(n, n), Gelu()]
    return Chain((*layers, upsample(n, 3)))


def mixer(n: int) -> Conv:
    """Mixes a level's features with its context, so every group sees both."""
    return conv(2 * n, 2 * n, 3, 1)


def prior(context_channels: int, groups: int, code_dim: int, codebook: int, hidden: int) -> tuple[MaskedConv, ...]:
    """A level's group-causal prior: a 3x3 masked convolution, then two 1x1 ones, GELU between them."""
    return (
        MaskedConv(context_channels, code_dim, hidden, groups, 3, inclusive=False),
        MaskedConv(0, hidden, hidden, groups, 1, inclusive=True),
        MaskedConv(0, hidden, codebook, groups, 1, inclusive=True),
    )


def anchor_contexts(config: DQConfig, i: int) -> list[AnchorContext]:
    """Level i's anchor contexts, one for each of its first ``anchors`` groups (under "levels.i.anchors.j")."""
    level = config.levels[i]
    return [AnchorContext(level.dim, level.codebook, config.anchor_hidden) for _ in range(level.anchors)]


# ---- the pixel likelihood (``pixel_model``) -----------------------------------------------------------------

BLOCK = 4  # pixels are coded in steps over 4x4 blocks
STEPS = (
    ((0, 0),),
    ((2, 2),),
    ((0, 2), (2, 0)),
    ((1, 1), (1, 3), (3, 1), (3, 3)),
    ((0, 1), (0, 3), (2, 1), (2, 3), (1, 0), (1, 2), (3, 0), (3, 2)),
)
PARAMS_PER_COMPONENT = 10  # weight logit, and per channel a mean, a log-scale and a coupling coefficient
NEIGHBOUR_FEATURES = 8


def known_before(step: int) -> np.ndarray:
    """(4, 4) float32 mask of the block positions coded in the steps before ``step``."""
    known = np.zeros((BLOCK, BLOCK), dtype=np.float32)
    for di, dj in (p for earlier in STEPS[:step] for p in earlier):
        known[di, dj] = 1
    return known


def pixel_likelihood(feature_channels: int, mixtures: int, hidden: int) -> dict[str, Layer]:
    """The pixel likelihood's networks under "pixels.": the shared context from the codes ("inputs"), the 5x5
    convolution over the known pixels ("neighbours") and one net per coarse-to-fine step ("steps.s")."""
    folded = 3 * BLOCK * BLOCK
    step_inputs = hidden + folded + NEIGHBOUR_FEATURES * BLOCK * BLOCK
    named: dict[str, Layer] = {
        "inputs": Conv(4 * feature_channels + folded, hidden, 1),
        "neighbours": Conv(4, NEIGHBOUR_FEATURES, 5),
    }
    for s, step in enumerate(STEPS):
        outputs = len(step) * PARAMS_PER_COMPONENT * mixtures
        named[f"steps.{s}"] = Chain(
            (Conv(step_inputs, hidden, 3), Gelu(), Conv(hidden, hidden, 3), Gelu(), Conv(hidden, outputs, 1))
        )
    return named


def level_channels(config: DQConfig) -> list[int]:
    """Each level's code channels (groups x dim)."""
    return [level.groups * level.dim for level in config.levels]


def context_channels(config: DQConfig, i: int) -> int:
    """The context channels level i's prior sees: none at the top, the decoded levels above it below."""
    return 0 if i == 0 else config.channels


def networks(config: DQConfig) -> dict[str, Layer]:
    """Every network of a model, under its state-dict prefix ("analysis.0", "contexts.0", "mixers.0",
    "synthesis"); the levels' priors are ``prior`` under "levels.i.prior.layers"."""
    n, count, codes = config.channels, len(config.levels), level_channels(config)
    named: dict[str, Layer] = {f"analysis.{i}": stage for i, stage in enumerate(analysis_stages(n, count))}
    named.update({f"contexts.{i}": context_decoder(n, codes[i], i == 0) for i in range(count - 1)})
    named.update({f"mixers.{i}": mixer(n) for i in range(count - 1)})
    named["synthesis"] = synthesis(n, codes[-1], STRIDE >> (count - 1), config.residual_blocks)
    return named
