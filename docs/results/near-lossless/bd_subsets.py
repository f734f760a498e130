"""BD-rates of subsets of dq's rate points from one `dqcodec eval` output folder (the same files, the same
run), against every other codec the run has: dq-2's lossy qualities alone, with the one near-lossless quality
it ships (tolerance 4: quality 9 of the three-rung model of native-eval, quality 7 of the shipped dq-2), and,
for the three-rung run, with all three rungs (tolerances 10, 7, 4).

    python docs/results/near-lossless/bd_subsets.py docs/results/near-lossless/native-eval
    python docs/results/near-lossless/bd_subsets.py docs/results/dq-2/heldout-q7
"""

import json
import sys
from pathlib import Path

from dqcodec.evaluate import bd_rate

OTHERS = ("jpeg", "jp2", "jxl", "avif", "webp", "bmshj2018-factorized", "bmshj2018-hyperprior")
THREE_RUNGS = {"q1-6": [1, 2, 3, 4, 5, 6], "q1-6 + d=4": [1, 2, 3, 4, 5, 6, 9], "all": [1, 2, 3, 4, 5, 6, 7, 8, 9]}
SHIPPED = {"q1-6": [1, 2, 3, 4, 5, 6], "q1-6 + d=4": [1, 2, 3, 4, 5, 6, 7]}


def curve(results: dict, settings: list) -> tuple[list, list]:
    rows = [results["settings"].index(s) for s in settings]
    return [results["results"]["bpp"][i] for i in rows], [results["results"]["psnr-rgb"][i] for i in rows]


def main(folder: str) -> None:
    dq = json.loads(Path(f"{folder}/dq.json").read_text())
    subsets = THREE_RUNGS if len(dq["settings"]) == 9 else SHIPPED
    others = [name for name in OTHERS if Path(f"{folder}/{name}.json").exists()]
    for label, settings in subsets.items():
        cells = []
        for name in others:
            other = json.loads(Path(f"{folder}/{name}.json").read_text())
            delta = bd_rate(curve(other, other["settings"]), curve(dq, settings))
            cells.append(f"{name} {delta:+.1f}%" if delta is not None else f"{name} n/a")
        print(label.ljust(12), ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1])
