"""Torch modules of a DQ model's networks, built from their one definition in ``graph``."""

from __future__ import annotations

import torch.nn as nn

from . import exact, graph
from .layers import GDN


def build(layer: graph.Layer) -> nn.Module:
    """The torch module of a layer description, its state-dict keys the description's paths."""
    if isinstance(layer, graph.Conv):
        kind = nn.ConvTranspose2d if layer.transposed else nn.Conv2d
        extra = {"output_padding": layer.output_padding} if layer.transposed else {}
        return kind(layer.cin, layer.cout, layer.kernel, stride=layer.stride, padding=layer.padding, **extra)
    if isinstance(layer, graph.Gelu):
        return nn.GELU()
    if isinstance(layer, graph.Shuffle):
        return nn.PixelShuffle(layer.factor)
    if isinstance(layer, graph.Gdn):
        return GDN(layer.channels)
    if isinstance(layer, graph.Chain):
        return nn.Sequential(*(build(child) for child in layer.layers))
    if isinstance(layer, graph.Block):
        return exact.ResNetBlock(*build(layer.body))
    raise TypeError(f"no torch module for {type(layer).__name__}")
