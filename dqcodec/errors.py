"""dqcodec's exceptions: everything bad input can cause is one of these.

Catch ``DQCodecError`` to handle any of them. Each also derives from ``ValueError``, so
existing ``except ValueError`` code keeps working. Nothing from constriction, torch or numpy is let
through for bad bytes, a bad image or a bad argument; anything else is a bug in dqcodec.
"""

from __future__ import annotations


class DQCodecError(Exception):
    """Base class of every error dqcodec raises for bad input."""


class ContainerError(DQCodecError, ValueError):
    """Bytes that are not a valid .dq file."""


class CorruptStreamError(DQCodecError, ValueError):
    """A stream that does not decode, or decodes with symbols missing or left over."""


class UnsupportedImageError(DQCodecError, ValueError):
    """An image dqcodec cannot code without losing information it would not tell about."""


class ImageTooLargeError(DQCodecError, ValueError):
    """An image (to encode, or named by a file's header) over the pixel limit."""


class ModelError(DQCodecError, ValueError):
    """A model that is missing, is not a dq codec, or whose weights do not match."""


class FixedPointError(DQCodecError, ValueError):
    """A layer whose integer sums could leave float64's exact range."""


class ArgumentError(DQCodecError, ValueError):
    """An argument of the wrong type or out of range."""


class MissingExtraError(DQCodecError, ImportError):
    """A command needs a package that an optional extra installs (``pip install 'dqcodec[EXTRA]'``)."""
