"""The two CompressAI layers dq models use, GDN and the sub-pixel convolution, as CompressAI 1.2.8
defines them: the same computation, gradients and state-dict keys (``tests/test_layers.py`` checks
each against CompressAI's).

They live here so that coding and decoding a .dq file never imports compressai, which takes seconds
(its point-cloud data sets import torch_geometric and scipy) and warns on import.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _LowerBoundFunction(torch.autograd.Function):
    """max(x, bound), whose gradient passes where x is above the bound or the step moves x up."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad_output):
        x, bound = ctx.saved_tensors
        return ((x >= bound) | (grad_output < 0)) * grad_output, None


class LowerBound(nn.Module):
    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LowerBoundFunction.apply(x, self.bound)


class NonNegativeParametrizer(nn.Module):
    """Keeps a parameter non-negative: it is stored as a square root, bounded below."""

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2**-18):
        super().__init__()
        self.register_buffer("pedestal", torch.Tensor([reparam_offset**2]))
        self.lower_bound = LowerBound((minimum + reparam_offset**2) ** 0.5)

    def init(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower_bound(x) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al.): y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)."""

    def __init__(self, channels: int, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.beta_reparam = NonNegativeParametrizer(minimum=beta_min)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma_reparam = NonNegativeParametrizer()
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        gamma = self.gamma_reparam(self.gamma).reshape(channels, channels, 1, 1)
        return x * torch.rsqrt(F.conv2d(x**2, gamma, self.beta_reparam(self.beta)))


def subpel_conv3x3(cin: int, cout: int, r: int = 1) -> nn.Sequential:
    """3x3 convolution to r² times the channels, then a pixel shuffle: up-sampling by r."""
    return nn.Sequential(nn.Conv2d(cin, cout * r**2, kernel_size=3, padding=1), nn.PixelShuffle(r))
