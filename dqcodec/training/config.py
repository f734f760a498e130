"""One run's settings (what ``dqcodec train``'s options say once the model is built)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .modes import Lossy, Mode
from .objective import Stage


@dataclass
class TrainConfig:
    """How ``train`` trains a model.

    ``data``: the image folders (every crop draws an image from all of them alike); ``out``: the run folder
    (checkpoint.pt, log.csv; an existing checkpoint there is resumed); ``schedule``: the stages of crops;
    ``lmbda``: one λ, or (dq) one per quality; ``checkpoint_minutes``: how often the checkpoint is written;
    ``keep_all``: the fraction of crops coded with every group; ``until``: stop after this step (with a
    checkpoint); ``quality`` (dq): code every crop at this quality (1-based), else each draws one; ``bf16``:
    the forward pass under bfloat16 autocast of the training device (the quantizers stay in float32);
    ``channels_last``: the model and the crops in that memory format; ``ecvq`` > 0: the mode's trained levels
    choose their indices entropy-constrained in training, as the encoder does, at that rate weight
    (``LevelCodec.training_rate_weight``); ``mode``: what trains (``modes``); ``debug_dir``: a JSON file per
    process and run of what it drew and digests of its model's state (for tests)."""

    data: Path | list[Path]
    out: Path
    schedule: list[Stage]
    lmbda: float | list[float] = 0.01
    lr: float = 3e-4
    checkpoint_minutes: float = 2.0
    seed: int = 0
    keep_all: float = 0.0
    until: int | None = None
    quality: int | None = None
    bf16: bool = False
    channels_last: bool = False
    ecvq: float = 0.0
    mode: Mode = field(default_factory=Lossy)
    debug_dir: Path | None = None

    @property
    def folders(self) -> list[Path]:
        return [self.data] if isinstance(self.data, Path) else list(self.data)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.schedule)

    @property
    def last_step(self) -> int:
        return min(self.total_steps, self.until or self.total_steps)
