"""Would an encoder that picks, per image, among dq-2's measured rungs (by MSE + λ·bpp) get above JPEG
between 0.67 and 1.5 bpp? A desk check on the per-image points of one `dqcodec eval` run (points.csv):
no file is written, the points are the real files' bpp and PSNR. The result is compared, as `dqcodec eval`
does, by the mean bpp and mean PSNR over the images, against JPEG's curve of the same run (interpolated
in log bpp).

    python docs/results/near-lossless/per_image_choice.py docs/results/near-lossless/native-eval/points.csv
"""

import collections
import csv
import sys

import numpy as np

RUNG_SETS = {
    "6, 7, 8, 9 (q6 and the three near-lossless rungs)": [6, 7, 8, 9],
    "6, 9 (q6 and tolerance 4, as shipped)": [6, 9],
    "1–9 (every rung)": list(range(1, 10)),
}
LAMBDAS = [5, 10, 20, 40, 80]


def main(points_csv: str) -> None:
    points = collections.defaultdict(dict)
    with open(points_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["codec"] in ("dq", "jpeg"):
            points[row["codec"]].setdefault(row["image"], {})[int(row["setting"])] = (
                float(row["bpp"]),
                float(row["psnr"]),
            )
    dq, jpeg = points["dq"], points["jpeg"]
    images = sorted(dq)
    curve = sorted(
        (np.mean([jpeg[i][s][0] for i in images]), np.mean([jpeg[i][s][1] for i in images])) for s in jpeg[images[0]]
    )
    jpeg_bpp, jpeg_psnr = np.array(curve).T
    print(f"{len(images)} images; JPEG's curve from {jpeg_bpp[0]:.3f} to {jpeg_bpp[-1]:.3f} bpp")
    for label, rungs in RUNG_SETS.items():
        print(f"rungs {label}")
        for lmbda in LAMBDAS:
            chosen = [
                min(rungs, key=lambda s: 255**2 * 10 ** (-dq[i][s][1] / 10) + lmbda * dq[i][s][0]) for i in images
            ]
            bpp = np.mean([dq[i][s][0] for i, s in zip(images, chosen)])
            psnr = np.mean([dq[i][s][1] for i, s in zip(images, chosen)])
            at = np.interp(np.log(bpp), np.log(jpeg_bpp), jpeg_psnr)
            counts = ", ".join(f"q{s}: {n}" for s, n in sorted(collections.Counter(chosen).items()))
            print(
                f"  λ {lmbda:3}: {bpp:.3f} bpp, {psnr:.2f} dB; JPEG {at:.2f} dB there, gap {psnr - at:+.2f} ({counts})"
            )


if __name__ == "__main__":
    main(sys.argv[1])
