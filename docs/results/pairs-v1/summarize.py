"""Summarize this run's points again after relabelling one pair (no file was coded again).

The run (`dqcodec eval --pairs data/pairs -o docs/results/pairs-v1`, session 23) found its pairs with a search
that looked into sub-folders, so data/pairs/exposure/ (one pair folder, leuven/) was taken as a pair itself,
named "exposure" with no kind. Its measurements are leuven's; this script names them exposure/leuven, of kind
exposure, as the fixed ``find_pairs`` does, and writes the summary and BD-rates again.

    python docs/results/pairs-v1/summarize.py
"""

from pathlib import Path

from dqcodec import evaluate_pairs

here = Path(__file__).parent
points = evaluate_pairs.read_points(here / "pair_points.csv")
for point in points:
    if point.pair == "exposure" and point.kind == "":
        point.pair, point.kind = "exposure/leuven", "exposure"
summary = evaluate_pairs.summarize(points)
evaluate_pairs.write(here, points, summary)
for line in evaluate_pairs.table(summary):
    print(line)
