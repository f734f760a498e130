"""Encoder-side refinement of one level's codes (the last a quality codes), for one image.

The analysis transform is trained to serve every image at once; a few gradient steps
on one image's projected vectors z of that level find codes that the decoder turns into a
closer image for about the same bits. Only the encoder's choice of indices changes:
the decoder, the probability tables and the file format are untouched, so a refined
file decodes like any other.

Each step decodes the nearest codewords of z (straight-through gradient, as in
training) and descends on MSE + rate_lambda * bits per pixel. The bits are those of a
soft assignment of z to the codewords (a softmax over negative distances) under the
prior's tables for the codes of the previous step, so z is steered away from
codewords the prior finds unlikely; the hard choice is made by the encoder afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Adam's step on z. The bottom codewords have a norm of about 6, so a step of 0.1
# moves a vector across a small fraction of its Voronoi cell.
LEARNING_RATE = 0.1
# MSE (images in [0, 1]) per bit per pixel: about JPEG's slope at 0.5-1 bpp on photos,
# so z trades bits for distortion where that beats the curve dq is measured against.
RATE_LAMBDA = 1.5e-3
TEMPERATURE = 0.5  # of the soft assignment, in squared-distance units


def refine_level(
    model, i: int, x: torch.Tensor, context: torch.Tensor | None, z: torch.Tensor, groups: int, steps: int
) -> torch.Tensor:
    """Projected vectors (M, N, D) of level i refined for ``steps`` steps on image x (1, 3, H, W),
    given the level's decoded context; only its first ``groups`` groups count, and the levels
    below it code nothing. Level i is at stride 16 / 2^i."""
    level = model.levels[i]
    quantizer, prior = level.quantizer, level.prior
    h, w = x.shape[-2] * 2**i // 16, x.shape[-1] * 2**i // 16
    keep = level.keep_mask(groups, 1)
    pixels = x.shape[-2] * x.shape[-1]
    z = z.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=LEARNING_RATE)
    with torch.enable_grad():
        for _ in range(steps):
            codes = quantizer.straight_through(z, 1, h, w)
            x_hat = model.synthesis(model.synthesis_input(i, level.drop(codes, keep), context))
            bits = _soft_bits(prior, context, codes.detach(), quantizer.distances(z)[:groups]).sum() / pixels
            loss = F.mse_loss(x_hat, x) + RATE_LAMBDA * bits
            (z.grad,) = torch.autograd.grad(loss, [z])  # the model's own parameters keep no gradients
            optimizer.step()
    return z.detach()


def _soft_bits(prior, context, codes, distances):
    """Expected bits (G, N) of the first G groups' soft assignments, given their distances (G, N, K),
    under the prior's tables."""
    with torch.no_grad():
        logits = prior(context, codes, groups=distances.shape[0])  # (1, G, K, H, W)
        bits = -F.log_softmax(logits, 2) / math.log(2)
        bits = bits[0].permute(0, 2, 3, 1).reshape(distances.shape)
    return (F.softmax(-distances / TEMPERATURE, -1) * bits).sum(-1)
