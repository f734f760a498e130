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
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import exact, graph
from .codes import DecodedCodes, last_coded  # re-exported
from .config import LevelConfig
from .entropy import PROBABILITY_BITS, StreamDecoder, StreamEncoder
from .point import OperatingPoint
from .priors import GroupCausalPrior
from .quantize import DepthwiseQuantizer
from .recorder import Recorder
from .refine import refine_level

if TYPE_CHECKING:
    from .model import DQCodec


class LevelCodec(nn.Module):
    def __init__(
        self,
        name: str,
        in_channels: int,
        context_channels: int,
        config: LevelConfig,
        hidden: int,
        depthwise: bool,
        learning: str = "ema",
        anchors: list[graph.AnchorContext] | tuple = (),
    ):
        super().__init__()
        self.name = name  # the name of its stream
        self.quantizer = DepthwiseQuantizer(
            in_channels, config.groups, config.codebook, config.dim, depthwise=depthwise, learning=learning
        )
        self.prior = GroupCausalPrior(context_channels, config.groups, config.dim, config.codebook, hidden, anchors)
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
                log_probs = F.log_softmax(
                    self.prior(None if context is None else context.float(), codes).float(), dim=2
                )
            b, m, k, h, w = log_probs.shape
            return log_probs.permute(1, 0, 3, 4, 2).reshape(m, b * h * w, k) * (
                -self.training_rate_weight / math.log(2)
            )

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

    def compress(
        self,
        z: torch.Tensor,
        context: torch.Tensor | None,
        shape: tuple[int, int, int],
        groups: int,
        rate_weight: float,
        stream: StreamEncoder,
    ) -> torch.Tensor:
        """Choose the indices (B, M, H, W) of the first ``groups`` groups from projected vectors
        z (M, B*H*W, D), given the fixed-point context, and encode them into the level's stream.

        The choice is entropy-constrained VQ: each index minimises |z - e_k|^2 + rate_weight *
        (-log2 p_k) under the table the decoder will use (rate_weight 0: the nearest codeword)."""

        def encode_group(j, frequencies, positions):
            cost = self.quantizer.group_distances(z[j] if positions is None else z[j][positions], j).double()
            if rate_weight:
                bits = -np.log2(frequencies / frequencies.sum(-1, keepdims=True))
                cost = cost + rate_weight * torch.from_numpy(bits)
            symbols = cost.argmin(-1).numpy()
            stream.encode(symbols, frequencies)
            return symbols

        return self._code_groups(context, shape, groups, encode_group)

    def decompress(
        self,
        stream: StreamDecoder,
        context: torch.Tensor | None,
        shape: tuple[int, int, int],
        groups: int,
        recorder: Recorder,
    ) -> torch.Tensor:
        """The indices (B, M, H, W) of the first ``groups`` groups from the level's stream (the
        rest are 0); every group's (integer tables, decoded symbols) pair goes to the recorder."""

        def decode_group(j, frequencies, positions):
            symbols = stream.decode(frequencies)
            recorder.record(frequencies, symbols)
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
        """Walk the level group by group: ``code_group(j, frequencies, positions)`` encodes or decodes the indices
        of group j at ``positions`` (rows of (B, H, W), None for all) and returns them. An anchored group codes its
        checkerboard's anchors, then the other positions given them. Both directions see the same tables."""
        b, h, w = shape
        indices = torch.zeros(b, self.num_groups, h, w, dtype=torch.long)
        if groups == 0:
            return indices
        sequence = self.prior.sequential(context, shape, groups)
        for j in range(groups):
            logits = sequence.logits(j)
            if j < sequence.anchored:
                symbols = self._code_anchored(sequence, j, logits, code_group)
            else:
                symbols = code_group(j, exact.logits_to_frequencies(logits, PROBABILITY_BITS), None)
            indices[:, j] = torch.from_numpy(symbols).view(b, h, w)
            sequence.push(exact.to_fixed(self.quantizer.decode_group(indices[:, j], j)))
        return indices

    def _code_anchored(self, sequence, j: int, logits: torch.Tensor, code_group) -> np.ndarray:
        """Group j's indices (B * H * W,): its anchors under the group-causal logits, then the rest under the
        logits its anchor context gives them."""
        b, _, h, w = logits.shape
        anchors = np.broadcast_to(graph.anchor_mask(h, w), (b, h, w)).reshape(-1)
        first, second = np.flatnonzero(anchors), np.flatnonzero(~anchors)
        symbols = np.zeros(b * h * w, dtype=np.int64)
        symbols[first] = code_group(j, exact.logits_to_frequencies(logits, PROBABILITY_BITS)[first], first)
        codes = self.quantizer.decode_group(torch.from_numpy(symbols).view(b, h, w), j)
        anchor_codes = exact.to_fixed(codes) * torch.from_numpy(anchors.reshape(b, 1, h, w).astype(np.float64))
        given = sequence.anchor_logits(j, logits, anchor_codes)
        symbols[second] = code_group(j, exact.logits_to_frequencies(given, PROBABILITY_BITS)[second], second)
        return symbols


class LevelChain:
    """A model's levels as one latent codec: a region's codes into one stream per level, and back.

    Each level is coded given the fixed-point context decoded from the levels above it, so encoder
    and decoder compute the same tables. The streams belong to the caller, so the tiles of an image
    share them."""

    def __init__(self, net: DQCodec):
        self.net = net

    @property
    def stream_names(self) -> list[str]:
        return [level.name for level in self.net.levels]

    def compress(
        self,
        features: list[torch.Tensor],
        x: torch.Tensor,
        point: OperatingPoint,
        streams: list[StreamEncoder],
        rate_weight: float | None = None,
        refine_steps: int = 0,
    ) -> DecodedCodes:
        """Choose and encode every level's indices of a region, given its features (``DQCodec.analyse``) and
        its pixels x; the rate weight defaults to the point's (see ``LevelCodec.compress``). ``refine_steps``
        > 0 first refines the last coded level's vectors for this region (``refine.refine_level``)."""
        net, groups = self.net, point.groups
        rate_weight = point.rate_weight if rate_weight is None else rate_weight
        last = last_coded(groups)
        context, indices = None, []
        for i, level in enumerate(net.levels):
            shape = (x.shape[0], *features[i].shape[-2:])
            if i > last:  # a level this point codes nothing of
                indices.append(torch.zeros(shape[0], level.num_groups, *shape[1:], dtype=torch.long))
                continue
            float_context = None if context is None else exact.to_float(context)
            z = level.quantizer.project(net.level_input(i, features[i], float_context))
            if refine_steps and i == last:
                z = refine_level(net, i, x, float_context, z, groups[i], refine_steps)
            indices.append(level.compress(z, context, shape, groups[i], rate_weight, streams[i]))
            if i < last:
                context = net.next_context(i, level.fixed_codes(indices[i], groups[i]), context, exact.run_module)
        return DecodedCodes(indices, groups, last, context)

    @torch.no_grad()
    def decompress(
        self, streams: list[StreamDecoder], shape: tuple[int, int], point: OperatingPoint, recorder: Recorder
    ) -> DecodedCodes:
        """Decode every level's indices of a region of ``shape`` first-level positions."""
        net, groups = self.net, point.groups
        last = last_coded(groups)
        h, w = shape
        context, indices = None, []
        for i, level in enumerate(net.levels):
            scale = 2**i
            indices.append(level.decompress(streams[i], context, (1, h * scale, w * scale), groups[i], recorder))
            if i < last:
                context = net.next_context(i, level.fixed_codes(indices[i], groups[i]), context, exact.run_module)
        return DecodedCodes(indices, groups, last, context)
