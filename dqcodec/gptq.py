"""Hessian-weighted rounding of a model's convolutions on calibration images (GPTQ).

Rounding each weight to its nearest step ignores that a layer's inputs are correlated (and mostly
not zero-mean): the rounding errors of a kernel add up in its output. Choi et al. weight the
quantization error by the loss's Hessian; per layer, the Hessian of the output error is
H = E[x x^T] over the layer's input patches x, and GPTQ (Frantar et al., ICLR 2023) rounds the
weights one input column at a time, each time moving the columns not yet rounded to cancel the
error so far (by H's inverse Cholesky factor). The result still lies on the grid of steps, so the
file and the decoder are unchanged; only which grid point each weight gets differs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

HESSIAN_POSITIONS = 4096  # input patches sampled per layer call
HESSIAN_ENTRIES = 1 << 24  # Hessian entries held at once (float64): layers are calibrated in chunks
DAMPING = 0.01  # added to H's diagonal, relative to its mean


def hessian_rounded(
    model: torch.nn.Module,
    state_dict: dict,
    steps: Mapping[str, float | None],
    images: list[torch.Tensor],
    frozen: set[str] = frozenset(),
) -> dict:
    """``state_dict`` with the weights of every convolution that has a step rounded to its grid by GPTQ,
    layer by layer in chunks: each chunk calibrated on ``images`` (model inputs) through the layers
    already rounded. Layers whose weight or bias is in ``frozen`` are left alone. The model is not changed."""
    model = copy.deepcopy(model).eval()
    model.load_state_dict(state_dict)
    layers = {n: m for n, m in _rounded_layers(model, steps).items() if not {n + ".weight", n + ".bias"} & frozen}
    out = dict(state_dict)
    for chunk in _chunks(layers):
        hessians, means = _input_statistics(model, chunk, images)
        for name, module in chunk.items():
            out.update(_round_layer(name, module, hessians[name], means[name], steps[name + ".weight"]))
    return out


def _round_layer(name: str, module, hessian: torch.Tensor, mean: torch.Tensor, step: float) -> dict[str, torch.Tensor]:
    """Round one layer's weight in place by GPTQ and correct its bias; its new tensors by state-dict name."""
    rounded = _gptq_layer(module, hessian, step)
    out = {}
    if module.bias is not None:  # the mean output keeps its value (bias correction)
        out[name + ".bias"] = module.bias.detach() - _mean_shift(module, rounded, mean)
        module.bias.data.copy_(out[name + ".bias"])
    out[name + ".weight"] = rounded
    module.weight.data.copy_(rounded)
    return out


def _mean_shift(module, rounded: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """How much the layer's mean output moves when its weight becomes ``rounded``."""
    change = _conv_form(rounded, module) - _conv_form(module.weight.detach(), module)
    return (change.reshape(len(change), -1).double() @ mean).float()


def _rounded_layers(model: torch.nn.Module, steps) -> dict:
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    return {
        n: m for n, m in model.named_modules() if isinstance(m, convs) and m.groups == 1 and steps.get(n + ".weight")
    }


def _chunks(layers: dict) -> list[dict]:
    chunks, size = [{}], 0
    for name, module in layers.items():
        entries = _columns(module) ** 2
        if chunks[-1] and size + entries > HESSIAN_ENTRIES:
            chunks, size = chunks + [{}], 0
        chunks[-1][name], size = module, size + entries
    return chunks


def _columns(module) -> int:
    return module.weight[0].numel() if not module.transposed else module.weight[:, 0].numel()


@torch.no_grad()
def _input_statistics(model, layers: dict, images: list[torch.Tensor]) -> tuple[dict, dict]:
    """E[x x^T] and E[x] over sampled input patches x of each layer (as its weight's columns see them)."""
    moments = _Moments()
    handles = [module.register_forward_hook(moments.hook(name)) for name, module in layers.items()]
    try:
        for image in images:
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return moments.means()


class _Moments:
    """Sums of x x^T and of x over the input patches of each layer call, HESSIAN_POSITIONS sampled per call."""

    def __init__(self):
        self.generator = torch.Generator().manual_seed(0)
        self.sums, self.firsts, self.counts = {}, {}, {}

    def hook(self, name: str):
        return lambda module, inputs, output: self.add(name, _patches(module, inputs[0]))

    def add(self, name: str, x: torch.Tensor) -> None:
        if len(x) > HESSIAN_POSITIONS:
            x = x[torch.randperm(len(x), generator=self.generator)[:HESSIAN_POSITIONS]]
        x = x.double()
        self.sums[name] = self.sums.get(name, 0) + x.T @ x
        self.firsts[name] = self.firsts.get(name, 0) + x.sum(0)
        self.counts[name] = self.counts.get(name, 0) + len(x)

    def means(self) -> tuple[dict, dict]:
        return {n: self.sums[n] / self.counts[n] for n in self.sums}, {
            n: self.firsts[n] / self.counts[n] for n in self.sums
        }


def _patches(module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input patches (positions, columns), in the order of the columns of ``_conv_form``."""
    k = module.kernel_size
    if module.transposed:  # a transposed convolution is a convolution of the zero-stuffed input
        s, p = module.stride, module.padding
        stuffed = x.new_zeros(*x.shape[:2], (x.shape[2] - 1) * s[0] + 1, (x.shape[3] - 1) * s[1] + 1)
        stuffed[..., :: s[0], :: s[1]] = x
        q = (k[0] - 1 - p[0], k[1] - 1 - p[1])
        x = F.pad(stuffed, (q[1], q[1] + module.output_padding[1], q[0], q[0] + module.output_padding[0]))
        columns = F.unfold(x, k)
    else:
        columns = F.unfold(x, k, module.dilation, module.padding, module.stride)
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def _conv_form(weight: torch.Tensor, module) -> torch.Tensor:
    """A layer's weight as a convolution's (out, in, kh, kw); the inverse of itself."""
    return weight.flip(-1, -2).transpose(0, 1) if module.transposed else weight


def _gptq_layer(module, hessian: torch.Tensor, step: float) -> torch.Tensor:
    weight = _conv_form(module.weight.detach(), module)
    mask = getattr(module, "mask", None)
    mask = torch.ones_like(weight) if mask is None else mask.expand_as(weight)
    rows = mask.reshape(len(weight), -1)
    rounded = torch.zeros_like(rows)
    for pattern in torch.unique(rows, dim=0):  # rows that see the same inputs (masked convolutions)
        same, seen = (rows == pattern).all(1), pattern.bool()
        w = weight.reshape(len(weight), -1)[same][:, seen]
        rounded[same.nonzero()[:, :1], seen.nonzero()[:, 0]] = gptq(w, hessian[seen][:, seen], step)
    return _conv_form(rounded.reshape(weight.shape), module).contiguous()


def gptq(weight: torch.Tensor, hessian: torch.Tensor, step: float, block: int = 128) -> torch.Tensor:
    """Weights (out, columns) rounded to whole float32 steps, column by column in decreasing order of
    H's diagonal, each rounding error cancelled as far as the remaining columns can (GPTQ)."""
    step = float(np.float32(step))
    order = torch.argsort(torch.diag(hessian), descending=True)
    w, h = weight.double()[:, order].clone(), hessian.double()[order][:, order].clone()
    u = _inverse_cholesky(h)
    if u is None:  # not positive definite even when damped: round to nearest
        return weight.div(step).round().mul(step).float()
    q = torch.zeros_like(w)
    for start in range(0, w.shape[1], block):
        end = min(start + block, w.shape[1])
        errors = _gptq_block(w[:, start:end], q[:, start:end], u[start:end, start:end], step)
        w[:, end:] -= errors @ u[start:end, end:]
    return q[:, torch.argsort(order)].float() * torch.tensor(np.float32(step))


def _inverse_cholesky(h: torch.Tensor) -> torch.Tensor | None:
    """The upper Cholesky factor of the damped H's inverse (H is changed), or None if there is none."""
    dead = torch.diag(h) == 0  # inputs that were always zero: rounded to nearest
    h[dead, dead] = 1.0
    h += DAMPING * torch.diag(h).mean() * torch.eye(len(h), dtype=h.dtype)
    try:
        inverse = torch.linalg.solve_triangular(torch.linalg.cholesky(h), torch.eye(len(h), dtype=h.dtype), upper=False)
        return torch.linalg.cholesky(inverse.T @ inverse, upper=True)  # of H^-1 (cholesky_inverse is far slower)
    except RuntimeError:
        return None


def _gptq_block(w: torch.Tensor, q: torch.Tensor, u: torch.Tensor, step: float) -> torch.Tensor:
    """Round a block of columns in place (q gets whole steps), returning the scaled errors."""
    errors = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = torch.round(w[:, i] / step)
        errors[:, i] = (w[:, i] - q[:, i] * step) / u[i, i]
        w[:, i:] -= errors[:, i : i + 1] * u[i : i + 1, i:]
    return errors
