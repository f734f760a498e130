"""The pixel likelihood's networks in exact fixed point on numpy arrays (``pixel_tables.ExactPixelModel``'s),
channels last: the context from the codes, and each coarse-to-fine step's raw mixture parameters."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from .. import fixed, graph
from ..graph import BLOCK, STEPS
from . import network


def pixel_unshuffle(x: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) -> (H / r, W / r, C * r^2), torch's pixel_unshuffle channels last (channel c * r^2 + i * r + j)."""
    h, w, c = x.shape
    return (
        x.reshape(h // factor, factor, w // factor, factor, c)
        .transpose(0, 2, 4, 1, 3)
        .reshape(h // factor, w // factor, c * factor * factor)
    )


def folded_neighbours(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weights of a 3x3 convolution over 4x4-folded inputs (``pixel_unshuffle``) that computes the folded
    output of a 5x5 convolution at full resolution: the same products, a sixteenth of the positions."""
    out_channels, in_channels, k, _ = weight.shape
    reach = k // 2
    folded = np.zeros((out_channels, BLOCK * BLOCK, in_channels, BLOCK * BLOCK, 3, 3), dtype=weight.dtype)
    for pi, pj, qi, qj, by, bx in itertools.product(
        range(BLOCK), range(BLOCK), range(BLOCK), range(BLOCK), (-1, 0, 1), (-1, 0, 1)
    ):
        dy, dx = BLOCK * by + qi - pi, BLOCK * bx + qj - pj
        if abs(dy) <= reach and abs(dx) <= reach:
            folded[:, pi * BLOCK + pj, :, qi * BLOCK + qj, by + 1, bx + 1] = weight[:, :, dy + reach, dx + reach]
    return folded.reshape(out_channels * BLOCK * BLOCK, in_channels * BLOCK * BLOCK, 3, 3), np.repeat(
        bias, BLOCK * BLOCK
    )


class ExactPixelModel:
    """A model's pixel likelihood (its arrays under "pixels.") in exact fixed point: integer counts of 2^-FRAC
    in float64 arrays, in and out."""

    def __init__(self, arrays: Mapping[str, np.ndarray], feature_channels: int, mixtures: int, hidden: int):
        named = graph.pixel_likelihood(feature_channels, mixtures, hidden)
        self.inputs = network.exact_layers(named["inputs"], arrays, "pixels.inputs.")
        weight, bias = folded_neighbours(arrays["pixels.neighbours.weight"], arrays["pixels.neighbours.bias"])
        folded = {"pixels.neighbours.weight": weight, "pixels.neighbours.bias": bias}
        self.neighbours = network.exact_layers(
            graph.Conv(weight.shape[1], weight.shape[0], 3), folded, "pixels.neighbours."
        )
        self.steps = [
            network.exact_layers(named[f"steps.{s}"], arrays, f"pixels.steps.{s}.") for s in range(len(STEPS))
        ]

    def context(self, features: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        """The steps' shared input (H / 4, W / 4, hidden) from the synthesis' last features (H / 2, W / 2, F) and
        image (H, W, 3), all fixed point."""
        return network.run(
            self.inputs, np.concatenate([pixel_unshuffle(features, 2), pixel_unshuffle(x_hat, BLOCK)], -1)
        )

    def params(self, context: np.ndarray, step: int, residual: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """Raw mixture parameters (H / 4, W / 4, len(step), 10K) of a step's positions, from the fixed-point
        residuals (x - x_hat) / MEAN_SCALE (H, W, 3), of which it sees those known before the step, and ``inside``
        (H, W), 1 in the image and 0 in its padding."""
        h, w = inside.shape
        known = np.tile(graph.known_before(step), (h // BLOCK, w // BLOCK)).astype(np.float64) * inside
        residual = pixel_unshuffle(residual * known[..., None], BLOCK)
        known = pixel_unshuffle((known * fixed.SCALE)[..., None], BLOCK)
        local = network.run(self.neighbours, np.concatenate([residual, known], -1))  # already folded
        raw = network.run(self.steps[step], np.concatenate([context, residual, local], -1))
        return raw.reshape(*raw.shape[:2], len(STEPS[step]), -1)
