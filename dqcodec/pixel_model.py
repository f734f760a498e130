"""The per-pixel likelihood given the codes, which makes a .dq file lossless: the float model
(what training runs) and its mixture's maths.

Pixels are coded in five steps over every 4x4 block, coarse to fine, each step one pass of
a small network that sees the codes and every pixel of the steps before it:

    0 . . .     step 0: (0,0), from the codes alone
    . . . .     step 1: (2,2), the centre of four step-0 pixels
    2 . 2 .     step 2: (0,2) and (2,0)
    . 3 . 3     step 3: the odd rows' odd columns, between four known pixels each
    . . . .     step 4: the eight others, between four known neighbours each

So only one pixel in 16 is predicted from the codes alone. The codes enter through the
decoder's last feature map (stride 2) and its lossy reconstruction x_hat, both folded to
the block grid. The known pixels enter twice: folded as they are, and through a 5x5
convolution at full resolution (shared by every position, so "interpolate the known
neighbours" is one set of weights rather than sixteen), then folded.

Each pixel's three channels follow a discretized mixture of logistics with coupled
channels, as in PixelCNN++: one set of component weights shared by R, G and B; G's mean
shifted by R's residual, B's by R's and G's. ``mixture_log_prob`` is the joint mixture's
likelihood; the coder computes the same mixture in exact integers (``pixel_tables``) and walks
it channel by channel (``pixel_codec``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import graph, lowbit
from .graph import BLOCK, NEIGHBOUR_FEATURES, PARAMS_PER_COMPONENT, STEPS  # noqa: F401  (re-exported)
from .transforms import build

MEAN_SCALE = 32.0  # raw mean outputs are in units of 32 grey levels around x_hat


def fold(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 16, H/4, W/4): every pixel by its position di * 4 + dj in its block."""
    b, c, h, w = x.shape
    return F.pixel_unshuffle(x, BLOCK).view(b, c, BLOCK * BLOCK, h // BLOCK, w // BLOCK)


class PixelModel(nn.Module):
    def __init__(self, feature_channels: int, mixtures: int, hidden: int):
        super().__init__()
        named = graph.pixel_likelihood(feature_channels, mixtures, hidden)  # their one definition
        self.inputs = build(named["inputs"])
        self.neighbours = build(named["neighbours"])
        self.steps = nn.ModuleList(build(named[f"steps.{s}"]) for s in range(len(STEPS)))
        for i in range(len(STEPS)):
            self.register_buffer(f"known_{i}", torch.from_numpy(graph.known_before(i)), persistent=False)

    def context(self, features: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Decoder features (B, F, H/2, W/2) and x_hat (B, 3, H, W) -> the step nets' shared input."""
        return self.inputs(torch.cat([F.pixel_unshuffle(features, 2), F.pixel_unshuffle(x_hat, BLOCK)], 1))

    def params(self, context: torch.Tensor, step: int, residual: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Raw mixture parameters (B, len(step), 10K, H/4, W/4) of a step's positions, from the
        residuals (x - x_hat) / MEAN_SCALE (B, 3, H, W), of which it sees those known before
        the step and ``inside`` (1, 1, H, W) the image."""
        h, w = residual.shape[-2:]
        known = getattr(self, f"known_{step}").repeat(h // BLOCK, w // BLOCK) * inside
        residual = residual * known
        local = self.neighbours(torch.cat([residual, known.expand(residual.shape[0], 1, h, w)], 1))
        inputs = [context, F.pixel_unshuffle(residual, BLOCK), F.pixel_unshuffle(local, BLOCK)]
        raw = self.steps[step](torch.cat(inputs, 1))
        return raw.view(raw.shape[0], len(STEPS[step]), -1, *raw.shape[-2:])

    def log_prob(
        self, context: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor, inside: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ln p(x | codes) per pixel, (B, 16, H/4, W/4) in coding order; x holds integers 0..255
        as floats. ``inside`` (1, 1, H, W) marks the image within its padding, as coding sees
        it; pixels outside get 0."""
        base = self.base(x_hat)
        inside = torch.ones_like(x[:1, :1]) if inside is None else inside
        residual = (x - base) / MEAN_SCALE * inside
        folded_x, folded_base, folded_inside = fold(x), fold(base), fold(inside)
        out = []
        for s, step in enumerate(STEPS):
            raw = self.params(context, s, residual, inside)
            for i, (di, dj) in enumerate(step):
                p = di * BLOCK + dj
                log_prob = mixture_log_prob(raw[:, i], folded_base[:, :, p], folded_x[:, :, p])
                out.append(log_prob * folded_inside[:, 0, p])
        return torch.stack(out, 1)

    def base(self, x_hat: torch.Tensor) -> torch.Tensor:
        """The image the residuals are taken from, in grey levels."""
        return 255 * x_hat.clamp(0, 1)

    def mixture_log_prob(self, raw: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(raw, base, x)


def pixel_likelihood(feature_channels: int, mixtures: int, hidden: int, grids: list[int]) -> PixelModel:
    """The pixel likelihood a config names: low-bit where it gives grids (``LowbitPixelModel``), else fixed point."""
    if grids:
        return LowbitPixelModel(feature_channels, mixtures, hidden, grids)
    return PixelModel(feature_channels, mixtures, hidden)


def widen(narrow: PixelModel, wide: PixelModel) -> PixelModel:
    """Make ``wide`` (same inputs and mixtures, more channels) compute exactly what ``narrow``
    does: its old channels take narrow's weights, each new channel keeps its random incoming
    weights and gets zero outgoing ones, so training starts where ``narrow`` stopped."""
    old, new = narrow.inputs.out_channels, wide.inputs.out_channels
    if new < old:
        raise ValueError(f"cannot narrow a pixel likelihood from {old} to {new} channels")
    kept = torch.arange(old)
    # the step nets' inputs: the context (which grows at its end), then the folded pixels
    kept_inputs = torch.cat([kept, torch.arange(new, wide.steps[0][0].in_channels)])
    wide = wide.to(narrow.inputs.weight.dtype)
    with torch.no_grad():
        _copy_into(wide.inputs, narrow.inputs, kept, None)
        wide.neighbours.load_state_dict(narrow.neighbours.state_dict())
        for wide_step, narrow_step in zip(wide.steps, narrow.steps):
            _copy_into(wide_step[0], narrow_step[0], kept, kept_inputs)
            _copy_into(wide_step[2], narrow_step[2], kept, kept)
            _copy_into(wide_step[4], narrow_step[4], None, kept)
    return wide


def _copy_into(new: nn.Conv2d, old: nn.Conv2d, outputs: torch.Tensor | None, inputs: torch.Tensor | None) -> None:
    """new's weights at (outputs, inputs) = old's weights (None = all of them, in order);
    the weights from new's other inputs are zeroed, so those inputs change nothing."""
    outputs = torch.arange(new.out_channels) if outputs is None else outputs
    inputs = torch.arange(new.in_channels) if inputs is None else inputs
    copied = torch.zeros(new.in_channels, dtype=torch.bool)
    copied[inputs] = True
    new.weight[:, ~copied] = 0
    new.weight[outputs.unsqueeze(1), inputs] = old.weight
    new.bias[outputs] = old.bias


def split_params(raw: torch.Tensor, mixtures: int):
    """(B, 10K, ...) -> weight logits (B, K, ...), and means, log-scales, coupling coefficients (B, 3, K, ...)."""
    logits, means, log_scales, coeffs = raw.split([mixtures, 3 * mixtures, 3 * mixtures, 3 * mixtures], 1)
    shape = (raw.shape[0], 3, mixtures, *raw.shape[2:])
    return logits, means.reshape(shape), log_scales.reshape(shape).clamp(-6, 4) + 2, torch.tanh(coeffs.reshape(shape))


def coupled_means(means, coeffs, base, residual, channel: int) -> torch.Tensor:
    """Means (B, K, ...) of one channel: x_hat plus the raw offset, plus the coupling
    with the residuals (x - x_hat) of the channels before it."""
    mean = base[:, channel].unsqueeze(1) + MEAN_SCALE * means[:, channel]
    if channel == 1:
        mean = mean + coeffs[:, 0] * residual[:, 0].unsqueeze(1)
    elif channel == 2:
        mean = mean + coeffs[:, 1] * residual[:, 0].unsqueeze(1) + coeffs[:, 2] * residual[:, 1].unsqueeze(1)
    return mean


def bin_log_prob(value, mean, log_scale) -> torch.Tensor:
    """ln P(value) of a logistic discretized to the integers 0..255 (the end bins take the tails)."""
    inv_scale = torch.exp(-log_scale)
    plus = (value + 0.5 - mean) * inv_scale
    minus = (value - 0.5 - mean) * inv_scale
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = (value - mean) * inv_scale
    # where the bin's mass is below float precision, its density at the centre times the bin width
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), mid - log_scale - 2 * F.softplus(mid))
    lowest = plus - F.softplus(plus)  # ln sigmoid(plus)
    highest = -F.softplus(minus)  # ln (1 - sigmoid(minus))
    return torch.where(value < 0.5, lowest, torch.where(value > 254.5, highest, log_mid))


def mixture_log_prob(raw: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ln p(x) (B, H, W) of the joint mixture over the three channels."""
    mixtures = raw.shape[1] // PARAMS_PER_COMPONENT
    logits, means, log_scales, coeffs = split_params(raw, mixtures)
    residual = x - base
    per_component = F.log_softmax(logits, 1)
    for c in range(3):
        mean = coupled_means(means, coeffs, base, residual, c)
        per_component = per_component + bin_log_prob(x[:, c].unsqueeze(1), mean, log_scales[:, c])
    return torch.logsumexp(per_component, 1)


# ---- the low-bit likelihood of lossless format 2 (``lowbit``), trained with its quantization in the loop ----

LOG_SCALE_FRAC = 4  # log-scales index the bank of distributions in steps of 1/16
COEFF_FRAC = 8  # coupling coefficients in steps of 1/256
MEAN_FRAC = 4  # means in steps of 1/16 grey level


def on_grid(x: torch.Tensor, frac: int, limit: int) -> torch.Tensor:
    """x rounded half up to counts of 2^-frac within ±limit, as ``lowbit.requantize``; the gradient passed straight
    through inside the range."""
    step = 2.0**-frac
    clamped = x.clamp(-limit * step, limit * step)
    return clamped + (torch.floor(clamped / step + 0.5) * step - clamped).detach()


def lowbit_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights on their output channels' power-of-two grids (``lowbit.integer_weights``), straight through, and the
    exponents (cout,)."""
    exponents = torch.from_numpy(lowbit.weight_exponents(weight.detach().cpu().numpy())).to(weight.device)
    scale = torch.ldexp(torch.ones_like(exponents, dtype=weight.dtype), exponents).view(-1, 1, 1, 1)
    rounded = torch.round(weight * scale).clamp(-lowbit.WEIGHT_LIMIT, lowbit.WEIGHT_LIMIT) / scale
    return weight + (rounded - weight).detach(), exponents


def lowbit_conv(conv: nn.Conv2d, x: torch.Tensor, input_frac: int) -> torch.Tensor:
    """A convolution of activations on the grid 2^-input_frac with its weights and bias as the coder rounds them."""
    weight, exponents = lowbit_weight(conv.weight)
    unit = torch.ldexp(torch.ones_like(exponents, dtype=x.dtype), exponents + input_frac)
    bias = conv.bias + (torch.round(conv.bias * unit) / unit - conv.bias).detach()
    return F.conv2d(x, weight, bias, padding=conv.padding)


def lowbit_gelu(pre: torch.Tensor, output_frac: int) -> torch.Tensor:
    """GELU of pre-activations on the grid 2^-8 within ±8, read from the coder's table (``lowbit.gelu_table``) on
    the grid 2^-output_frac; the gradient is GELU's."""
    pre = on_grid(pre, lowbit.PRE_ACTIVATION_FRAC, lowbit.PRE_ACTIVATION_LIMIT)
    table = torch.from_numpy(lowbit.gelu_table(output_frac)).to(pre.device, pre.dtype) * 2.0**-output_frac
    index = torch.round(pre.detach() * (1 << lowbit.PRE_ACTIVATION_FRAC)).long() + lowbit.PRE_ACTIVATION_LIMIT
    value = F.gelu(pre)
    return value + (table[index] - value).detach()


class LowbitPixelModel(PixelModel):
    """The pixel likelihood computed as the low-bit coder does (``lowbit``, ``runtime.lowbit_pixels``): every
    activation on its grid, every weight on its channel's, mixture means, log-scales and coefficients on the
    bank's grids; the gradient passes straight through the roundings. The same weights as ``PixelModel``."""

    def __init__(self, feature_channels: int, mixtures: int, hidden: int, grids: list[int]):
        super().__init__(feature_channels, mixtures, hidden)
        self.plan = lowbit.Plan(grids, len(STEPS))

    def context(self, features: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([F.pixel_unshuffle(features, 2), F.pixel_unshuffle(x_hat, BLOCK)], 1)
        inputs = on_grid(inputs, self.plan.inputs_frac, lowbit.ACTIVATION_LIMIT)
        out = lowbit_conv(self.inputs, inputs, self.plan.inputs_frac)
        return on_grid(out, lowbit.STEP_INPUT_FRAC, lowbit.ACTIVATION_LIMIT)

    def params(self, context: torch.Tensor, step: int, residual: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        h, w = residual.shape[-2:]
        known = getattr(self, f"known_{step}").repeat(h // BLOCK, w // BLOCK) * inside
        residual = residual * known  # multiples of 1/32 within ±8: exact on the step inputs' grid
        frac = lowbit.STEP_INPUT_FRAC
        local = lowbit_conv(self.neighbours, torch.cat([residual, known.expand(residual.shape[0], 1, h, w)], 1), frac)
        local = on_grid(local, frac, lowbit.ACTIVATION_LIMIT)
        x = torch.cat([context, F.pixel_unshuffle(residual, BLOCK), F.pixel_unshuffle(local, BLOCK)], 1)
        net = self.steps[step]
        first, second = self.plan.hidden_fracs[step]
        x = lowbit_gelu(lowbit_conv(net[0], x, frac), first)
        x = lowbit_gelu(lowbit_conv(net[2], x, first), second)
        raw = on_grid(lowbit_conv(net[4], x, second), lowbit.OUTPUT_FRAC, lowbit.OUTPUT_LIMIT)
        return raw.view(raw.shape[0], len(STEPS[step]), -1, *raw.shape[-2:])

    def base(self, x_hat: torch.Tensor) -> torch.Tensor:
        return torch.round(255 * x_hat.clamp(0, 1))  # whole grey levels, as the coder's

    def mixture_log_prob(self, raw: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return lowbit_mixture_log_prob(raw, base, x)


def lowbit_mixture_log_prob(raw: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mixture_log_prob`` with the means, log-scales and coefficients on the grids the bank reads."""
    mixtures = raw.shape[1] // PARAMS_PER_COMPONENT
    logits, means, log_scales, coeffs = split_params(raw, mixtures)
    log_scales = on_grid(log_scales, LOG_SCALE_FRAC, 6 << LOG_SCALE_FRAC)
    coeffs = on_grid(coeffs, COEFF_FRAC, 1 << COEFF_FRAC)
    residual = x - base
    per_component = F.log_softmax(logits, 1)
    for c in range(3):
        mean = on_grid(coupled_means(means, coeffs, base, residual, c), MEAN_FRAC, 1 << 14)
        per_component = per_component + bin_log_prob(x[:, c].unsqueeze(1), mean, log_scales[:, c])
    return torch.logsumexp(per_component, 1)


def calibrate_grids(model: PixelModel, batches, quantile: float = 1.0) -> list[int]:
    """The low-bit grids for a float pixel likelihood: each the finest holding the given quantile of the
    magnitudes its activations reach on ``batches`` (an iterable of (features, x_hat, x) as ``log_prob`` takes
    them); larger ones are clipped."""
    largest: dict[str, float] = {}

    def track(name: str):
        def hook(module, inputs):
            magnitudes = inputs[0].detach().abs().flatten()
            if quantile < 1:
                sample = magnitudes[torch.randperm(len(magnitudes))[: 1 << 20]]
                reached = float(torch.quantile(sample, quantile))
            else:
                reached = float(magnitudes.max())
            largest[name] = max(largest.get(name, 0.0), reached)

        return hook

    watched = {"inputs": model.inputs}
    for s, net in enumerate(model.steps):
        watched[f"{s}.1"], watched[f"{s}.2"] = net[2], net[4]
    handles = [module.register_forward_pre_hook(track(name)) for name, module in watched.items()]
    try:
        with torch.no_grad():
            for features, x_hat, x in batches:
                model.log_prob(model.context(features, x_hat), x_hat, x)
    finally:
        for handle in handles:
            handle.remove()
    hidden = [(lowbit.grid_for(largest[f"{s}.1"]), lowbit.grid_for(largest[f"{s}.2"])) for s in range(len(STEPS))]
    return lowbit.Plan.grids(lowbit.grid_for(largest["inputs"]), hidden)
