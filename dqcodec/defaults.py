"""The public API's defaults and limits, in a module that imports nothing heavy, so the command
line can show them in its help without loading torch."""

DEFAULT_MODEL = "dq-3"
# dq-3's pixel likelihood is dq-2's (trained on its own codes; smaller lossless files than dq-hier's on both sets),
# and its lossless files carry the same codes, so their streams are dq-2's
DEFAULT_LOSSLESS_MODEL = "dq-3"

# images (to encode, or in a file's header) above this many pixels are refused
DEFAULT_MAX_PIXELS = 64_000_000

# refinement steps per encoder effort (see refine.py); effort never changes the decoder
EFFORT_STEPS = (0, 10, 30)


def default_model(lossless: bool = False) -> str:
    """The model that writes a file when none is named: dq-3, for lossy and lossless files."""
    return DEFAULT_LOSSLESS_MODEL if lossless else DEFAULT_MODEL
