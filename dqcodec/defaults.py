"""The public API's defaults and limits, in a module that imports nothing heavy, so the command
line can show them in its help without loading torch."""

DEFAULT_MODEL = "dq-2"
# dq-2 has no pixel likelihood trained on its codes yet, so lossless files are written with dq-hier's
DEFAULT_LOSSLESS_MODEL = "dq-hier"

# images (to encode, or in a file's header) above this many pixels are refused
DEFAULT_MAX_PIXELS = 64_000_000

# refinement steps per encoder effort (see refine.py); effort never changes the decoder
EFFORT_STEPS = (0, 10, 30)


def default_model(lossless: bool = False) -> str:
    """The model that writes a file when none is named: dq-2 for lossy files, dq-hier for lossless ones."""
    return DEFAULT_LOSSLESS_MODEL if lossless else DEFAULT_MODEL
