"""The DQ codec: analysis and synthesis transforms around a chain of level codecs, with
CompressAI's model interface.

Levels run from coarse to fine, as in VQ-VAE-2: the first at stride 16, each next one at half
the stride of the one above. Each level is a ``LevelCodec`` (a depthwise quantizer, the prior over
its indices and its own stream) and is conditioned on a context decoded from every level above
it. The synthesis turns the last level's codes and context into the image. A quality names how
many groups of each level are coded; the groups of a level are ordered, so dropping the last
ones (nested dropout in training) gives the lower rates, and one model serves every rate point.
The model's ladder of qualities (``point.Ladder``) adds residual, near-lossless and lossless
points on top of those codes; ``stack.LayerStack`` composes the layers each point codes.

dq-hier is the two-level chain (stride 16 and 8); dq-2 has the same architecture.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn as nn

from . import exact, graph, legacy, pixel_model
from .config import STRIDE, DQConfig
from .graph import context_channels, networks
from .levels import DecodedCodes, LevelChain, LevelCodec, last_coded
from .point import Kind, Ladder
from .transforms import build

__all__ = ["STRIDE", "DQCodec", "DQConfig"]


def _run_float(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


class DQCodec(nn.Module):
    """CompressAI's model interface (``forward``, ``compress``, ``decompress``, ``aux_loss``)
    without its base class, so coding a .dq file never imports compressai."""

    def __init__(self, config: DQConfig | None = None):
        super().__init__()
        self.config = c = config or DQConfig()
        n, count = c.channels, len(c.levels)
        named = networks(c)  # every network but the priors, from their one definition (graph.py)
        self.analysis = nn.ModuleList(build(named[f"analysis.{i}"]) for i in range(count))
        self.levels = nn.ModuleList(
            LevelCodec(
                c.stream_names[i],
                n if i == 0 else 2 * n,
                context_channels(c, i),
                level,
                level.hidden or c.prior_hidden,
                c.depthwise,
                c.codebook_learning,
                graph.anchor_contexts(c, i),
            )
            for i, level in enumerate(c.levels)
        )
        self.contexts = nn.ModuleList(build(named[f"contexts.{i}"]) for i in range(count - 1))
        # mix a level's features with its context, so every group sees both
        self.mixers = nn.ModuleList(build(named[f"mixers.{i}"]) for i in range(count - 1))
        self.synthesis = build(named["synthesis"])
        self.pixels = (
            pixel_model.pixel_likelihood(n, c.pixel_mixtures, c.pixel_hidden, c.pixel_grids)
            if c.pixel_mixtures
            else None
        )

    @property
    def has_pixel_model(self) -> bool:
        """Whether the model has a per-pixel likelihood, so it can code lossless and near-lossless files."""
        return self.pixels is not None

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def pixel_layer(self, tolerance: int):
        """The pixel layer (``stack.PixelLayer``) of lossless (0) or near-lossless points of that tolerance. A low-bit
        likelihood (lossless format 2) runs on numpy with either backend: the runtime's layer, over this model."""
        if self.config.pixel_grids:
            from .runtime.model import PixelLayer as NumpyPixelLayer

            return NumpyPixelLayer(NumpySynthesis(self), tolerance)
        from .stack import PixelLayer

        return PixelLayer(self, tolerance)

    def inference(self) -> torch.no_grad:
        """What coding runs under: no autograd (``stack.LayerStack``)."""
        return torch.no_grad()

    @property
    def ladder(self) -> Ladder:
        """The model's qualities: what each codes (``point.Ladder``)."""
        return Ladder.from_config(self.config)

    @property
    def chain(self) -> LevelChain:
        """The levels as one latent codec."""
        return LevelChain(self)

    def analyse(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each level's features, first level first."""
        features = []
        for stage in self.analysis:
            x = stage(x)
            features.append(x)
        return features[::-1]

    def level_input(self, i: int, features: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return features if i == 0 else self.mixers[i - 1](torch.cat([features, context], 1))

    # ---- training path -------------------------------------------------------------

    def forward(self, x: torch.Tensor, groups: torch.Tensor | None = None) -> dict:
        """x (B, 3, H, W) in [0, 1] with H, W multiples of 16.

        groups: (B, levels) groups of each level each crop keeps (all of them by default)."""
        if groups is None:
            groups = torch.tensor([level.num_groups for level in self.levels]).expand(x.shape[0], -1)
        context, likelihoods, vq_loss = None, {}, 0.0
        for i, (level, features) in enumerate(zip(self.levels, self.analyse(x))):
            keep = level.keep_mask(groups[:, i], x.shape[0], x.device)
            out = level(self.level_input(i, features, context), context, keep)
            likelihoods[level.name] = out["likelihoods"]
            vq_loss = vq_loss + out["loss"]
            context = self.next_context(i, out["codes"], context, _run_float)
        features = self.synthesis[:-1](context)
        x_hat = self.synthesis[-1](features)
        if self.pixels is not None:
            # p(x | codes) of every pixel; the floor only keeps the log finite
            log_prob = self.pixels.log_prob(self.pixels.context(features, x_hat), x_hat, (x * 255).round())
            likelihoods["pixels"] = log_prob.clamp_min(-80).exp()
        return {"x_hat": x_hat, "likelihoods": likelihoods, "vq_loss": vq_loss}

    def anneal(self, progress: float) -> None:
        """Tell the quantizers how far training is (0 to 1): soft-to-hard ones lower their temperature."""
        for level in self.levels:
            level.quantizer.anneal(progress)

    def aux_loss(self) -> torch.Tensor:
        """CompressAI's auxiliary loss (its entropy bottlenecks' quantiles): a dq model has none."""
        return torch.zeros(())

    # ---- from codes to the image ----------------------------------------------------

    def next_context(self, i: int, codes: torch.Tensor, context: torch.Tensor | None, run=_run_float) -> torch.Tensor:
        """What level i's codes and context decode to: the next level's context or, after the
        last level, the synthesis input. ``run(module, x)`` applies a module (float or exact)."""
        x = codes if context is None else torch.cat([codes, context], 1)
        return x if i == self.num_levels - 1 else run(self.contexts[i], x)

    def synthesis_input(
        self, i: int, codes: torch.Tensor, context: torch.Tensor | None, run=_run_float
    ) -> torch.Tensor:
        """The synthesis input from level i's codes and context, the levels below coding nothing."""
        x = self.next_context(i, codes, context, run)
        for k in range(i + 1, self.num_levels):
            empty = x.new_zeros(x.shape[0], self.levels[k].out_channels, *x.shape[2:])
            x = self.next_context(k, empty, x, run)
        return x

    @torch.no_grad()
    def reconstruct(self, indices: list, groups: tuple[int, ...] | list[int]) -> torch.Tensor:
        """The image (1, 3, H, W) in [0, 1] from every level's indices (tensors or arrays), in float32: the contexts
        are recomputed in float, so a window of a larger image decodes like the whole image."""
        last = last_coded(groups)
        context = None
        for i in range(last + 1):
            codes = self.levels[i].codes(torch.as_tensor(indices[i]), groups[i])
            if i < last:
                context = self.next_context(i, codes, context)
        x = self.synthesis_input(last, codes, context)
        # channels-last lets oneDNN skip its layout conversions: about 20% faster on CPU
        return self.synthesis(x.contiguous(memory_format=torch.channels_last)).clamp(0, 1).contiguous()

    @torch.no_grad()
    def exact_synthesis(self, decoded: DecodedCodes) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthesis' last features and its image (unclamped), in fixed point, from decoded codes:
        what the pixel likelihood reads, computed alike on every CPU."""
        i = decoded.last
        codes = self.levels[i].fixed_codes(decoded.indices[i], decoded.groups[i])
        features = exact.run_module(
            self.synthesis[:-1], self.synthesis_input(i, codes, decoded.context, exact.run_module)
        )
        return features, exact.run_module(self.synthesis[-1], features)

    @torch.no_grad()
    def float_synthesis(self, decoded: DecodedCodes) -> tuple[torch.Tensor, torch.Tensor]:
        """The same in float, for the model's own estimate of a file's bits."""
        i = decoded.last
        codes = self.levels[i].codes(decoded.indices[i], decoded.groups[i])
        context = None if decoded.context is None else exact.to_float(decoded.context)
        features = self.synthesis[:-1](self.synthesis_input(i, codes, context))
        return features, self.synthesis[-1](features)

    # ---- CompressAI's coding interface, for one region --------------------------------

    @torch.no_grad()
    def compress(
        self,
        x: torch.Tensor,
        quality: int | None = None,
        lossless: bool = False,
        rate_weight: float | None = None,
        refine_steps: int = 0,
    ) -> dict:
        """x (1, 3, H, W) in [0, 1], H and W multiples of 16 -> {"strings", "shape"}: every stream the
        operating point of (quality, lossless) codes (``point.Ladder.resolve``), as one tile. ``rate_weight``
        overrides the point's, and ``refine_steps`` refines the codes (lossy points only)."""
        from .stack import LayerStack

        stack = LayerStack(self, self.ladder.resolve(quality, lossless))
        strings = stack.compress(x, tuple(x.shape[-2:]), 0, rate_weight=rate_weight, refine_steps=refine_steps)
        return {"strings": strings, "shape": (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)}

    @torch.no_grad()
    def decompress(
        self, strings: list[bytes], shape: tuple[int, int], quality: int | None = None, lossless: bool = False
    ) -> dict:
        """{"x_hat": (1, 3, H, W)} from ``compress``'s strings: a lossy point's synthesis output in float,
        and the 8-bit image / 255 of the other points."""
        from .stack import LayerStack

        stack = LayerStack(self, self.ladder.resolve(quality, lossless))
        size = (shape[0] * STRIDE, shape[1] * STRIDE)
        if stack.point.kind == Kind.LOSSY:
            decoded = stack.decode_codes(strings, size, 0)[0]
            return {"x_hat": self.reconstruct(decoded.indices, decoded.groups)}
        image = stack.decompress(strings, size, 0)
        return {"x_hat": torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255}

    # ---- persistence ---------------------------------------------------------------

    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> DQCodec:
        state_dict = legacy.renamed(checkpoint["state_dict"])
        model = cls(DQConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(state_dict)
        return model.eval()


class NumpySynthesis:
    """What the runtime's pixel layer reads of a model, from the torch one: its config, its arrays, the exact
    synthesis channels last, and the float likelihood's estimate of a region's pixel bits."""

    def __init__(self, net: DQCodec):
        self.net, self.config = net, net.config
        self.arrays = {name: tensor.detach().numpy() for name, tensor in net.state_dict().items()}

    def exact_synthesis(self, decoded: DecodedCodes):
        features, x_hat = self.net.exact_synthesis(decoded)
        return features[0].permute(1, 2, 0).numpy(), x_hat[0].permute(1, 2, 0).numpy()

    def float_pixel_bits(self, decoded: DecodedCodes, region, inside: tuple[int, int]) -> float:
        from .pixel_codec import PixelCodec

        features, x_hat = self.net.float_synthesis(decoded)
        return PixelCodec(self.net.pixels).bits(features, x_hat, torch.as_tensor(region), inside)
