"""dqcodec: a learned image codec built on depthwise quantization."""

from .codec import compress, decompress, inspect
from .errors import (
    ArgumentError,
    ContainerError,
    CorruptStreamError,
    DQCodecError,
    FixedPointError,
    ImageTooLargeError,
    ModelError,
    UnsupportedImageError,
)

__all__ = [
    "ArgumentError",
    "ContainerError",
    "CorruptStreamError",
    "DQCodecError",
    "FixedPointError",
    "ImageTooLargeError",
    "ModelError",
    "UnsupportedImageError",
    "compress",
    "decompress",
    "inspect",
]
