"""The optional extras a command may need beyond the core (numpy, constriction, Pillow, click), and a
one-line error that names the extra to install when one of its packages is missing."""

from __future__ import annotations

import importlib

from .errors import MissingExtraError

# the packages each extra adds that a command imports (pyproject.toml lists them with their versions)
EXTRAS = {
    "torch": ("torch",),  # training and exporting dq models, encoder effort, the model's own bit estimates
    "eval": ("compressai", "pytorch_msssim", "matplotlib"),  # the baselines, MS-SSIM, the plot
    "train": ("torch", "compressai"),  # torch; CompressAI's rate-distortion loss, for its baselines
}


def require(extra: str, what: str) -> None:
    """Raise MissingExtraError, naming ``extra``, if a package it installs cannot be imported; ``what`` says
    what needs it."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(
                f"{what} needs {module}, which is not installed: pip install 'dqcodec[{extra}]'"
            ) from None
