"""A region's codes once the level chain has decoded them: what every backend's chain hands the layers above it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DecodedCodes:
    """A region's codes as encoder and decoder both hold them after the level chain."""

    indices: list[Any]  # (1, M, H, W) of each level (torch or numpy), groups past ``groups`` zero
    groups: tuple[int, ...]  # groups coded of each level
    last: int  # the last level coding any group
    context: Any  # that level's fixed-point context (None for the first level)


def last_coded(groups: tuple[int, ...] | list[int]) -> int:
    """The last level a quality codes any group of (qualities code a prefix of the levels)."""
    return max(i for i, g in enumerate(groups) if g)
