"""dq-3 with placed rungs (f90f1d22, `make dq3-placed`'s ladder) against dq-3 0843ddc3, from both `dqcodec eval` runs:
the new rungs' spacing, BD-rate of the whole curve, and on how many images the qualities stop rising.

    python docs/results/dq-3-placed/compare.py     (from the repository's root)
"""

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from dqcodec import evaluate

HERE = Path(__file__).parent
OLD = HERE.parent / "dq-3-anchors"
TOP = {"placed": 18, "old": 16}  # the finest residual quality (the near-lossless one after it is left out)


def curve(run: Path, metric: str, top: int):
    doc = json.loads((run / "dq.json").read_text())
    keep = [i for i, s in enumerate(doc["settings"]) if s <= top]
    bpp = [doc["results"]["bpp"][i] for i in keep]
    if metric == "psnr":
        return bpp, [doc["results"]["psnr-rgb"][i] for i in keep]
    return bpp, [-10 * math.log10(1 - doc["results"]["ms-ssim-rgb"][i]) for i in keep]


def not_rising(run: Path, top: int) -> tuple[int, int, int]:
    """(images, images whose bytes fall from one quality to the next, images whose PSNR does)."""
    by_image = defaultdict(dict)
    with open(run / "points.csv") as points_file:
        for row in csv.DictReader(points_file):
            if row["codec"] == "dq" and int(row["setting"]) <= top:
                by_image[row["image"]][int(row["setting"])] = (float(row["bpp"]), float(row["psnr"]))
    rate = psnr = 0
    for points in by_image.values():
        ladder = [points[q] for q in sorted(points)]
        rate += any(b[0] <= a[0] for a, b in zip(ladder, ladder[1:]))
        psnr += any(b[1] < a[1] for a, b in zip(ladder, ladder[1:]))
    return len(by_image), rate, psnr


for name in ("heldout", "sharp", "native"):
    new, old = HERE / name, OLD / name
    bpp = curve(new, "psnr", TOP["placed"])[0]
    ratios = " ".join(f"{b / a:.2f}" for a, b in zip(bpp[:4], bpp[1:4]))
    bd = {m: evaluate.bd_rate(curve(old, m, TOP["old"]), curve(new, m, TOP["placed"])) for m in ("psnr", "ms-ssim")}
    images, rate, psnr = not_rising(new, TOP["placed"])
    _, old_rate, old_psnr = not_rising(old, TOP["old"])
    print(
        f"{name}: qualities 1-4 {' '.join(f'{b:.4f}' for b in bpp[:4])} bpp (ratios {ratios}); BD-rate against 0843ddc3 "
        f"PSNR {bd['psnr']:+.2f}%, MS-SSIM {bd['ms-ssim']:+.2f}%; of {images} images, bytes fall somewhere on "
        f"{rate} ({old_rate} with 0843ddc3), PSNR on {psnr} ({old_psnr})"
    )
