"""Depthwise quantization: M sub-tensors, each with its own projection and codebook.

The level's features (B, C, H, W) are split along the channel axis into M groups of
C / M channels. Each group is projected to D dimensions by a 1x1 projection and
replaced by its nearest vector in a codebook of K entries. With ``depthwise=True``
every group has its own projection and its own codebook (DQ); with
``depthwise=False`` all groups share one projection and one codebook (plain VQ),
which is the ablation the DQ paper compares against.

Codebooks learn in one of two ways (``learning``):

- ``"ema"``: exponential moving averages of the vectors assigned to them; entries that fall out of
  use are re-seeded from the current batch (VQ-VAE's way, and the DQ paper's);
- ``"soft-to-hard"`` (Agustsson et al. 2017): the codebook is a parameter learnt by gradients
  through soft assignments, softmax(-|z - e_k|^2 / T), whose temperature T is annealed towards
  hard ones over training (``anneal``). The forward value is always the hard, nearest codeword
  (straight-through), and the level's rate term gets its gradient through the soft assignments
  (``LevelCodec.likelihoods``), which puts the entropy of the assignments in the loss.

Both start from codewords drawn from the first batch; coding is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

LEARNING = ("ema", "soft-to-hard")
SOFT_TO_HARD_TEMPERATURES = (1.0, 0.02)  # at the start and the end of training


class DepthwiseQuantizer(nn.Module):
    #: The extension point for training on several processes (``dqcodec.training.distributed``). None (the
    #: default): in training, the EMA codebook update learns from this process's vectors, as a single process
    #: does. Set on an instance to a callable ``hook(update, z, indices)``, the update runs through it: it gets
    #: this quantizer's own update and its (M, N, D) projected vectors and (M, N) indices, and must call
    #: ``update(z, indices)`` with the vectors to learn from (e.g. every process's, under the same random draws).
    update_hook: Callable[[Callable[[torch.Tensor, torch.Tensor], None], torch.Tensor, torch.Tensor], None] | None = (
        None
    )

    def __init__(
        self,
        in_channels: int,
        num_groups: int,
        codebook_size: int,
        code_dim: int,
        depthwise: bool = True,
        learning: str = "ema",
        decay: float = 0.99,
        commitment: float = 0.25,
        dead_code_threshold: float = 0.5,
        eps: float = 1e-5,
    ):
        super().__init__()
        if in_channels % num_groups:
            raise ValueError(f"in_channels {in_channels} is not divisible by num_groups {num_groups}")
        if learning not in LEARNING:
            raise ValueError(f"codebook learning must be one of {', '.join(LEARNING)}, got {learning!r}")
        self.learning = learning
        # soft-to-hard: the temperature relative to the mean distance to the nearest codeword
        self.temperature = SOFT_TO_HARD_TEMPERATURES[0]
        self.num_groups = num_groups
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.depthwise = depthwise
        self.decay = decay
        self.commitment = commitment
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps

        group_channels = in_channels // num_groups
        num_books = num_groups if depthwise else 1
        # One (groups, out, in) weight; plain VQ broadcasts a single projection.
        self.proj_weight = nn.Parameter(torch.randn(num_books, code_dim, group_channels) / group_channels**0.5)
        self.proj_bias = nn.Parameter(torch.zeros(num_books, code_dim))
        embed = torch.randn(num_books, codebook_size, code_dim)
        if learning == "soft-to-hard":
            self.embed = nn.Parameter(embed)  # the same state-dict key as the EMA buffer
        else:
            self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("cluster_size", torch.ones(num_books, codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def out_channels(self) -> int:
        return self.num_groups * self.code_dim

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (M, B*H*W, D) projected sub-tensors."""
        b, c, h, w = x.shape
        groups = x.reshape(b, self.num_groups, c // self.num_groups, h * w)
        z = torch.einsum("mdc,bmcn->mbnd", self._expand(self.proj_weight), groups)
        z = z + self._expand(self.proj_bias)[:, None, None, :]
        return z.reshape(self.num_groups, b * h * w, self.code_dim)

    def _expand(self, t: torch.Tensor) -> torch.Tensor:
        return t.expand(self.num_groups, *t.shape[1:])

    def codebooks(self) -> torch.Tensor:
        """(M, K, D) codebooks, one per group (repeated for plain VQ)."""
        return self._expand(self.embed)

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Squared distances (M, N, K) between projected vectors (M, N, D) and codewords."""
        return _squared_distances(z, self.codebooks())

    def group_distances(self, z: torch.Tensor, group: int) -> torch.Tensor:
        """Squared distances (N, K) between one group's projected vectors (N, D) and its codewords."""
        return _squared_distances(z[None], self.codebooks()[group : group + 1])[0]

    def forward(self, x: torch.Tensor, rate: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """Quantize features; returns (quantized (B, M*D, H, W), indices (B, M, H, W), loss,
        soft assignments (B, M, K, H, W) in soft-to-hard training, else None).
        Always in float32, also under autocast (CPU or CUDA): nearest codewords and EMA sums need its precision.

        Given ``rate``, the choice is entropy-constrained, as the encoder's is: ``rate(codes)`` maps the
        nearest codewords (B, M*D, H, W) to a weighted cost in bits (M, B*H*W, K) of every codeword at every
        position, and each index minimises squared distance plus that cost (the EMA codebooks then learn
        from the vectors so assigned)."""
        with torch.autocast(x.device.type, enabled=False):
            return self._quantize(x.float(), rate)

    def _quantize(self, x: torch.Tensor, rate=None):
        b, _, h, w = x.shape
        z = self.project(x)
        soft = self.learning == "soft-to-hard" and self.training and bool(self.initialized)
        distances = self.distances(z if soft else z.detach())
        indices = distances.detach().argmin(-1)  # (M, N)
        if rate is not None and bool(self.initialized):
            indices = (distances.detach() + rate(self._to_image(self._lookup(indices), b, h, w))).argmin(-1)
        q = self._lookup(indices)
        if self.training:
            if self.update_hook is None:
                self._ema_update(z.detach(), indices)
            else:
                self.update_hook(self._ema_update, z.detach(), indices)
        loss = self.commitment * F.mse_loss(z, q.detach())
        if soft:
            assignments = self._soft_assignments(distances)
            q = q.detach() + (assignments @ self.codebooks() - (assignments @ self.codebooks()).detach())
            assignments = assignments.reshape(self.num_groups, b, h, w, -1).permute(1, 0, 4, 2, 3)
        else:
            assignments = None
            q = z + (q - z).detach()  # straight-through gradient
        return self._to_image(q, b, h, w), self._indices_to_image(indices, b, h, w), loss, assignments

    def _soft_assignments(self, distances: torch.Tensor) -> torch.Tensor:
        """softmax(-d / T) over the codewords (M, N, K), T relative to the mean nearest distance."""
        scale = distances.detach().min(-1).values.mean().clamp_min(1e-6)
        return torch.softmax(-distances / (self.temperature * scale), -1)

    def anneal(self, progress: float) -> None:
        """Set the soft-to-hard temperature for training ``progress`` (0 to 1): geometric from the
        first of ``SOFT_TO_HARD_TEMPERATURES`` to the last."""
        start, end = SOFT_TO_HARD_TEMPERATURES
        self.temperature = start * (end / start) ** min(max(progress, 0.0), 1.0)

    def straight_through(self, z: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        """Nearest codewords of projected vectors z (M, B*H*W, D) as (B, M*D, H, W), with z's gradient."""
        q = self._lookup(self.distances(z.detach()).argmin(-1))
        return self._to_image(z + (q - z).detach(), b, h, w)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) integer indices -> quantized (B, M*D, H, W); the inverse of forward's indices."""
        b, m, h, w = indices.shape
        flat = indices.permute(1, 0, 2, 3).reshape(m, b * h * w)
        return self._to_image(self._lookup(flat), b, h, w)

    def decode_group(self, indices: torch.Tensor, group: int) -> torch.Tensor:
        """(B, H, W) indices of one group -> its quantized vectors (B, D, H, W)."""
        book = self.embed[group if self.depthwise else 0]
        return book[indices].permute(0, 3, 1, 2)

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        e = self.codebooks()
        return torch.gather(e, 1, indices[..., None].expand(-1, -1, self.code_dim))

    def _to_image(self, q: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        return q.reshape(self.num_groups, b, h, w, self.code_dim).permute(1, 0, 4, 2, 3).reshape(b, -1, h, w)

    def _indices_to_image(self, indices: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
        return indices.reshape(self.num_groups, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA codebooks learn here; soft-to-hard ones only take their first batch's vectors."""
        if self.learning != "ema" and self.initialized:
            return
        if not self.depthwise:  # one shared codebook sees every group's vectors
            z = z.reshape(1, -1, self.code_dim)
            indices = indices.reshape(1, -1)
        if not self.initialized:  # first batch: codewords drawn from the data
            self.cluster_size.zero_()
            self.initialized.fill_(True)
            self._reseed_dead_codes(z)
            return
        onehot = F.one_hot(indices, self.codebook_size).type(z.dtype)  # (books, N, K)
        counts = onehot.sum(1)
        sums = torch.bmm(onehot.transpose(1, 2), z)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed[..., None])
        self._reseed_dead_codes(z)

    def _reseed_dead_codes(self, z: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold  # (books, K)
        if not dead.any():
            return
        for book in torch.nonzero(dead.any(-1)).flatten().tolist():
            slots = torch.nonzero(dead[book]).flatten()
            picks = torch.randint(0, z.shape[1], (len(slots),), device=z.device)
            self.embed[book, slots] = z[book, picks]
            self.embed_avg[book, slots] = z[book, picks]
            self.cluster_size[book, slots] = 1.0


def _squared_distances(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """(M, N, D) vectors and (M, K, D) codebooks -> (M, N, K) squared distances."""
    return z.pow(2).sum(-1, keepdim=True) - 2 * torch.bmm(z, e.transpose(1, 2)) + e.pow(2).sum(-1)[:, None, :]
