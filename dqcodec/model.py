"""The DQ codec: analysis and synthesis transforms around a chain of level codecs, with
CompressAI's model interface.

Levels run from coarse to fine, as in VQ-VAE-2: the first at stride 16, each next one at half
the stride of the one above. Each level is a ``LevelCodec`` (a depthwise quantizer, the prior over
its indices and its own stream) and is conditioned on a context decoded from every level above
it. The synthesis turns the last level's codes and context into the image. A quality names how
many groups of each level are coded; the groups of a level are ordered, so dropping the last
ones (nested dropout in training) gives the lower rates, and one model serves every rate point.

dq-hier is the two-level chain (stride 16 and 8); dq-2 adds a level at stride 4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn

from . import exact
from .entropy import CorruptStreamError, StreamDecoder, StreamEncoder
from .errors import ArgumentError, ModelError
from .layers import GDN, subpel_conv3x3
from .levels import LevelCodec, LevelConfig
from .pixel_codec import code_pixels
from .pixel_model import PixelModel, fold, widen
from .pixel_tables import MAX_TOLERANCE, ExactPixelModel
from .refine import refine_level
from .residual import MAX_STEP

STRIDE = 16  # of the first level (refine.py assumes it); images are padded to a multiple of it


def _default_levels() -> list[LevelConfig]:
    return [LevelConfig(groups=4, codebook=64, dim=8), LevelConfig(groups=16, codebook=64, dim=4)]


@dataclass
class DQConfig:
    channels: int = 96
    levels: list[LevelConfig] = field(default_factory=_default_levels)  # coarse to fine
    prior_hidden: int = 32
    depthwise: bool = True
    codebook_learning: str = "ema"  # or "soft-to-hard" (see quantize.py)
    residual_blocks: int = 0  # residual blocks in the synthesis, at the last level's stride
    # groups of each level coded at quality 1, 2, ...
    qualities: list[list[int]] = field(default_factory=lambda: [[4, g] for g in (1, 2, 4, 8, 12, 16)])
    # encoder-side rate weight per quality: indices minimise |z - e|^2 + weight * bits
    rate_weights: list[float] = field(default_factory=lambda: [0.0] * 6)
    default_quality: int = 4
    # the per-pixel likelihood for lossless files: mixture components (0 = none) and width
    pixel_mixtures: int = 0
    pixel_hidden: int = 64
    lossless_quality: int = 1  # the quality whose codes a lossless file carries
    # residual qualities after the lossy ones, each [base quality, step]: the base's codes, then the image
    # minus the base's image as 8x8 DCTs quantized with that step (see residual.py)
    residual_steps: list[list[int]] = field(default_factory=list)
    # near-lossless qualities after those: each codes lossless_quality's codes and every sample's bin
    # of 2d + 1 values for its tolerance d (see pixels.py), so it decodes within 2d of the original
    tolerances: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.levels = [LevelConfig(**level) if isinstance(level, dict) else level for level in self.levels]
        self.qualities = [list(q) for q in self.qualities]
        if not 2 <= len(self.levels) <= 4:
            raise ArgumentError("a DQ model has 2 to 4 levels")
        if len(self.rate_weights) != len(self.qualities):
            raise ArgumentError("rate_weights needs one entry per quality")
        for quality in self.qualities:
            if len(quality) != len(self.levels) or not all(0 <= g <= lv.groups for g, lv in zip(quality, self.levels)):
                raise ArgumentError(f"quality {quality} does not give 0 to all groups of each of the {len(self.levels)} levels")
            if quality[0] == 0 or any(g and quality[i] < self.levels[i].groups for i, g in enumerate(quality[1:])):
                raise ArgumentError(f"quality {quality} codes a level whose parent level is not complete")
        for name in ("default_quality", "lossless_quality"):
            if not 1 <= getattr(self, name) <= len(self.qualities):
                raise ArgumentError(f"{name} is not one of the qualities")
        self.tolerances = list(self.tolerances)
        if self.tolerances and not self.pixel_mixtures:
            raise ArgumentError("near-lossless qualities (tolerances) need a pixel likelihood")
        if not all(1 <= d <= MAX_TOLERANCE for d in self.tolerances):
            raise ArgumentError(f"tolerances are 1 to {MAX_TOLERANCE} grey levels")
        self.residual_steps = [list(pair) for pair in self.residual_steps]
        for pair in self.residual_steps:
            if len(pair) != 2 or not 1 <= pair[0] <= len(self.qualities) or not 1 <= pair[1] <= MAX_STEP:
                raise ArgumentError(f"a residual quality is [base quality 1 to {len(self.qualities)}, step 1 to {MAX_STEP}], got {pair}")

    @classmethod
    def from_dict(cls, config: dict) -> "DQConfig":
        """A config from ``asdict``, or from a dq-hier checkpoint of dqcodec 0.2 (two named levels)."""
        if "top_groups" not in config:
            return cls(**config)
        config = dict(config)
        top = LevelConfig(config.pop("top_groups"), config.pop("top_codebook"), config.pop("top_dim"))
        bottom = LevelConfig(config.pop("bottom_groups"), config.pop("bottom_codebook"), config.pop("bottom_dim"))
        config["qualities"] = [[top.groups, g] for g in config["qualities"]]
        return cls(levels=[top, bottom], **config)


# dq-hier's checkpoints of dqcodec 0.2 named its two levels' modules; the chain numbers them
_LEGACY_NAMES = {
    "encoder_bottom.": "analysis.0.",
    "encoder_top.": "analysis.1.",
    "top.": "levels.0.",
    "bottom.": "levels.1.",
    "top_decoder.": "contexts.0.",
    "bottom_input.": "mixers.0.",
    "decoder.": "synthesis.",
}


def _renamed(state_dict: dict) -> dict:
    def rename(key):
        for old, new in _LEGACY_NAMES.items():
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    return {rename(k): v for k, v in state_dict.items()}


def conv(cin, cout, k=5, stride=2):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin, cout, k=5, stride=2):
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def upsample(cin, cout):
    # sub-pixel convolution: about a third of the cost of a 5x5 transposed conv on CPU
    return subpel_conv3x3(cin, cout, 2)


def analysis_stages(n: int, levels: int) -> list[nn.Module]:
    """The analysis, applied in order: image -> the last level's features, then each stage halves
    the resolution for the level above."""
    first = [conv(3, n)]
    for _ in range(int(math.log2(STRIDE)) - levels):
        first += [GDN(n), conv(n, n, 3)]
    middle = [nn.Sequential(GDN(n), conv(n, n, 3)) for _ in range(levels - 2)]
    return [nn.Sequential(*first), *middle, nn.Sequential(conv(n, n, 3, 1), nn.GELU(), conv(n, n))]


def context_decoder(n: int, codes: int, first: bool) -> nn.Module:
    """Decodes a level's codes (and, below the first level, its context) into the next level's context."""
    if first:
        return nn.Sequential(deconv(codes, n), nn.GELU(), conv(n, n, 3, 1))
    return nn.Sequential(conv(codes + n, n, 3, 1), nn.GELU(), upsample(n, n))


def residual_block(n: int) -> exact.Residual:
    return exact.Residual(conv(n, n, 3, 1), nn.GELU(), conv(n, n, 3, 1))


def synthesis(n: int, codes: int, stride: int, blocks: int = 0) -> nn.Sequential:
    """The last level's codes and context -> the image; its last layer gives the image from the
    features the pixel likelihood reads."""
    layers = [conv(codes + n, n, 3, 1), nn.GELU(), *(residual_block(n) for _ in range(blocks))]
    for _ in range(int(math.log2(stride)) - 1):
        layers += [upsample(n, n), nn.GELU()]
    return nn.Sequential(*layers, upsample(n, 3))


def _run_float(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


class DQCodec(nn.Module):
    """CompressAI's model interface (``forward``, ``compress``, ``decompress``, ``aux_loss``)
    without its base class, so coding a .dq file never imports compressai."""

    def __init__(self, config: DQConfig | None = None):
        super().__init__()
        self.config = c = config or DQConfig()
        n, count = c.channels, len(c.levels)
        self.analysis = nn.ModuleList(analysis_stages(n, count))
        self.levels = nn.ModuleList(
            LevelCodec(f"stride{STRIDE >> i}", n if i == 0 else 2 * n, 0 if i == 0 else n, level, level.hidden or c.prior_hidden, c.depthwise, c.codebook_learning)
            for i, level in enumerate(c.levels)
        )
        self.contexts = nn.ModuleList(context_decoder(n, self.levels[i].out_channels, i == 0) for i in range(count - 1))
        # mix a level's features with its context, so every group sees both
        self.mixers = nn.ModuleList(conv(2 * n, 2 * n, 3, 1) for _ in range(count - 1))
        self.synthesis = synthesis(n, self.levels[-1].out_channels, STRIDE >> (count - 1), c.residual_blocks)
        self.pixels = PixelModel(n, c.pixel_mixtures, c.pixel_hidden) if c.pixel_mixtures else None

    def add_pixel_model(self, mixtures: int = 3, hidden: int = DQConfig.pixel_hidden) -> None:
        """Give a lossy model an (untrained) per-pixel likelihood, so it can code lossless files."""
        self.config = replace(self.config, pixel_mixtures=mixtures, pixel_hidden=hidden)
        self.pixels = PixelModel(self.config.channels, mixtures, hidden)

    def adopt_pixel_model(self, donor: "DQCodec") -> None:
        """Give this model a copy of ``donor``'s pixel likelihood (its size and weights), e.g. as the start of
        training one on this model's codes; the two must have transforms of the same width."""
        if not donor.lossless:
            raise ModelError("the model to take a pixel likelihood from has none")
        if donor.config.channels != self.config.channels:
            raise ModelError(f"a pixel likelihood reading {donor.config.channels} decoder channels cannot read this model's {self.config.channels}")
        self.add_pixel_model(donor.config.pixel_mixtures, donor.config.pixel_hidden)
        self.pixels.load_state_dict(donor.pixels.state_dict())

    def drop_pixel_model(self) -> None:
        """Remove the per-pixel likelihood (and the near-lossless qualities), e.g. before training the lossy part it reads."""
        self.config = replace(self.config, pixel_mixtures=0, tolerances=[])  # the residual qualities stay
        self.pixels = None

    def widen_pixel_model(self, hidden: int) -> None:
        """Give the pixel likelihood more channels, keeping what it computes (see ``pixels.widen``)."""
        self.config = replace(self.config, pixel_hidden=hidden)
        self.pixels = widen(self.pixels, PixelModel(self.config.channels, self.config.pixel_mixtures, hidden))

    @property
    def lossless(self) -> bool:
        return self.pixels is not None

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def num_qualities(self) -> int:
        """Lossy qualities, then residual ones, then near-lossless ones."""
        return self.lossy_qualities + len(self.config.residual_steps) + len(self.config.tolerances)

    @property
    def lossy_qualities(self) -> int:
        """Qualities 1 to this code only the codes."""
        return len(self.config.qualities)

    def _residual_index(self, quality: int) -> int | None:
        index = quality - self.lossy_qualities - 1
        return index if 0 <= index < len(self.config.residual_steps) else None

    def residual_step(self, quality: int) -> int:
        """A residual quality's quantizer step (see residual.py); 0 for the others."""
        index = self._residual_index(quality)
        return 0 if index is None else self.config.residual_steps[index][1]

    def tolerance(self, quality: int) -> int:
        """A quality's tolerance d, in grey levels (its samples decode within 2d of the original's): 0 for
        lossy and residual qualities, whose pixels are not coded, else the near-lossless quality's."""
        index = quality - self.lossy_qualities - len(self.config.residual_steps) - 1
        return self.config.tolerances[index] if index >= 0 else 0

    def codes_quality(self, quality: int) -> int:
        """The lossy quality whose codes a file of this quality carries."""
        if quality <= self.lossy_qualities:
            return quality
        index = self._residual_index(quality)
        return self.config.lossless_quality if index is None else self.config.residual_steps[index][0]

    def stream_names(self, lossless: bool = False, residual: bool = False) -> list[str]:
        """The streams of a file, in order: one per level, then the pixels of a lossless or near-lossless
        file, or the difference of a residual quality's."""
        return [level.name for level in self.levels] + (["pixels"] if lossless else []) + (["residual"] if residual else [])

    def groups_for_quality(self, quality: int) -> list[int]:
        """Groups coded of each level at a quality."""
        if not 1 <= quality <= self.num_qualities:
            raise ArgumentError(f"quality must be between 1 and {self.num_qualities}, got {quality}")
        return self.config.qualities[self.codes_quality(quality) - 1]

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

    def forward(self, x: torch.Tensor, groups: torch.Tensor | None = None):
        """x (B, 3, H, W) in [0, 1] with H, W multiples of 16.

        groups: (B, levels) groups of each level each crop keeps (all of them by default)."""
        if groups is None:
            groups = torch.tensor([level.num_groups for level in self.levels]).expand(x.shape[0], -1)
        context, likelihoods, vq_loss = None, {}, 0.0
        for i, (level, features) in enumerate(zip(self.levels, self.analyse(x))):
            out = level(self.level_input(i, features, context), context, level.keep_mask(groups[:, i], x.shape[0], x.device))
            likelihoods[level.name] = out["likelihoods"]
            vq_loss = vq_loss + out["loss"]
            context = self._decoded(i, out["codes"], context, _run_float)
        features = self.synthesis[:-1](context)
        x_hat = self.synthesis[-1](features)
        if self.lossless:
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

    def _decoded(self, i: int, codes: torch.Tensor, context: torch.Tensor | None, run) -> torch.Tensor:
        """What level i's codes and context decode to: the next level's context or, after the
        last level, the synthesis input. ``run(module, x)`` applies a module (float or exact)."""
        x = codes if context is None else torch.cat([codes, context], 1)
        return x if i == self.num_levels - 1 else run(self.contexts[i], x)

    def synthesis_input(self, i: int, codes: torch.Tensor, context: torch.Tensor | None, run=_run_float) -> torch.Tensor:
        """The synthesis input from level i's codes and context, the levels below coding nothing."""
        x = self._decoded(i, codes, context, run)
        for k in range(i + 1, self.num_levels):
            empty = x.new_zeros(x.shape[0], self.levels[k].out_channels, *x.shape[2:])
            x = self._decoded(k, empty, x, run)
        return x

    # ---- coding path ---------------------------------------------------------------
    #
    # A region (a whole image, or one tile of a large one: see tiling.py) is coded level by level
    # into one stream per level; ``encode_region`` and ``decode_region`` append to and read from
    # streams the caller owns, so the tiles of an image share them. ``compress`` and
    # ``decompress`` are CompressAI's interface for one region.

    def new_streams(self, lossless: bool = False, residual: bool = False) -> list[StreamEncoder]:
        return [StreamEncoder() for _ in self.stream_names(lossless, residual)]

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: int, rate_weight: float | None = None, refine_steps: int = 0):
        """x (1, 3, H, W) in [0, 1], H and W multiples of 16 -> {"strings", "shape"}, one string per
        level (see ``encode_region``)."""
        streams = self.new_streams()
        self.encode_region(self.analyse(x), x, quality, streams, rate_weight, refine_steps)
        return {"strings": [s.to_bytes() for s in streams], "shape": (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)}

    @torch.no_grad()
    def encode_region(self, features: list[torch.Tensor], x: torch.Tensor, quality: int, streams: list[StreamEncoder], rate_weight: float | None = None, refine_steps: int = 0) -> dict:
        """Choose and encode every level's indices of a region, given its features (``analyse``) and its
        pixels x; the rate weight defaults to the quality's (see ``LevelCodec.compress``). ``refine_steps``
        > 0 first refines the last coded level's vectors for this region (see ``refine.refine_level``):
        slower encoding, the same decoder. Returns what ``decode_region`` will return."""
        groups = self.groups_for_quality(quality)
        if rate_weight is None:
            rate_weight = self.config.rate_weights[self.codes_quality(quality) - 1]
        last = _last_coded(groups)
        context, indices = None, []
        for i, level in enumerate(self.levels):
            shape = (x.shape[0], *features[i].shape[-2:])
            if i > last:  # a level this quality codes nothing of
                indices.append(torch.zeros(shape[0], level.num_groups, *shape[1:], dtype=torch.long))
                continue
            float_context = None if context is None else exact.to_float(context)
            z = level.quantizer.project(self.level_input(i, features[i], float_context))
            if refine_steps and i == last:
                z = refine_level(self, i, x, float_context, z, groups[i], refine_steps)
            indices.append(level.compress(z, context, shape, groups[i], rate_weight, streams[i]))
            if i < last:
                context = self._decoded(i, level.fixed_codes(indices[i], groups[i]), context, exact.run_module)
        return {"indices": indices, "groups": groups, "last": last, "context": context}

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], quality: int):
        decoded = self.decode_indices(strings, shape, quality)
        return {"x_hat": self.reconstruct(decoded["indices"], decoded["groups"])}

    @torch.no_grad()
    def reconstruct(self, indices: list[torch.Tensor], groups: list[int]) -> torch.Tensor:
        """The image (1, 3, H, W) in [0, 1] from every level's indices, in float32: the contexts
        are recomputed in float, so a window of a larger image decodes like the whole image."""
        last = _last_coded(groups)
        context = None
        for i in range(last + 1):
            codes = self.levels[i].codes(indices[i], groups[i])
            if i < last:
                context = self._decoded(i, codes, context, _run_float)
        x = self.synthesis_input(last, codes, context)
        # channels-last lets oneDNN skip its layout conversions: about 20% faster on CPU
        return self.synthesis(x.contiguous(memory_format=torch.channels_last)).clamp(0, 1).contiguous()

    @torch.no_grad()
    def decode_indices(self, strings, shape, quality, tables=None):
        """Decode every level's indices of one region from its strings (see ``decode_region``)."""
        self._check_streams(strings, lossless=False)
        streams = [StreamDecoder(s) for s in strings]
        decoded = self.decode_region(streams, shape, quality, tables)
        for stream in streams:
            stream.finish()
        return decoded

    @torch.no_grad()
    def decode_region(self, streams: list[StreamDecoder], shape: tuple[int, int], quality: int, tables=None) -> dict:
        """Decode every level's indices of a region of ``shape`` first-level positions. Returns
        {"indices": one (1, M, H, W) tensor per level, "groups": groups coded per level, "last": the
        last level coding any, "context": that level's fixed-point context (None for the first level)}.
        If ``tables`` is a list, every group's (integer tables, decoded symbols) pair is appended to it."""
        groups = self.groups_for_quality(quality)
        last = _last_coded(groups)
        h, w = shape
        context, indices = None, []
        for i, level in enumerate(self.levels):
            scale = 2**i
            indices.append(level.decompress(streams[i], context, (1, h * scale, w * scale), groups[i], tables))
            if i < last:
                context = self._decoded(i, level.fixed_codes(indices[i], groups[i]), context, exact.run_module)
        return {"indices": indices, "groups": groups, "last": last, "context": context}

    def _check_streams(self, strings: list[bytes], lossless: bool) -> None:
        names = self.stream_names(lossless)
        if len(strings) != len(names):
            raise CorruptStreamError(f"expected {len(names)} streams ({', '.join(names)}), found {len(strings)}")

    # ---- lossless coding -------------------------------------------------------------

    @torch.no_grad()
    def compress_lossless(self, x: torch.Tensor, size: tuple[int, int], quality: int):
        """Like ``compress`` plus one more string, the pixels of the top-left ``size``
        of x coded with their likelihood given the codes. x holds 8-bit values / 255."""
        self._require_pixels()
        streams = self.new_streams(lossless=True)
        decoded = self.encode_region(self.analyse(x), x, quality, streams)
        self.encode_pixels(decoded, x, size, streams[-1], tolerance=self.tolerance(quality))
        return {"strings": [s.to_bytes() for s in streams], "shape": (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)}

    @torch.no_grad()
    def decompress_lossless(self, strings: list[bytes], shape: tuple[int, int], quality: int, size: tuple[int, int], tables=None):
        """x (1, 3, H, W) with the exact 8-bit values / 255 inside ``size``. If ``tables``
        is a list, (frequencies, symbols) pairs of everything decoded are appended to it."""
        self._require_pixels()
        self._check_streams(strings, lossless=True)
        streams = [StreamDecoder(s) for s in strings]
        decoded = self.decode_region(streams, shape, quality, tables)
        image = self.decode_pixels(decoded, size, streams[-1], tables, tolerance=self.tolerance(quality))
        for stream in streams:
            stream.finish()
        return {"x_hat": image.float() / 255}

    def encode_pixels(self, decoded: dict, x: torch.Tensor, size: tuple[int, int], stream: StreamEncoder, on_position=None, tolerance: int = 0) -> None:
        """Encode the pixels of the top-left ``size`` of a region x (8-bit values / 255) given its codes,
        exactly or (``tolerance`` > 0) to within 2 * tolerance; ``on_position()`` is called as each pixel
        position of the 4x4 blocks is done."""
        folded = fold((x * 255).round().long())[0].flatten(2)  # (3, 16, h*w)

        def encode(table, position, c, pixels):
            values = folded[c, position, pixels]
            symbols, tail_offsets, tail_sizes = table.split(values)
            stream.encode(symbols.numpy(), table.frequencies)
            if len(tail_sizes):
                stream.encode_uniform(tail_offsets.numpy(), tail_sizes.numpy())
            return table.quantize(values)

        self._code_pixels(decoded, size, encode, on_position, tolerance)

    def decode_pixels(self, decoded: dict, size: tuple[int, int], stream: StreamDecoder, tables=None, on_position=None, tolerance: int = 0) -> torch.Tensor:
        """The region's 8-bit pixels (1, 3, H, W) inside the top-left ``size``: exact, or within 2 * tolerance."""

        def decode(table, position, c, pixels):
            frequencies = table.frequencies
            symbols = stream.decode(frequencies)
            tail_sizes = table.tail_sizes(torch.from_numpy(symbols))
            tail_sizes = tail_sizes[tail_sizes >= 2].numpy()
            offsets = stream.decode_uniform(tail_sizes)
            if tables is not None:
                tables.append((frequencies, symbols))
                tables.append(((np.arange(256) < tail_sizes[:, None]).astype(np.float64), offsets))
            return table.join(torch.from_numpy(symbols), torch.from_numpy(offsets))

        return self._code_pixels(decoded, size, decode, on_position, tolerance)

    @torch.no_grad()
    def pixel_bits(self, decoded: dict, x: torch.Tensor, size: tuple[int, int]) -> float:
        """-log2 p(x | codes) of a region under the continuous mixture (no table rounding), over its
        top-left ``size``."""
        self._require_pixels()
        context, x_hat = self._pixel_context(decoded)
        inside = torch.zeros_like(x[:, :1])
        inside[..., : size[0], : size[1]] = 1
        log_prob = self.pixels.log_prob(context, x_hat, (x * 255).round(), inside)
        return float(-log_prob.sum() / math.log(2))

    def _code_pixels(self, decoded, size, code_channel, on_position=None, tolerance: int = 0):
        pixels = ExactPixelModel(self.pixels)
        features = exact.run_module(self.synthesis[:-1], self._exact_synthesis_input(decoded))
        x_hat = exact.run_module(self.synthesis[-1], features)
        return code_pixels(pixels, pixels.context(features, x_hat), x_hat, size, code_channel, torch.get_num_threads(), on_position, tolerance)

    def _pixel_context(self, decoded):
        """The pixel likelihood's float context and x_hat (unclamped) from decoded codes."""
        i = decoded["last"]
        codes = self.levels[i].codes(decoded["indices"][i], decoded["groups"][i])
        context = decoded["context"]
        features = self.synthesis[:-1](self.synthesis_input(i, codes, None if context is None else exact.to_float(context)))
        x_hat = self.synthesis[-1](features)
        return self.pixels.context(features, x_hat), x_hat

    def _require_pixels(self) -> None:
        if not self.lossless:
            raise ModelError("this model has no pixel likelihood, so it cannot code lossless files")

    def _exact_synthesis_input(self, decoded: dict) -> torch.Tensor:
        """The synthesis input in fixed point, from decoded indices and the fixed-point context."""
        i = decoded["last"]
        codes = self.levels[i].fixed_codes(decoded["indices"][i], decoded["groups"][i])
        return self.synthesis_input(i, codes, decoded["context"], exact.run_module)

    # ---- growing a model ----------------------------------------------------------

    def with_level(self, level: LevelConfig, groups: list[int]) -> "DQCodec":
        """This model with one more level, at half the last one's stride, for higher rates: qualities that
        code none of it write the same streams (and an empty one for it) and decode to the same image as this
        model, to float rounding (the same weights, and the new level's codes enter the synthesis only
        through its first convolution, whose other inputs start as the identity), and
        new qualities code the new level's first ``groups[k]`` groups on top of every group of the levels
        above. Its new parts (``new_level_parameters``) are untrained; the synthesis must have no residual
        blocks."""
        c = self.config
        if c.residual_blocks:
            raise ArgumentError("a level can be added to a model without residual synthesis blocks only")
        if len(c.levels) == 4 or STRIDE >> len(c.levels) < 2:
            raise ArgumentError("the model has as many levels as dqcodec allows")
        if not groups or not all(1 <= g <= level.groups for g in groups):
            raise ArgumentError(f"each new quality codes 1 to {level.groups} groups of the new level")
        full = [lv.groups for lv in c.levels]
        qualities = [[*q, 0] for q in c.qualities] + [[*full, g] for g in groups]
        grown = DQCodec(replace(c, levels=[*c.levels, level], qualities=qualities, rate_weights=[*c.rate_weights, *[c.rate_weights[-1]] * len(groups)]))
        loaded = grown.load_state_dict(_grown_state(self, grown), strict=False)
        if loaded.unexpected_keys:  # every old weight must find its place; only the new parts stay untrained
            raise ModelError(f"weights with no place in the grown model: {', '.join(loaded.unexpected_keys[:3])}")
        with torch.no_grad():  # the synthesis' first convolution passes its context input through unchanged
            first = grown.synthesis[0]
            codes = grown.levels[-1].out_channels
            first.weight.zero_()
            first.bias.zero_()
            first.weight[:, codes:, 1, 1] = torch.eye(c.channels)
        return grown.eval()

    def new_level_parameters(self) -> list[str]:
        """The names of the parameters ``with_level`` added: the last level, its mixer, and the new level's
        codes' share of the synthesis' first convolution (its context's share and its bias stay)."""
        last = len(self.levels) - 1
        return [n for n, _ in self.named_parameters() if n.startswith((f"levels.{last}.", f"mixers.{last - 1}.")) or n == "synthesis.0.weight"]

    def freeze_all_but_new_level(self) -> None:
        """Train only what ``with_level`` added (``new_level_parameters``): every other weight, and the
        synthesis' first convolution's weights on its context input, stay as they are."""
        trainable = set(self.new_level_parameters())
        for name, p in self.named_parameters():
            p.requires_grad = name in trainable
        weight = self.synthesis[0].weight
        mask = torch.zeros_like(weight)
        mask[:, : self.levels[-1].out_channels] = 1
        weight.register_hook(lambda grad: grad * mask)

    def train_new_level(self) -> None:
        """Training mode for the new level only: the frozen quantizers must not update their codebooks."""
        self.eval()
        self.levels[-1].train()
        self.mixers[-1].train()

    # ---- persistence ---------------------------------------------------------------

    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "DQCodec":
        model = cls(DQConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(_renamed(checkpoint["state_dict"]))
        return model.eval()


def _grown_state(model: DQCodec, grown: DQCodec) -> dict:
    """``model``'s weights under ``grown``'s names (``DQCodec.with_level``): its last analysis stage splits
    where the new level's features are taken, and its synthesis up to the first up-sampling becomes the
    new level's context decoder."""
    count = model.num_levels
    first = len(grown.analysis[0])  # modules of model.analysis[0] that stay in grown.analysis[0]
    renamed = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "analysis":
            stage, index = int(parts[1]), int(parts[2])
            if stage == 0 and index >= first:
                parts[1:3] = ["1", str(index - first)]
            elif stage > 0:
                parts[1] = str(stage + 1)
        elif parts[0] == "synthesis":
            index = int(parts[1])
            if index < 3:
                parts[:2] = ["contexts", f"{count - 1}.{index}"]
            else:
                parts[1] = str(index - 2)
        renamed[".".join(parts)] = value
    return renamed


def _last_coded(groups: list[int]) -> int:
    """The last level a quality codes any group of (qualities code a prefix of the levels)."""
    return max(i for i, g in enumerate(groups) if g)
