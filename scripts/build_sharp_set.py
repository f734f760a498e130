#!/usr/bin/env python3
"""Build dqcodec's "sharp" evaluation set (data/sharp/) of whole photos from Debian packages.

data/heldout (downscaled photos, most of them JPEG q 75-90 at the source) and data/native
(textured native-resolution crops) both show dq-2 level with WebP, while on film scans the
project had never seen it is +27% BD-rate: neither set is like the photos codecs are compared
on, which are whole scenes, sharp (or grainy) in every region.  This recipe (stdlib + numpy +
Pillow) keeps only such photos:

  1. Fetch the packages with build_dataset.fetch() (same cache: data/debs, data/extracted).
  2. Candidates, listed by hand from shared/DATA.md's highest-quality sources (real photos
     only: renders, paintings and text left out by name, see SHARP_SOURCES):
     enlightenment-data's Eet backgrounds (the full-size JPEG is entry edje/images/0),
     libjxl-testdata's lossless PNGs, the photo folders of mate-backgrounds,
     plasma-workspace-wallpapers (the largest of each wallpaper's sizes) and
     lomiri-wallpapers-20.04, and, for the packages build_dataset.py uses
     (forensics-samples-files, lxqt-themes), only the photos data/manifest.json puts in
     heldout.  ukui-wallpapers has only renders and is not listed.
  3. Rejected: any (package, path) that data/manifest.json puts in train; photos that look
     like a data/train image or like an earlier candidate (build_dataset's aHash + dHash);
     the standard test images (build_dataset.FORBIDDEN_NAMES); JPEGs below quality 95
     (estimated from the luminance quantization table, build_native_set.jpeg_quality);
     images whose longer side is < 2 x 768 (they would need a factor below 2).
  4. EXIF orientation applied, RGB, then the whole photo downscaled by the factor
     f = (longer side) / 768 >= 2: Image.reduce(f) when f is a whole number that divides both
     sides, else an area (BOX) resize to round(w / f) x round(h / f).  So the longer side is
     768 (about 768x512 or 768x432, either orientation); nothing is cropped or upscaled.
  5. Sharp everywhere: on the downscaled photo, the mean |5-point Laplacian| of the luma
     (0.299R + 0.587G + 0.114B, grey levels) per 64x64 block (ragged edge ignored).  A photo
     is kept when the 10th percentile of its blocks is >= MIN_P10 (2.3): its weakest tenth
     is still textured.  Calibrated by eye on the candidates (weakest decile marked): those
     just below have a bokeh corner (Spruce-Needles 2.19), a blurred background
     (Yellow-Flower 2.03) or a smooth sky over motion blur (Storm 2.01); the weakest decile
     of RainDrops (2.38) is dark but sharp grass.  Foliage, bark, petals score 3-50.
  6. data/sharp/<package>__<stem>.png and data/sharp.json (per photo: package, path, entry,
     source size, JPEG quality or "lossless", factor, output size, sha256 of the output
     pixels, the sharpness numbers, and whether data/native.json cuts crops from the same
     photo; then every rejected candidate with its reason).  Exit status 1 when fewer than
     MIN_PHOTOS photos are kept.

Deterministic: same packages in, same PNGs and json out.

Usage:  python3 scripts/build_sharp_set.py [--data-dir data] [--deb-dir DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_dataset as bd
import build_native_set as ns

log = bd.log

TARGET_SIDE = 768  # the longer side of every output image
MIN_FACTOR = 2.0
MIN_JPEG_QUALITY = 95
BLOCK = 64
MIN_P10 = 2.3  # 10th percentile of the per-block mean |Laplacian| (grey levels)
MIN_PHOTOS = 6


@dataclass
class SharpSource:
    package: str
    patterns: list[str]  # globs inside the package
    exclude: str = r"$^"  # regex (full match) on the path inside the package
    eet_entry: str | None = None
    largest_of_dir: bool = False  # plasma: each wallpaper ships at many sizes; keep the largest


SHARP_SOURCES = [
    SharpSource(
        "enlightenment-data",
        ["usr/share/enlightenment/data/backgrounds/*.edj"],
        exclude=r".*/(Dunes|Flat-.*|Squiggle.*|Sunset-Hills|Paper-Flower)\.edj",  # renders, patterns, q90 paper
        eet_entry="edje/images/0",
    ),
    # flower.png is the lossless original of libjxl's test photo; hdr_room.png (676x449) is too small
    # and the wesaturate 500px photos too (500x500).  The .jpg/.pnm variants of flower are the same photo.
    SharpSource(
        "libjxl-testdata",
        ["usr/share/libjxl-testdata/jxl/flower/flower.png", "usr/share/libjxl-testdata/jxl/hdr_room.png"],
    ),
    SharpSource("mate-backgrounds", ["usr/share/backgrounds/mate/nature/*.jpg"]),  # abstract/, desktop/: renders
    SharpSource(
        "plasma-workspace-wallpapers",
        [
            f"usr/share/wallpapers/{d}/contents/images/*"
            for d in (
                "BytheWater",
                "ColdRipple",
                "DarkestHour",
                "EveningGlow",
                "FallenLeaf",
                "Grey",
                "Kite",
                "OneStandsOut",
                "Path",
                "summer_1am",
            )
        ],  # the other wallpapers are renders or paintings
        largest_of_dir=True,
    ),
    # Fossa and Infinite-Sea are renders, Painting-Colors a painting.
    SharpSource("lomiri-wallpapers-20.04", ["usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"]),
]
# Packages of build_dataset.SOURCES whose held-out photos (only) are candidates.
SHARP_FROM_HELDOUT = ["forensics-samples-files", "lxqt-themes"]


def size_from_name(path: str) -> int:
    m = re.fullmatch(r"(\d+)x(\d+)\.\w+", os.path.basename(path))
    return int(m.group(1)) * int(m.group(2)) if m else 0


def candidates(roots: dict[str, str], manifest: dict | None) -> list[ns.Photo]:
    photos = []
    for src in SHARP_SOURCES:
        root = roots.get(src.package)
        if root is None:
            continue
        exclude = re.compile(src.exclude, re.IGNORECASE)
        for pattern in src.patterns:
            files = [
                f
                for f in sorted(glob.glob(os.path.join(glob.escape(root), pattern)))
                if os.path.isfile(f) and not os.path.islink(f) and f.lower().endswith((".jpg", ".jpeg", ".png", ".edj"))
            ]
            if src.largest_of_dir and files:
                files = [max(files, key=lambda f: (size_from_name(f), f))]
            for f in files:
                rel = os.path.relpath(f, root)
                if not exclude.fullmatch(rel) and not ns.forbidden(rel):
                    photos.append(ns.Photo(src.package, rel, f, src.eet_entry))
    return photos + ns.heldout_photos(roots, manifest, SHARP_FROM_HELDOUT)


def downscale(im: Image.Image) -> tuple[Image.Image, float]:
    w, h = im.size
    f = max(w, h) / TARGET_SIDE
    if f == int(f) and w % int(f) == 0 and h % int(f) == 0:
        return im.reduce(int(f)), f
    return im.resize((round(w / f), round(h / f)), Image.Resampling.BOX), f


def block_sharpness(im: Image.Image) -> np.ndarray:
    """Mean |5-point Laplacian| of the luma per BLOCK x BLOCK block (rows x cols)."""
    luma = np.asarray(im, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    p = np.pad(luma, 1, mode="edge")
    lap = np.abs(4 * p[1:-1, 1:-1] - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:])
    rows, cols = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    return lap[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3))


def sharpness(im: Image.Image) -> dict:
    b = block_sharpness(im)
    return {
        "p10": round(float(np.percentile(b, 10)), 3),
        "median": round(float(np.median(b)), 3),
        "min": round(float(b.min()), 3),
        "blocks": int(b.size),
    }


def out_name(photo: ns.Photo) -> str:
    stem = os.path.splitext(os.path.basename(photo.path))[0]
    if photo.package == "plasma-workspace-wallpapers":  # .../<Name>/contents/images/<WxH>.jpg
        stem = photo.path.split("/")[3]
    return f"{photo.package}__{stem}.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data", help="data root (default: data)")
    ap.add_argument("--deb-dir", default=None, help="download cache (default: <data-dir>/debs)")
    args = ap.parse_args()
    data_dir = args.data_dir
    deb_dir = os.path.abspath(args.deb_dir or os.path.join(data_dir, "debs"))
    extract_root = os.path.join(data_dir, "extracted")

    manifest = ns.load_manifest(data_dir)
    if manifest is None:
        log("ERROR: the sharp set needs data/manifest.json (make data) to stay disjoint from data/train")
        return 1
    train_keys = ns.manifest_keys(manifest, "train")
    native_keys = set()
    native_json = os.path.join(data_dir, "native.json")
    if os.path.isfile(native_json):
        with open(native_json) as f:
            native_keys = {(c["package"], c["path"]) for c in json.load(f)["crops"]}
    packages = [s.package for s in SHARP_SOURCES] + SHARP_FROM_HELDOUT
    roots, debs = ns.fetch_all(packages, deb_dir, extract_root)
    train_hashes = ns.train_image_hashes(os.path.join(data_dir, "train"))
    if not train_hashes:
        log("WARNING: no data/train images: the look-alike check against data/train is skipped")

    out_dir = os.path.join(data_dir, "sharp")
    os.makedirs(out_dir, exist_ok=True)
    kept: list[dict] = []
    kept_hashes: list[tuple[str, int, int]] = []
    skipped: list[dict] = []
    for photo in candidates(roots, manifest):
        key = (photo.package, photo.path)

        def skip(reason: str, extra: dict | None = None, photo: ns.Photo = photo) -> None:
            skipped.append({"package": photo.package, "path": photo.path, "reason": reason, **(extra or {})})
            log(f"{photo.package}:{photo.path}: skipped ({reason})")

        if key in train_keys:  # cannot happen by construction; checked all the same
            skip("in data/train")
            continue
        raw = ns.photo_bytes(photo)
        if raw is None:
            skip(f"no image in entry {photo.entry}")
            continue
        try:
            im, facts = ns.decode(raw)
        except Exception as e:
            skip(f"unreadable: {e}")
            continue
        q = facts["jpeg_quality"]
        if q is not None and q < MIN_JPEG_QUALITY:
            skip(f"JPEG quality ~{q} < {MIN_JPEG_QUALITY}")
            continue
        if facts.get("reject"):
            skip(facts["reject"])
            continue
        w, h = im.size
        if max(w, h) < MIN_FACTOR * TARGET_SIDE:
            skip(f"too small: {w}x{h} would need a factor < {MIN_FACTOR:g}")
            continue
        lookalike = ns.train_lookalike(im, train_hashes) if train_hashes else None
        if lookalike:
            skip(f"looks like data/train/{lookalike}")
            continue
        ahash, dhash = bd.hashes(im)
        dup = next(
            (
                n
                for n, a, d in kept_hashes
                if bd.near_duplicate({"ahash": ahash, "dhash": dhash}, {"ahash": a, "dhash": d})
            ),
            None,
        )
        if dup:
            skip(f"near duplicate of {dup}")
            continue
        small, factor = downscale(im)
        sharp = sharpness(small)
        if sharp["p10"] < MIN_P10:
            skip(f"not sharp everywhere: p10 {sharp['p10']} < {MIN_P10}", {"sharpness": sharp})
            continue
        name = out_name(photo)
        assert all(k["file"] != name for k in kept), name
        ns.save_png(small, os.path.join(out_dir, name))
        kept_hashes.append((name, ahash, dhash))
        kept.append(
            {
                "file": name,
                "package": photo.package,
                "path": photo.path,
                **({"entry": photo.entry} if photo.entry else {}),
                "source_sha256": bd.sha256_bytes(raw),
                "source_format": facts["format"],
                "source_size": [w, h],
                "jpeg_quality": q if q is not None else "lossless",
                "factor": round(factor, 4),
                "out_size": list(small.size),
                "pixel_sha256": bd.sha256_bytes(small.tobytes()),
                "sharpness": sharp,
                "split_in_manifest": "heldout" if key in ns.manifest_keys(manifest, "heldout") else None,
                "also_in_native_set": key in native_keys,
            }
        )
        log(f"{photo.package}:{photo.path}: kept as {name} {small.size[0]}x{small.size[1]} (p10 {sharp['p10']})")
    ns.remove_stale_pngs(out_dir, {k["file"] for k in kept})

    doc = {
        "description": "dqcodec sharp whole-photo evaluation set, built by scripts/build_sharp_set.py",
        "params": {
            "target_longer_side": TARGET_SIDE,
            "min_factor": MIN_FACTOR,
            "resize": "Image.reduce(f) for a whole f dividing both sides, else BOX (area) resize; no crop",
            "min_jpeg_quality": MIN_JPEG_QUALITY,
            "sharpness": f"mean |5-point Laplacian| of luma (0.299R+0.587G+0.114B) per {BLOCK}x{BLOCK} block"
            " of the downscaled photo; p10 = 10th percentile over blocks",
            "min_p10": MIN_P10,
            "disjoint_from_train": "no (package, path) of data/manifest.json's train split;"
            " no aHash+dHash look-alike of a data/train image",
        },
        "debs": {p: d for p, d in debs.items() if any(k["package"] == p for k in kept)},
        "images": kept,
        "skipped": skipped,
    }
    path = os.path.join(data_dir, "sharp.json")
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)

    log("")
    log("sharp evaluation set (data/sharp/)")
    for pkg in sorted({k["package"] for k in kept} | {s["package"] for s in skipped}):
        n = sum(k["package"] == pkg for k in kept)
        log(f"{pkg:28s} kept {n:3d} skipped {sum(s['package'] == pkg for s in skipped):3d}")
    log(f"{'TOTAL':28s} kept {len(kept):3d} skipped {len(skipped):3d}")
    if len(kept) < MIN_PHOTOS:
        log(f"WARNING: only {len(kept)} photos (want >= {MIN_PHOTOS})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
