"""python -m dqcodec.training (or torchrun ... -m dqcodec.training): ``dqcodec train``."""

from .cli import main

main()
