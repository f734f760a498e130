"""A DQ model's configuration: its transforms' width, its levels and its ladder of qualities.

Plain data, importing neither torch nor numpy: ``point.Ladder`` reads the qualities off it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ArgumentError
from .point import MAX_STEP, MAX_TOLERANCE

MAX_RESIDUAL_RATE_WEIGHT = 10.0  # far above any useful weight (0.12 is dq-3's)

STRIDE = 16  # of the first level; images are padded to a multiple of it


@dataclass
class LevelConfig:
    groups: int
    codebook: int
    dim: int
    hidden: int | None = None  # the prior's hidden channels per group (None: the model's prior_hidden)
    # the first ``anchors`` groups are coded in two passes over a checkerboard: its anchors (y + x even) under the
    # group-causal prior, then the other half given the anchors' codes as well (graph.AnchorContext)
    anchors: int = 0


def _default_levels() -> list[LevelConfig]:
    return [LevelConfig(groups=4, codebook=64, dim=8), LevelConfig(groups=16, codebook=64, dim=4)]


@dataclass
class DQConfig:
    channels: int = 96
    levels: list[LevelConfig] = field(default_factory=_default_levels)  # coarse to fine
    prior_hidden: int = 32
    anchor_hidden: int = 64  # the hidden channels of a level's anchor contexts (LevelConfig.anchors)
    depthwise: bool = True
    codebook_learning: str = "ema"  # or "soft-to-hard" (see quantize.py)
    # ResNet blocks in the synthesis, at the last level's stride (the name is stored in checkpoints and model files)
    residual_blocks: int = 0
    # groups of each level coded at quality 1, 2, ...
    qualities: list[list[int]] = field(default_factory=lambda: [[4, g] for g in (1, 2, 4, 8, 12, 16)])
    # encoder-side rate weight per quality: indices minimise |z - e|^2 + weight * bits
    rate_weights: list[float] = field(default_factory=lambda: [0.0] * 6)
    default_quality: int = 4
    # the per-pixel likelihood for lossless files: mixture components (0 = none) and width
    pixel_mixtures: int = 0
    pixel_hidden: int = 64
    # empty: the pixel likelihood runs in fixed point (lossless format 1); else it is low-bit (lossless format 2,
    # ``lowbit.Plan``): its activations' grids, fractions f of 2^-f
    pixel_grids: list[int] = field(default_factory=list)
    lossless_quality: int = 1  # the (lossy) quality whose codes a lossless file carries
    # residual qualities, each [base quality, step]: the base's codes, then the image minus the base's image as
    # 8x8 DCTs quantized with that step (see residual.py). They follow the lossy qualities, in this order
    residual_steps: list[list[int]] = field(default_factory=list)
    # where the lossy qualities sit among the lossy and residual ones: the quality number of each, rising from 1
    # (empty: 1, 2, ... before every residual quality). Residual bases, lossless_quality and files name these
    lossy_positions: list[int] = field(default_factory=list)
    # whether residual qualities decode with their blocks' edges smoothed (residual.deblock; dq-3 on)
    residual_deblocking: bool = False
    # the residual encoder's weight of bits against squared error in steps (residual.rate_distortion_round;
    # 0, as in dq-2: plain dead-zone rounding). Encoder-only: files decode the same whatever it is
    residual_rate_weight: float = 0.0
    # near-lossless qualities after those: each codes lossless_quality's codes and every sample's bin
    # of 2d + 1 values for its tolerance d (see pixel_tables.py), so it decodes within 2d of the original
    tolerances: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.levels = [LevelConfig(**level) if isinstance(level, dict) else level for level in self.levels]
        self.qualities = [list(q) for q in self.qualities]
        self.tolerances = list(self.tolerances)
        self.pixel_grids = list(self.pixel_grids)
        self.residual_steps = [list(pair) for pair in self.residual_steps]
        self.lossy_positions = list(self.lossy_positions)
        if not 2 <= len(self.levels) <= 4:
            raise ArgumentError("a DQ model has 2 to 4 levels")
        if len(self.rate_weights) != len(self.qualities):
            raise ArgumentError("rate_weights needs one entry per quality")
        for quality in self.qualities:
            self._check_quality(quality)
        self._check_positions()
        if self.lossless_quality not in self.positions:
            raise ArgumentError("lossless_quality is not one of the lossy qualities")
        self._check_enhancements()
        if not 1 <= self.default_quality <= len(self.qualities) + len(self.residual_steps):
            raise ArgumentError("default_quality is not one of the lossy or residual qualities")

        for level in self.levels:
            if not 0 <= level.anchors <= level.groups:
                raise ArgumentError(f"a level's anchor groups are 0 to its {level.groups} groups, got {level.anchors}")

    def _check_quality(self, quality: list[int]) -> None:
        levels = self.levels
        if len(quality) != len(levels) or not all(0 <= g <= lv.groups for g, lv in zip(quality, levels)):
            raise ArgumentError(f"quality {quality} does not give 0 to all groups of each of the {len(levels)} levels")
        if quality[0] == 0 or any(g and quality[i] < levels[i].groups for i, g in enumerate(quality[1:])):
            raise ArgumentError(f"quality {quality} codes a level whose parent level is not complete")

    def _check_enhancements(self) -> None:
        if self.tolerances and not self.pixel_mixtures:
            raise ArgumentError("near-lossless qualities (tolerances) need a pixel likelihood")
        if not all(1 <= d <= MAX_TOLERANCE for d in self.tolerances):
            raise ArgumentError(f"tolerances are 1 to {MAX_TOLERANCE} grey levels")
        if not 0 <= self.residual_rate_weight <= MAX_RESIDUAL_RATE_WEIGHT:
            raise ArgumentError(f"residual_rate_weight is 0 to {MAX_RESIDUAL_RATE_WEIGHT}")
        top = len(self.qualities) + len(self.residual_steps)
        residual_qualities = [q for q in range(1, top + 1) if q not in self.positions]
        for pair, quality in zip(self.residual_steps, residual_qualities):
            if len(pair) != 2 or pair[0] not in self.positions or pair[0] > quality or not 1 <= pair[1] <= MAX_STEP:
                raise ArgumentError(
                    f"a residual quality is [base, step]: the base one of the lossy qualities below it "
                    f"({', '.join(map(str, self.positions))}), the step 1 to {MAX_STEP}; quality {quality} got {pair}"
                )

    @property
    def positions(self) -> list[int]:
        """The quality number of each lossy quality."""
        return self.lossy_positions or list(range(1, len(self.qualities) + 1))

    def _check_positions(self) -> None:
        if not self.lossy_positions:
            return
        top = len(self.qualities) + len(self.residual_steps)
        rising = all(a < b for a, b in zip(self.lossy_positions, self.lossy_positions[1:]))
        if len(self.lossy_positions) != len(self.qualities) or self.lossy_positions[0] != 1 or not rising:
            raise ArgumentError(
                f"lossy_positions gives each of the {len(self.qualities)} lossy qualities its quality, rising from 1"
            )
        if self.lossy_positions[-1] > top:
            raise ArgumentError(f"lossy_positions are qualities 1 to {top} (the lossy and residual ones)")

    @property
    def stream_names(self) -> list[str]:
        """The names of the levels' streams, first level first: its stride ("stride16", "stride8")."""
        return [f"stride{STRIDE >> i}" for i in range(len(self.levels))]

    @classmethod
    def from_dict(cls, config: dict) -> DQConfig:
        """A config from ``asdict``, or from a dq-hier checkpoint of dqcodec 0.2 (two named levels)."""
        if "top_groups" not in config:
            return cls(**config)
        config = dict(config)
        top = LevelConfig(config.pop("top_groups"), config.pop("top_codebook"), config.pop("top_dim"))
        bottom = LevelConfig(config.pop("bottom_groups"), config.pop("bottom_codebook"), config.pop("bottom_dim"))
        config["qualities"] = [[top.groups, g] for g in config["qualities"]]
        return cls(levels=[top, bottom], **config)
