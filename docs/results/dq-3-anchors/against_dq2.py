"""BD-rate (PSNR) of dq-3 against dq-2 on each set, from their `dqcodec eval` runs' dq.json (without the
near-lossless qualities): dq-3 0843ddc3 (this folder) and 87879186 (docs/results/dq-3).

    python docs/results/dq-3-anchors/against_dq2.py     (from the repository's root)
"""

import json

from dqcodec import evaluate

SETS = (("heldout-residual", "heldout"), ("native-residual", "native"), ("sharp", "sharp"))


def curve(path: str, top: int) -> tuple[list[float], list[float]]:
    with open(path) as file:
        doc = json.load(file)
    keep = [i for i, s in enumerate(doc["settings"]) if s <= top]
    return [doc["results"]["bpp"][i] for i in keep], [doc["results"]["psnr-rgb"][i] for i in keep]


for dq2_set, dq3_set in SETS:
    dq2 = curve(f"docs/results/dq-2/{dq2_set}/dq.json", 9)
    anchored = evaluate.bd_rate(dq2, curve(f"docs/results/dq-3-anchors/{dq3_set}/dq.json", 16))
    first = evaluate.bd_rate(dq2, curve(f"docs/results/dq-3/{dq3_set}/dq.json", 16))
    print(f"{dq3_set}: 0843ddc3 {anchored:+.2f}%, 87879186 {first:+.2f}% against dq-2")
