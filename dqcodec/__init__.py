"""dqcodec: a learned image codec built on depthwise quantization.

``compress``, ``decompress``, ``inspect`` and ``ladder`` are imported on first use (PEP 562), so importing
dqcodec, its errors or its light modules (``defaults``, ``container``, ``zoo``) loads no model code; none of
them needs torch (``dqcodec.runtime`` codes every file at effort 0).
"""

from .errors import (
    ArgumentError,
    ContainerError,
    CorruptStreamError,
    DQCodecError,
    FixedPointError,
    ImageTooLargeError,
    MissingExtraError,
    ModelError,
    UnsupportedImageError,
)

_FROM_CODEC = ("compress", "decompress", "inspect", "ladder")

__all__ = [
    "ArgumentError",
    "ContainerError",
    "CorruptStreamError",
    "DQCodecError",
    "FixedPointError",
    "ImageTooLargeError",
    "MissingExtraError",
    "ModelError",
    "UnsupportedImageError",
    *_FROM_CODEC,
]


def __getattr__(name: str):
    if name in _FROM_CODEC:
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'dqcodec' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
