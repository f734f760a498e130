"""BD-rates of subsets of dq's rate points from one `dqcodec eval` output folder (the same files, the same
run): dq-2's lossy qualities alone, with the one near-lossless quality it ships (tolerance 4, quality 9 of the
three-rung model this run measured), and with all three rungs (tolerances 10, 7, 4).

    python docs/results/near-lossless/bd_subsets.py docs/results/near-lossless/native-eval
"""

import json
import sys

from dqcodec.evaluate import bd_rate

OTHERS = ("jpeg", "jp2", "jxl", "avif", "webp", "bmshj2018-factorized", "bmshj2018-hyperprior")
SUBSETS = {"q1-6": [1, 2, 3, 4, 5, 6], "q1-6 + d=4": [1, 2, 3, 4, 5, 6, 9], "all": [1, 2, 3, 4, 5, 6, 7, 8, 9]}


def curve(results: dict, settings: list) -> tuple[list, list]:
    rows = [results["settings"].index(s) for s in settings]
    return [results["results"]["bpp"][i] for i in rows], [results["results"]["psnr-rgb"][i] for i in rows]


def main(folder: str) -> None:
    dq = json.load(open(f"{folder}/dq.json"))
    for label, settings in SUBSETS.items():
        cells = []
        for name in OTHERS:
            other = json.load(open(f"{folder}/{name}.json"))
            delta = bd_rate(curve(other, other["settings"]), curve(dq, settings))
            cells.append(f"{name} {delta:+.1f}%" if delta is not None else f"{name} n/a")
        print(label.ljust(12), ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1])
