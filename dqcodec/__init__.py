"""dqcodec: a learned image codec built on depthwise quantization."""

from .codec import UnsupportedImageError, compress, decompress, inspect
from .container import ContainerError
from .entropy import CorruptStreamError
from .zoo import ModelError

__all__ = [
    "ContainerError",
    "CorruptStreamError",
    "ModelError",
    "UnsupportedImageError",
    "compress",
    "decompress",
    "inspect",
]
