"""One level of a DQ model as a latent codec, the way CompressAI composes models.

A ``LevelCodec`` pairs a depthwise quantizer with the group-causal prior over its indices and
owns one stream of the file. It has CompressAI's three entry points:

- ``forward``: quantized codes, indices, the likelihood of every index and the commitment loss
  (training);
- ``compress``: choose and encode a level's indices into its stream;
- ``decompress``: decode them back.

A level is coded group by group (``groups`` first groups of it; the rest are dropped, as a
quality asks). Its probability tables come from the prior in exact fixed point
(``dqcodec.exact``), fed the decoded context of the levels above it, so the encoder and the
decoder compute the same tables on any CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import exact
from .entropy import PROBABILITY_BITS, StreamDecoder, StreamEncoder
from .priors import GroupCausalPrior
from .quantize import DepthwiseQuantizer


@dataclass
class LevelConfig:
    groups: int
    codebook: int
    dim: int
    hidden: int | None = None  # the prior's hidden channels per group (None: the model's prior_hidden)


class LevelCodec(nn.Module):
    def __init__(self, name: str, in_channels: int, context_channels: int, config: LevelConfig, hidden: int, depthwise: bool, learning: str = "ema"):
        super().__init__()
        self.name = name  # the name of its stream
        self.quantizer = DepthwiseQuantizer(in_channels, config.groups, config.codebook, config.dim, depthwise=depthwise, learning=learning)
        self.prior = GroupCausalPrior(context_channels, config.groups, config.dim, config.codebook, hidden)
        # > 0: training chooses indices as the encoder does, |z - e_k|^2 + weight * bits (entropy-constrained
        # VQ), under the prior's tables given the nearest codewords; a training option, not saved
        self.training_rate_weight = 0.0

    @property
    def num_groups(self) -> int:
        return self.quantizer.num_groups

    @property
    def out_channels(self) -> int:
        return self.quantizer.out_channels

    # ---- training ------------------------------------------------------------------

    def forward(self, features: torch.Tensor, context: torch.Tensor | None, keep: torch.Tensor) -> dict:
        """Quantize features (B, C, H, W) given the context; ``keep`` (B, M) marks the groups each
        crop keeps. Returns the kept codes, the likelihood of each kept index (1 for dropped ones)
        and the commitment loss."""
        rate = self._weighted_bits(context) if self.training and self.training_rate_weight else None
        codes, indices, loss, assignments = self.quantizer(features, rate)
        likelihoods = self.likelihoods(context, codes, indices, assignments)
        likelihoods = torch.where(keep[..., None, None] > 0, likelihoods, torch.ones_like(likelihoods))
        return {"codes": self.drop(codes, keep), "likelihoods": likelihoods, "loss": loss}

    def _weighted_bits(self, context):
        """The cost ``DepthwiseQuantizer.forward`` adds to distances for an entropy-constrained choice: the
        rate weight times the bits (M, B*H*W, K) of every codeword under the prior, given the codes (B, M*D,
        H, W) it is handed (the nearest ones: an approximation of the encoder's group-by-group tables)."""

        def weighted_bits(codes: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                log_probs = F.log_softmax(self.prior(None if context is None else context.float(), codes).float(), dim=2)
            b, m, k, h, w = log_probs.shape
            return log_probs.permute(1, 0, 3, 4, 2).reshape(m, b * h * w, k) * (-self.training_rate_weight / math.log(2))

        return weighted_bits

    def likelihoods(self, context, codes, indices, assignments=None):
        """Probability (B, M, H, W) the prior gives each index. Given soft assignments (B, M, K, H, W)
        (soft-to-hard training), its gradient also flows through them: the value is the index's
        probability, the gradient that of exp(sum_k a_k log p_k), the assignments' expected rate."""
        log_probs = F.log_softmax(self.prior(context, codes), dim=2)
        log_p = log_probs.gather(2, indices.unsqueeze(2)).squeeze(2)
        if assignments is not None:
            expected = (assignments * log_probs).sum(2)
            log_p = log_p + (expected - expected.detach())
        # the floor keeps log(likelihood) finite in the loss, as CompressAI's likelihood bound does
        return log_p.exp().clamp_min(1e-9)

    def keep_mask(self, groups: torch.Tensor | int, batch: int, device=None) -> torch.Tensor:
        """(B, M) ones for the first ``groups`` groups of each crop (an int or a (B,) tensor)."""
        counts = torch.as_tensor(groups, device=device).expand(batch)
        return (torch.arange(self.num_groups, device=device)[None, :] < counts[:, None]).float()

    def drop(self, codes: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Codes (B, M*D, H, W) with the groups ``keep`` (B, M) does not keep zeroed."""
        return codes * keep.repeat_interleave(self.quantizer.code_dim, 1)[..., None, None]

    # ---- coding --------------------------------------------------------------------

    def compress(self, z: torch.Tensor, context: torch.Tensor | None, shape: tuple[int, int, int], groups: int, rate_weight: float, stream: StreamEncoder) -> torch.Tensor:
        """Choose the indices (B, M, H, W) of the first ``groups`` groups from projected vectors
        z (M, B*H*W, D), given the fixed-point context, and encode them into the level's stream.

        The choice is entropy-constrained VQ: each index minimises |z - e_k|^2 + rate_weight *
        (-log2 p_k) under the table the decoder will use (rate_weight 0: the nearest codeword)."""

        def encode_group(j, frequencies):
            cost = self.quantizer.group_distances(z[j], j).double()
            if rate_weight:
                bits = -np.log2(frequencies / frequencies.sum(-1, keepdims=True))
                cost = cost + rate_weight * torch.from_numpy(bits)
            symbols = cost.argmin(-1).numpy()
            stream.encode(symbols, frequencies)
            return symbols

        return self._code_groups(context, shape, groups, encode_group)

    def decompress(self, stream: StreamDecoder, context: torch.Tensor | None, shape: tuple[int, int, int], groups: int, tables: list | None = None) -> torch.Tensor:
        """The indices (B, M, H, W) of the first ``groups`` groups from the level's stream (the
        rest are 0). If ``tables`` is a list, every group's (integer tables, decoded symbols) pair
        is appended to it."""

        def decode_group(j, frequencies):
            symbols = stream.decode(frequencies)
            if tables is not None:
                tables.append((frequencies, symbols))
            return symbols

        return self._code_groups(context, shape, groups, decode_group)

    def codes(self, indices: torch.Tensor, groups: int) -> torch.Tensor:
        """The codes (B, M*D, H, W) of decoded indices, groups past ``groups`` zeroed."""
        codes = self.quantizer.decode_indices(indices.long())
        codes[:, groups * self.quantizer.code_dim :] = 0
        return codes

    def fixed_codes(self, indices: torch.Tensor, groups: int) -> torch.Tensor:
        """The same codes in fixed point."""
        return exact.to_fixed(self.codes(indices, groups))

    def _code_groups(self, context, shape, groups: int, code_group) -> torch.Tensor:
        """Walk the level group by group: ``code_group(j, frequencies)`` encodes or decodes
        group j and returns its indices. Both directions see the same tables."""
        b, h, w = shape
        indices = torch.zeros(b, self.num_groups, h, w, dtype=torch.long)
        if groups == 0:
            return indices
        sequence = self.prior.sequential(context, shape, groups)
        for j in range(groups):
            frequencies = exact.logits_to_frequencies(sequence.logits(j), PROBABILITY_BITS)
            indices[:, j] = torch.from_numpy(code_group(j, frequencies)).view(b, h, w)
            sequence.push(exact.to_fixed(self.quantizer.decode_group(indices[:, j], j)))
        return indices
