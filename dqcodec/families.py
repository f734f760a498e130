"""The families of models by name, from a checkpoint's content alone (``registry`` builds and saves them)."""

from __future__ import annotations

DQ = "dq"  # DQCodec: the only family that writes .dq files; the others are CompressAI's baselines


def family_of_checkpoint(state: dict) -> str:
    """The family a checkpoint (or a shipped model file's content) belongs to."""
    return state.get("arch", DQ)
