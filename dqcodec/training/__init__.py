"""Training: random crops from folders of images, progressive crop sizes, Adam, resumable checkpoints,
a click progress bar and a CSV log (``dqcodec train``, or ``python -m dqcodec.training``):

    dqcodec train DATA_DIR [DATA_DIR ...] --out runs/NAME --schedule 64x16:6000,128x8:2000

Every crop draws a quality at random, so the one model learns every rate point (nested dropout over
the bottom groups). ``--arch`` picks the architecture (``registry.ARCHITECTURES``): a DQ one, or
``bmshj2018-factorized`` or ``bmshj2018-hyperprior`` to train CompressAI's model of that name instead,
with the same data, crops, schedule and loss, plus CompressAI's auxiliary loss on its entropy
bottleneck's quantiles (their own Adam, as in CompressAI's example trainer).

Training that outgrows one machine: launched by torchrun, every process trains one replica under
DistributedDataParallel (gloo on CPUs, NCCL where CUDA is present) and averages the gradients with the
others every step:

    torchrun --standalone --nproc_per_node 4 -m dqcodec.training DATA_DIR --out runs/NAME ...

The batch of ``--schedule`` is per process (the global batch is processes x batch); each process draws
its own crops and qualities, seeded from (seed, rank). Launched without torchrun it is one process. It
runs on CUDA where it is present.

Its rooms, one concern each:

- ``cli``: the command's options (``Options``), the model they build and the ``TrainConfig`` they make;
- ``config``: ``TrainConfig``, one run's settings;
- ``modes``: what trains (lossy, lossless, a new level alone or with all), each mode with its freezing rules;
- ``data``: images, crops and the qualities crops are coded at;
- ``objective``: the loss, the forward pass under autocast, the schedule's stages and the learning rate;
- ``checkpoints``: the checkpoint (saved atomically, resumed, optimizer state restored), snapshots, seeds, log.csv;
- ``distributed``: the processes, their random streams, DDP and codebooks shared between processes;
- ``loop``: ``train``, the loop itself.
"""

from .checkpoints import CHECKPOINT, write_seed, write_snapshot
from .config import TrainConfig
from .loop import train
from .modes import Lossless, Lossy, NewLevel
from .objective import Stage, parse_schedule

__all__ = [
    "CHECKPOINT",
    "Lossless",
    "Lossy",
    "NewLevel",
    "Stage",
    "TrainConfig",
    "parse_schedule",
    "train",
    "write_seed",
    "write_snapshot",
]
