"""The former home of training, kept so ``python -m dqcodec.train`` (and torchrun ``-m dqcodec.train``)
still runs ``dqcodec train``: the code is in ``dqcodec.training``."""

from .training.cli import main

if __name__ == "__main__":
    main()
