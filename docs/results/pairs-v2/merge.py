"""Merge the two halves of session 24's pair evaluation into this folder's points, summary and BD-rates.

The evaluation ran as two processes at once, one thread each (the machine has two cores), on folders of
symbolic links to data/pairs' kinds:

    mkdir -p A B; ln -s $PWD/data/pairs/{stereo,unrelated} A/; ln -s $PWD/data/pairs/{motion,exposure,viewpoint} B/
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 dqcodec eval --pairs A -o A-out   # eval-stereo-unrelated.log
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 dqcodec eval --pairs B -o B-out   # eval-motion-exposure-viewpoint.log
    python docs/results/pairs-v2/merge.py A-out B-out
"""

import sys
from pathlib import Path

from dqcodec import evaluate_pairs

here = Path(__file__).parent
points = [p for folder in sys.argv[1:] for p in evaluate_pairs.read_points(Path(folder) / "pair_points.csv")]
summary = evaluate_pairs.summarize(points)
evaluate_pairs.write(here, points, summary)
for line in evaluate_pairs.table(summary):
    print(line)
