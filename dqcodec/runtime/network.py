"""A ``graph`` tree run on a weights file's arrays, in float32 or in exact fixed point, channels last.

``float_layers`` and ``exact_layers`` turn a tree and the arrays under its state-dict prefix into a list of
functions, the weights prepared once; ``run`` applies them. The exact version is the torch path's
(``exact.exact_layers``) on numpy: the same integer weights, sums and rounding, so the same integers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import numpy as np

from .. import fixed, graph
from . import kernels

Arrays = Mapping[str, np.ndarray]
Function = Callable[[np.ndarray], np.ndarray]


def run(layers: list[Function], x: np.ndarray) -> np.ndarray:
    for layer in layers:
        x = layer(x)
    return x


def float_layers(layer: graph.Layer, arrays: Arrays, prefix: str) -> list[Function]:
    """The float32 functions of a layer tree whose parameters are ``arrays[prefix + ...]``."""
    if isinstance(layer, graph.Conv):
        weight, bias = arrays[prefix + "weight"].astype(np.float32), arrays[prefix + "bias"].astype(np.float32)
        return [_conv(layer, weight, bias)]
    if isinstance(layer, graph.Gdn):
        return [_gdn(arrays, prefix)]
    if isinstance(layer, graph.Block):
        body = float_layers(layer.body, arrays, prefix + "body.")
        return [lambda x: x + run(body, x)]
    return _common(layer, arrays, prefix, float_layers, kernels.gelu)


def exact_layers(layer: graph.Layer, arrays: Arrays, prefix: str) -> list[Function]:
    """The exact fixed-point functions (float64 integer counts of 2^-FRAC in and out) of a layer tree."""
    if isinstance(layer, graph.Conv):
        weight, bias = fixed.fixed_weight(arrays[prefix + "weight"]), fixed.fixed_bias(arrays[prefix + "bias"])
        fixed.check_exact_range(weight, bias, layer.transposed)
        conv = _conv(layer, weight, bias)
        return [lambda x: fixed.rescale(conv(x))]
    if isinstance(layer, graph.Block):
        body = exact_layers(layer.body, arrays, prefix + "body.")
        return [lambda x: np.clip(x + run(body, x), -fixed.LIMIT, fixed.LIMIT)]  # integers add exactly
    return _common(layer, arrays, prefix, exact_layers, fixed.gelu)


def _common(layer: graph.Layer, arrays: Arrays, prefix: str, compile_layers, gelu: Function) -> list[Function]:
    if isinstance(layer, graph.Chain):
        return [f for i, child in enumerate(layer.layers) for f in compile_layers(child, arrays, f"{prefix}{i}.")]
    if isinstance(layer, graph.Gelu):
        return [gelu]
    if isinstance(layer, graph.Shuffle):
        return [partial(kernels.pixel_shuffle, factor=layer.factor)]
    raise TypeError(f"the runtime has no {type(layer).__name__} here")


def _conv(layer: graph.Conv, weight: np.ndarray, bias: np.ndarray) -> Function:
    if layer.transposed:
        return partial(
            kernels.conv_transpose2d,
            weight=kernels.transposed_taps(weight),
            bias=bias,
            kernel=layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
            output_padding=layer.output_padding,
        )
    return partial(
        kernels.conv2d,
        weight=kernels.conv_weight(weight),
        bias=bias,
        kernel=layer.kernel,
        stride=layer.stride,
        padding=layer.padding,
    )


def _gdn(arrays: Arrays, prefix: str) -> Function:
    """``layers.GDN``: x / sqrt(beta + gamma x^2), its parameters stored reparametrized (bounded square roots)."""

    def parameter(name: str) -> np.ndarray:
        reparam = prefix + name + "_reparam."
        bound, pedestal = arrays[reparam + "lower_bound.bound"], arrays[reparam + "pedestal"]
        return (np.maximum(arrays[prefix + name], bound) ** 2 - pedestal).astype(np.float32)

    beta, gamma = parameter("beta"), parameter("gamma")
    weight = np.ascontiguousarray(gamma.T)  # (in, out) for x^2 (.., in)

    def gdn(x: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x) @ weight + beta)

    return gdn
