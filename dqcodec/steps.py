"""The steps a model file stores each float tensor with: a step policy, which each family of models
gives in its registry entry (``registry.step_policy``).

A step is a fraction (alpha) of the standard deviation of the tensor's nonzero values, chosen by
measurement (a Hessian proxy per layer): each large layer of dq-hier and of the baselines was rounded
alone (GPTQ, ``dqcodec.gptq``) at 1/2 of its standard deviation, and the cost measured on 8 training
crops (bpp and PSNR at three qualities, the lossless bits/dim). With cost s for n values, a step
proportional to sqrt(n / s), rounded to a power of two, gives every value about the same cost: Choi
et al.'s equal slope. So the synthesis and the pixel likelihood's last steps get fine steps, priors
and encoder layers coarse ones. Tensors of at most ``small`` values (biases, GDN parameters,
codebooks and their EMA statistics, the quantizers' projections, the first analysis and last
synthesis layers, the mixture heads) get ``fine``: together they are 6% of dq-hier's file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class StepPolicy:
    """Relative steps by state-dict name: the first rule whose pattern matches (``re.search``) gives
    alpha, names no rule matches get ``default``, and tensors of at most ``small`` values ``fine``."""

    rules: tuple[tuple[str, float], ...]
    default: float = 1 / 4
    small: int = 1 << 15
    fine: float = 1 / 64

    def alpha(self, name: str, size: int) -> float:
        if size <= self.small:
            return self.fine
        return next((alpha for pattern, alpha in self.rules if re.search(pattern, name)), self.default)

    def step(self, name: str, tensor: torch.Tensor) -> float | None:
        """A tensor's step: alpha times the standard deviation of its nonzero values, as a float32
        (None, stored exactly: integer tensors, and float ones with fewer than two distinct nonzero values)."""
        if not tensor.is_floating_point():
            return None
        nonzero = tensor.detach().double().flatten()
        nonzero = nonzero[nonzero != 0]
        if len(nonzero) < 2 or not nonzero.std() > 0:
            return None
        return float(np.float32(self.alpha(name, tensor.numel()) * nonzero.std()))

    def steps(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, float | None]:
        """The step of every tensor of a state dict (None for those stored as they are)."""
        return {name: self.step(name, tensor) for name, tensor in state_dict.items()}
