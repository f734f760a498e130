"""The float transforms of a DQ model: the analysis, the context decoders between levels and the synthesis."""

from __future__ import annotations

import math

import torch.nn as nn

from . import exact
from .config import STRIDE
from .layers import GDN, subpel_conv3x3


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def upsample(cin: int, cout: int) -> nn.Module:
    # sub-pixel convolution: about a third of the cost of a 5x5 transposed conv on CPU
    return subpel_conv3x3(cin, cout, 2)


def analysis_stages(n: int, levels: int) -> list[nn.Module]:
    """The analysis, applied in order: image -> the last level's features, then each stage halves
    the resolution for the level above."""
    first: list[nn.Module] = [conv(3, n)]
    for _ in range(int(math.log2(STRIDE)) - levels):
        first += [GDN(n), conv(n, n, 3)]
    middle = [nn.Sequential(GDN(n), conv(n, n, 3)) for _ in range(levels - 2)]
    return [nn.Sequential(*first), *middle, nn.Sequential(conv(n, n, 3, 1), nn.GELU(), conv(n, n))]


def context_decoder(n: int, codes: int, first: bool) -> nn.Module:
    """Decodes a level's codes (and, below the first level, its context) into the next level's context."""
    if first:
        return nn.Sequential(deconv(codes, n), nn.GELU(), conv(n, n, 3, 1))
    return nn.Sequential(conv(codes + n, n, 3, 1), nn.GELU(), upsample(n, n))


def resnet_block(n: int) -> exact.ResNetBlock:
    return exact.ResNetBlock(conv(n, n, 3, 1), nn.GELU(), conv(n, n, 3, 1))


def synthesis(n: int, codes: int, stride: int, blocks: int = 0) -> nn.Sequential:
    """The last level's codes and context -> the image; its last layer gives the image from the
    features the pixel likelihood reads."""
    layers = [conv(codes + n, n, 3, 1), nn.GELU(), *(resnet_block(n) for _ in range(blocks))]
    for _ in range(int(math.log2(stride)) - 1):
        layers += [upsample(n, n), nn.GELU()]
    return nn.Sequential(*layers, upsample(n, 3))
