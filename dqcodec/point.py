"""Operating points: what one file codes, resolved once from (model, quality, lossless).

A DQ model's qualities form a ladder: its lossy qualities (the codes alone) and its residual
qualities (a lossy quality's codes, then the image minus theirs as quantized DCTs), then its
near-lossless qualities (the codes of the lossless quality, then every sample to within twice a
tolerance). The lossy qualities come first unless the model places them (``lossy_positions``), for
example residual qualities over quality 1 below the second lossy quality, so that the rates rise with
the quality number (no shipped model does: docs/design.md). A lossless file carries the codes of a
lossy quality and then every pixel exactly.

``Ladder`` reads the rungs off a model's config (a ``DQConfig`` or the dict of a model card, so
listing models needs neither torch nor numpy) and resolves a request or a file's header into an
``OperatingPoint``: an immutable value that says everything the layers below need. Nothing below
this module interprets a quality number.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .errors import ArgumentError, ContainerError, ModelError

MAX_STEP = 255  # the largest quantizer step of a residual quality (one byte in the residual stream)
MAX_TOLERANCE = 15  # the largest tolerance d of a near-lossless quality, in grey levels
LOSSY_TILE = 1024  # tile side, in pixels, the encoder writes when only the codes' image is synthesized
PIXEL_TILE = 512  # and when the pixels are coded: the exact synthesis and pixel likelihood take more memory


class Kind(IntEnum):
    """What a file codes after its codes; the value is the header's kind byte (format version 4)."""

    LOSSY = 0  # the codes alone
    RESIDUAL = 1  # the codes, then the image minus theirs as quantized 8x8 DCTs
    NEAR_LOSSLESS = 2  # the codes, then every sample to within twice a tolerance
    LOSSLESS = 3  # the codes, then every pixel exactly


@dataclass(frozen=True)
class OperatingPoint:
    """One rung of a model's ladder, or a lossless file's codes: everything a file's layers need."""

    kind: Kind
    quality: int  # the header's quality: a rung of the ladder, or for a lossless file its codes' quality
    codes_quality: int  # the lossy quality whose codes the file carries
    groups: tuple[int, ...]  # groups coded of each level, coarse to fine
    rate_weight: float  # the encoder's rate weight in choosing those codes
    residual_step: int = 0  # a residual quality's DCT quantizer step
    deblocking: bool = False  # whether a residual quality's image is deblocked (residual.deblock)
    residual_rate_weight: float = 0.0  # the residual encoder's rate weight (residual.rate_distortion_round)
    tolerance: int = 0  # a near-lossless quality's tolerance d: samples decode within 2d

    @property
    def codes_pixels(self) -> bool:
        """Whether the file codes every sample (exactly or within the tolerance) after its codes."""
        return self.kind in (Kind.NEAR_LOSSLESS, Kind.LOSSLESS)

    @property
    def exact(self) -> bool:
        """Whether every sample decodes exactly."""
        return self.kind == Kind.LOSSLESS

    @property
    def enhancement(self) -> str | None:
        """The name of the stream that follows the codes' streams, if any."""
        if self.codes_pixels:
            return "pixels"
        return "residual" if self.kind == Kind.RESIDUAL else None

    @property
    def tile(self) -> int:
        """The tile side the encoder writes for this point."""
        return PIXEL_TILE if self.codes_pixels else LOSSY_TILE

    @property
    def bound(self) -> int:
        """How far (grey levels) a near-lossless file's samples may decode from the original; 0 otherwise."""
        return 2 * self.tolerance

    def stream_names(self, level_names: list[str]) -> list[str]:
        """The file's streams in order: one per level, then the enhancement's."""
        return [*level_names, *([self.enhancement] if self.enhancement else [])]

    def describe(self) -> str:
        """What the point codes, in words."""
        if self.kind == Kind.RESIDUAL:
            return f"quality {self.codes_quality}'s codes and a residual of step {self.residual_step}"
        if self.kind == Kind.NEAR_LOSSLESS:
            return f"near-lossless, samples within {self.bound}"
        if self.kind == Kind.LOSSLESS:
            return f"lossless, quality {self.codes_quality}'s codes"
        return "lossy"


@dataclass(frozen=True)
class Ladder:
    """A model's qualities, in order: lossy, residual, near-lossless."""

    qualities: tuple[tuple[int, ...], ...]  # groups of each level coded at each lossy quality
    rate_weights: tuple[float, ...]
    residual_steps: tuple[tuple[int, int], ...]  # (base quality, step) of each residual quality
    residual_deblocking: bool  # whether residual qualities deblock their image
    residual_rate_weight: float  # the residual encoder's rate weight
    tolerances: tuple[int, ...]
    default_quality: int
    lossless_quality: int  # the quality whose codes lossless and near-lossless files carry
    has_pixel_model: bool
    lossy_positions: tuple[int, ...] = ()  # the quality of each lossy one, rising (empty: 1, 2, ... first)

    @classmethod
    def from_config(cls, config: Any) -> Ladder:
        """The ladder of a ``DQConfig`` or of the config dict in a model card."""
        get = config.get if isinstance(config, dict) else lambda name, default=None: getattr(config, name, default)
        qualities = tuple(_groups(q, get("top_groups", None)) for q in get("qualities", []))
        return cls(
            qualities=qualities,
            rate_weights=tuple(get("rate_weights", None) or [0.0] * len(qualities)),
            residual_steps=tuple((int(base), int(step)) for base, step in get("residual_steps", None) or []),
            residual_deblocking=bool(get("residual_deblocking", False)),
            residual_rate_weight=float(get("residual_rate_weight", 0.0) or 0.0),
            tolerances=tuple(get("tolerances", None) or []),
            default_quality=get("default_quality", 1),
            lossless_quality=get("lossless_quality", 1),
            has_pixel_model=bool(get("pixel_mixtures", 0)),
            lossy_positions=tuple(get("lossy_positions", None) or range(1, len(qualities) + 1)),
        )

    def is_lossy(self, quality: int) -> bool:
        """Whether ``quality`` (a whole number) is one of the lossy qualities."""
        return quality in self.lossy_positions

    @property
    def lossy_count(self) -> int:
        return len(self.qualities)

    def __len__(self) -> int:
        return self.lossy_count + len(self.residual_steps) + len(self.tolerances)

    def resolve(self, quality: int | None = None, lossless: bool = False) -> OperatingPoint:
        """The point an encoder codes for a request; quality defaults to the model's (or its lossless
        quality). Raises ArgumentError for a quality the model does not have, ModelError for a point
        the model cannot code."""
        if lossless:
            quality = self._checked_lossy(self.lossless_quality if quality is None else quality)
            self._require_pixel_model()
            return self._codes(Kind.LOSSLESS, quality, quality)
        return self.rung(_checked_quality("quality", self.default_quality if quality is None else quality, len(self)))

    def rung(self, quality: int) -> OperatingPoint:
        """The point of quality 1 to ``len(self)``."""
        if self.is_lossy(quality):
            return self._codes(Kind.LOSSY, quality, quality)
        index = quality - 1 - sum(position < quality for position in self.lossy_positions)  # of the others
        if index < len(self.residual_steps):
            base, step = self.residual_steps[index]
            return self._codes(
                Kind.RESIDUAL,
                quality,
                base,
                residual_step=step,
                deblocking=self.residual_deblocking,
                residual_rate_weight=self.residual_rate_weight,
            )
        tolerance = self.tolerances[index - len(self.residual_steps)]  # a config has them only with a pixel model
        return self._codes(Kind.NEAR_LOSSLESS, quality, self.lossless_quality, tolerance=tolerance)

    def rungs(self) -> list[OperatingPoint]:
        """Every quality's point, 1 first."""
        return [self.rung(q) for q in range(1, len(self) + 1)]

    def from_header(self, kind: int, quality: int, codes_quality: int) -> OperatingPoint:
        """The point a version-4 file's header names; ContainerError if the model has no such point."""
        if kind not in Kind.__members__.values():
            raise ContainerError(f"header names coding kind {kind}, which this dqcodec does not know")
        point = self._file_point(Kind(kind), quality)
        if point.codes_quality != codes_quality:
            raise ContainerError(
                f"header names codes of quality {codes_quality}, but its quality {quality} carries quality {point.codes_quality}'s"
            )
        return point

    def from_legacy_header(self, quality: int, streams: int, levels: int) -> OperatingPoint:
        """The point of a version-2 or -3 file, whose header has no kind: one stream per level is lossy, one more
        is the residual of a residual quality or else the pixels of a lossless or near-lossless file."""
        if streams not in (levels, levels + 1):
            raise ContainerError(
                f"file has {streams} streams; this model writes {levels} (lossy) or {levels + 1} (lossless or residual)"
            )
        _check_file_quality(quality, len(self))
        rung = self.rung(quality)
        if streams == levels:
            if rung.kind != Kind.LOSSY:
                raise ContainerError(
                    f"header names quality {quality} ({rung.describe()}), but the file has no stream after its codes"
                )
            return rung
        if rung.kind in (Kind.RESIDUAL, Kind.NEAR_LOSSLESS):
            return rung
        self._require_pixel_model()
        return self._codes(Kind.LOSSLESS, quality, quality)

    def _file_point(self, kind: Kind, quality: int) -> OperatingPoint:
        if kind == Kind.LOSSLESS:
            if not self.is_lossy(quality):
                raise ContainerError(
                    f"header names a lossless file of quality {quality}'s codes, but the lossy qualities are "
                    f"{_listed(self.lossy_positions)}"
                )
            self._require_pixel_model()
            return self._codes(Kind.LOSSLESS, quality, quality)
        _check_file_quality(quality, len(self))
        point = self.rung(quality)
        if point.kind != kind:
            raise ContainerError(
                f"header names a {kind.name.lower().replace('_', '-')} file of quality {quality}, which is {point.describe()}"
            )
        return point

    def _codes(self, kind: Kind, quality: int, codes_quality: int, **layer) -> OperatingPoint:
        index = self.lossy_positions.index(codes_quality)
        return OperatingPoint(kind, quality, codes_quality, self.qualities[index], self.rate_weights[index], **layer)

    def _checked_lossy(self, value: Any) -> int:
        """A lossless file's codes' quality, if it is one of the lossy qualities."""
        quality = _checked_quality("quality (of a lossless file's codes)", value, len(self))
        if not self.is_lossy(quality):
            raise ArgumentError(
                f"a lossless file's codes are those of a lossy quality ({_listed(self.lossy_positions)}), got {value}"
            )
        return quality

    def _require_pixel_model(self) -> None:
        if not self.has_pixel_model:
            raise ModelError("the model has no pixel likelihood, so it cannot code lossless files")


def _groups(quality: Any, top_groups: int | None) -> tuple[int, ...]:
    """A lossy quality's groups of every level; a card of dqcodec 0.2 (two named levels) gave the second
    level's alone."""
    return (top_groups, quality) if isinstance(quality, int) and top_groups is not None else tuple(quality)


def _checked_quality(name: str, value: Any, high: int) -> int:
    """A quality as an int, if it is a whole number (a numpy one too) from 1 to ``high``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ArgumentError(f"{name} must be a whole number from 1 to {high}, got {type(value).__name__} {value!r}")
    quality = operator.index(value)
    if not 1 <= quality <= high:
        raise ArgumentError(f"{name} must be between 1 and {high}, got {value}")
    return quality


def _listed(qualities: tuple[int, ...]) -> str:
    return ", ".join(map(str, qualities))


def _check_file_quality(quality: int, high: int) -> None:
    if not 1 <= quality <= high:
        raise ContainerError(f"header names quality {quality}, but the model has qualities 1 to {high}")
