"""What a caller gathers while a file is coded, in one object passed down to the layers.

The layers tell it two things: every decoded (probability table, symbols) pair, which ``inspect``
turns into the payload's ideal size, and every unit of work done, which a progress bar shows. A
layer announces its units with ``expect`` before it starts them, so the total is known early.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Progress = Callable[[int, int], None]  # progress(done, total) of a long encode or decode


class Recorder:
    """Collects tables if ``keep_tables``; calls ``progress(done, total)`` as units of work finish."""

    def __init__(self, progress: Progress | None = None, keep_tables: bool = False):
        self.progress = progress
        self.tables: list[tuple[np.ndarray, np.ndarray]] | None = [] if keep_tables else None
        self.done = 0
        self.total = 0

    def record(self, frequencies: np.ndarray, symbols: np.ndarray) -> None:
        """A decoded group of symbols and the integer table (one row per symbol) they were coded with."""
        if self.tables is not None:
            self.tables.append((frequencies, symbols))

    def expect(self, units: int) -> None:
        """``units`` more units of work are to come."""
        self.total += units

    def advance(self) -> None:
        """One unit of work is done."""
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done))
