"""dqcodec: a learned image codec built on depthwise quantization.

``compress``, ``decompress``, ``inspect``, ``ladder`` and the pair functions (``compress_pair``, ...) are imported on first use (PEP 562), so importing
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
_FROM_PAIRS = ("compress_pair", "decompress_pair", "inspect_pair")

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
    *_FROM_PAIRS,
]


def __getattr__(name: str):
    if name in _FROM_CODEC:
        from . import codec

        return getattr(codec, name)
    if name in _FROM_PAIRS:
        from . import pairs

        return getattr(pairs, name)
    raise AttributeError(f"module 'dqcodec' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
