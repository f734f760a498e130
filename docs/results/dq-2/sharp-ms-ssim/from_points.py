"""MS-SSIM (or PSNR) plot and BD-rates of a `dqcodec eval` run, from the files it wrote (no re-encoding).

    python docs/results/dq-2/sharp-ms-ssim/from_points.py docs/results/dq-2/sharp docs/results/dq-2/sharp-ms-ssim
    python docs/results/dq-2/sharp-ms-ssim/from_points.py RUN RUN psnr   # the run's own BD-rates, recomputed

Reads every codec's CompressAI JSON and points.csv in RUN, then calls the same
``dqcodec.evaluate.write_results`` that ``dqcodec eval --metric ms-ssim`` calls, on the same
per-setting means, into a temporary folder; keeps its rd.png and bd_rate.csv in OUT.
"""

import csv
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from dqcodec import evaluate

run, out = Path(sys.argv[1]), Path(sys.argv[2])
metric = sys.argv[3] if len(sys.argv) > 3 else "ms-ssim"
summaries = []
for name in evaluate.CODEC_FACTORIES:
    path = run / f"{name}.json"
    if path.exists():
        doc = json.loads(path.read_text())
        summaries.append(
            evaluate.Summary(doc["name"], doc["description"], doc["settings"], defaultdict(list, doc["results"]))
        )
with open(run / "points.csv", newline="") as f:
    points = [
        evaluate.Point(
            r["codec"],
            r["setting"],
            r["image"],
            int(r["bytes"]),
            *(float(r[k]) for k in ("bpp", "psnr", "ms_ssim", "encode_seconds", "decode_seconds")),
        )
        for r in csv.DictReader(f)
    ]
with tempfile.TemporaryDirectory() as tmp:
    deltas = evaluate.write_results(Path(tmp), summaries, points, metric)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("rd.png", "bd_rate.csv"):
        shutil.copy(Path(tmp) / name, out / name)
for name, delta in deltas.items():
    print(
        f"BD-rate of dq against {name} ({metric}): " + ("curves do not overlap" if delta is None else f"{delta:+.1f}%")
    )
