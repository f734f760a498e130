#!/usr/bin/env python3
"""Build dqcodec's native-resolution evaluation crops (data/native/) from Debian packages.

data/heldout was downscaled by 2x or more, which smooths noise and fine detail and flatters
the model.  This recipe (stdlib + numpy + Pillow) cuts crops at native resolution instead,
from the best sources in shared/DATA.md only (JPEG q >= 90 or lossless), and prefers
textured regions (foliage, grain, fabric, hair, water):

  1. Fetch the packages with build_dataset.fetch() (same cache: data/debs, data/extracted).
  2. Source photos: enlightenment-data's Eet backgrounds (the full-size JPEG is entry
     edje/images/0), libjxl-testdata's lossless PNGs, and for packages that
     build_dataset.py also uses (forensics-samples-files, lxqt-themes) only the photos
     data/manifest.json puts in heldout, so no source photo of data/train is reused.
     Photos that look like a data/train image (build_dataset's aHash + dHash) are skipped
     too, and so are the standard test images (build_dataset.FORBIDDEN_NAMES) and JPEGs
     below quality 90 (estimated from the luminance quantization table).
  3. EXIF orientation applied, RGB.  Texture map: luminance averaged over 4x4 pixels
     (so that sensor noise, which a 1-pixel measure mistakes for texture, counts little),
     absolute 5-point Laplacian, averaged per 64x64 block of the source.  A crop's score
     is the mean over its blocks; crops with score < MIN_CROP_SCORE or with more than
     MAX_FLAT_FRACTION of their blocks below FLAT_BLOCK_SCORE (sky, bokeh) are skipped.
  4. Candidates on a 128 px grid, 768x512 (512x768 for portrait photos); the best
     non-overlapping ones are kept, at most 4 per photo.  No resizing anywhere.
  5. data/native/<package>__<stem>__<x>_<y>.png and data/native.json (crop boxes, scores,
     sha256 of the decoded pixels); a per-source summary is printed.  Exit status 1 when
     the set has fewer than 24 crops or 8 source photos.

With --train-native it also writes data/train-native/ (+ data/train-native.json):
256x256 native-resolution crops, up to 8 per photo, from data/train photos of
forensics-samples-files, lxqt-themes, lomiri-wallpapers-16.04, libelementary-data and
darknet that are lossless or JPEG q >= 90, never from a photo of data/heldout or of
the native set.  For a future training run that should also see undownscaled photos.

Everything is deterministic: same packages in, same crops and json out.

Usage:  python3 scripts/build_native_set.py [--data-dir data] [--deb-dir DIR] [--train-native]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import re
import struct
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_dataset as bd

log = bd.log

NATIVE_CROP = (768, 512)  # (w, h) for landscape photos; (512, 768) for portrait ones
NATIVE_STRIDE = 128
NATIVE_PER_PHOTO = 4
NATIVE_MIN_CROPS = 24
NATIVE_MIN_PHOTOS = 8
TRAIN_CROP = (256, 256)
TRAIN_STRIDE = 64
TRAIN_PER_PHOTO = 8

BLOCK = 64  # texture is measured per BLOCK x BLOCK tile; crop sizes and strides are multiples
BIN = 4  # the Laplacian is taken on luminance averaged over BIN x BIN pixels
# Calibrated on the sources by eye: clean sky / bokeh tiles score ~0.6-1.2, clouds ~2-4.5,
# foliage, bark, needles, petals 6-30.
FLAT_BLOCK_SCORE = 1.5  # mean |Laplacian| (grey levels) below which a tile counts as flat
MAX_FLAT_FRACTION = 0.25
MIN_CROP_SCORE = 5.0
MIN_JPEG_QUALITY = 90

EET_MAGIC = 0x1EE70F42


@dataclass
class NativeSource:
    """A package build_dataset.py does not use: its photos cannot be in data/train."""

    package: str
    patterns: list[str]  # globs inside the package
    exclude: str = r"$^"  # regex (full match) on the file name
    eet_entry: str | None = None  # the image is this entry of an Eet file


NATIVE_SOURCES = [
    NativeSource(
        "enlightenment-data",
        ["usr/share/enlightenment/data/backgrounds/*.edj"],
        exclude=r"Dunes\.edj|Flat-.*|Squiggle.*|Sunset-Hills\.edj|Paper-Flower\.edj",
        eet_entry="edje/images/0",
    ),
    # The 500px wesaturate photos are listed for completeness: too small for 768x512.
    NativeSource(
        "libjxl-testdata",
        [
            "usr/share/libjxl-testdata/jxl/flower/flower.png",
            "usr/share/libjxl-testdata/external/wesaturate/500px/*_srgb8.png",
        ],
    ),
]
# Packages of build_dataset.SOURCES that may give native crops, from their held-out photos only.
NATIVE_FROM_HELDOUT = ["forensics-samples-files", "lxqt-themes"]
# Packages of build_dataset.SOURCES whose training photos may give native training crops.
TRAIN_NATIVE_PACKAGES = [
    "forensics-samples-files",
    "lxqt-themes",
    "lomiri-wallpapers-16.04",
    "libelementary-data",
    "darknet",
]


@dataclass
class Photo:
    package: str
    path: str  # inside the package
    file: str  # on disk
    entry: str | None = None  # Eet entry name, for .edj files
    rotate_cw: int = 0  # extra rotation recorded by build_dataset (kphotoalbum only)


# --------------------------------------------------------------------------
# reading images: Eet containers, JPEG quality
# --------------------------------------------------------------------------


def eet_entry(data: bytes, name: str) -> bytes | None:
    """The raw bytes of entry `name` of an (uncompressed, unciphered) Eet file, else None.
    Layout: magic, #entries, #dictionary; then per entry 6 big-endian ints
    (offset, size, data_size, name_offset, name_size, flags)."""
    if len(data) < 12 or struct.unpack(">I", data[:4])[0] != EET_MAGIC:
        return None
    n_entries = struct.unpack(">i", data[4:8])[0]
    for k in range(n_entries):
        off, size, _, name_off, name_size, flags = struct.unpack(">6i", data[12 + 24 * k : 36 + 24 * k])
        if data[name_off : name_off + name_size].rstrip(b"\0") == name.encode():
            return data[off : off + size] if flags == 0 else None
    return None


def largest_embedded_jpeg(data: bytes) -> bytes | None:
    """Fallback for containers we cannot parse: the JPEG (found by its SOI marker) with the
    largest frame; Pillow ignores what follows its EOI."""
    best, best_area = None, 0
    for m in re.finditer(b"\xff\xd8\xff", data):
        try:
            with Image.open(io.BytesIO(data[m.start() :])) as im:
                area = im.size[0] * im.size[1] if im.format in ("JPEG", "MPO") else 0
        except Exception:
            continue
        if area > best_area:
            best, best_area = data[m.start() :], area
    return best


def photo_bytes(photo: Photo) -> bytes | None:
    with open(photo.file, "rb") as f:
        data = f.read()
    if photo.entry is None:
        return data
    return eet_entry(data, photo.entry) or largest_embedded_jpeg(data)


# IJG (libjpeg) standard luminance quantization table, quality 50.
IJG_LUMA = [
    16,
    11,
    10,
    16,
    24,
    40,
    51,
    61,
    12,
    12,
    14,
    19,
    26,
    58,
    60,
    55,
    14,
    13,
    16,
    24,
    40,
    57,
    69,
    56,
    14,
    17,
    22,
    29,
    51,
    87,
    80,
    62,
    18,
    22,
    37,
    56,
    68,
    109,
    103,
    77,
    24,
    35,
    55,
    64,
    81,
    104,
    113,
    92,
    49,
    64,
    78,
    87,
    103,
    121,
    120,
    101,
    72,
    92,
    95,
    98,
    112,
    100,
    103,
    99,
]


def ijg_table_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return sum(min(255, max(1, (v * scale + 50) // 100)) for v in IJG_LUMA)


def jpeg_quality(im: Image.Image) -> int | None:
    """IJG quality whose luminance table has the closest sum (order independent); None if not JPEG."""
    tables = getattr(im, "quantization", None)
    if im.format not in ("JPEG", "MPO") or not tables:
        return None
    total = sum(tables[min(tables)])
    return min(range(1, 101), key=lambda q: (abs(ijg_table_sum(q) - total), -q))


def decode(raw: bytes, rotate_cw: int = 0) -> tuple[Image.Image | None, dict]:
    """RGB image with EXIF orientation applied, and facts about the source
    (stored size, format, JPEG quality, or 'reject' with a reason)."""
    with Image.open(io.BytesIO(raw)) as im:
        facts = {"format": im.format, "stored_size": list(im.size), "jpeg_quality": jpeg_quality(im)}
        im.load()
        im = ImageOps.exif_transpose(im)
        if rotate_cw:
            im = im.transpose(bd.CW_TRANSPOSE[rotate_cw])
        has_alpha = "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info)
        if has_alpha and im.convert("RGBA").getextrema()[3][0] < 255:
            facts["reject"] = "has transparency"
        q = facts["jpeg_quality"]
        if q is not None and q < MIN_JPEG_QUALITY:
            facts["reject"] = f"JPEG quality ~{q} < {MIN_JPEG_QUALITY}"
        return im.convert("RGB"), facts


# --------------------------------------------------------------------------
# texture and crop choice
# --------------------------------------------------------------------------


def block_texture(im: Image.Image) -> np.ndarray:
    """Mean |Laplacian| of the BIN x BIN-averaged luminance, per BLOCK x BLOCK tile of the
    image (rows x cols; a ragged right/bottom edge is ignored)."""
    rgb = np.asarray(im, dtype=np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    rows, cols = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    t = BLOCK // BIN  # binned pixels per tile side
    binned = luma[: rows * BLOCK, : cols * BLOCK].reshape(rows * t, BIN, cols * t, BIN).mean(axis=(1, 3))
    p = np.pad(binned, 1, mode="edge")
    lap = np.abs(4 * p[1:-1, 1:-1] - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:])
    return lap.reshape(rows, t, cols, t).mean(axis=(1, 3))


def crop_size_for(im: Image.Image, landscape: tuple[int, int]) -> tuple[int, int]:
    w, h = landscape
    return (h, w) if im.size[1] > im.size[0] else (w, h)


def candidate_crops(tiles: np.ndarray, crop: tuple[int, int], stride: int) -> list[dict]:
    """Every grid position whose crop is textured enough, with its score."""
    bw, bh, step = crop[0] // BLOCK, crop[1] // BLOCK, stride // BLOCK
    rows, cols = tiles.shape
    flat = tiles < FLAT_BLOCK_SCORE
    out = []
    for by in range(0, rows - bh + 1, step):
        for bx in range(0, cols - bw + 1, step):
            score = float(tiles[by : by + bh, bx : bx + bw].mean())
            flat_fraction = float(flat[by : by + bh, bx : bx + bw].mean())
            if score >= MIN_CROP_SCORE and flat_fraction <= MAX_FLAT_FRACTION:
                x, y = bx * BLOCK, by * BLOCK
                out.append(
                    {
                        "box": [x, y, x + crop[0], y + crop[1]],
                        "texture": round(score, 3),
                        "flat_fraction": round(flat_fraction, 3),
                    }
                )
    return out


def overlaps(a: list[int], b: list[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def pick_crops(cands: list[dict], limit: int) -> list[dict]:
    """Greedy: most textured first (ties: top-left first), never overlapping a kept crop."""
    kept: list[dict] = []
    for c in sorted(cands, key=lambda c: (-c["texture"], c["box"][1], c["box"][0])):
        if len(kept) == limit:
            break
        if not any(overlaps(c["box"], k["box"]) for k in kept):
            kept.append(c)
    return sorted(kept, key=lambda c: (c["box"][1], c["box"][0]))


# --------------------------------------------------------------------------
# source selection
# --------------------------------------------------------------------------


def load_manifest(data_dir: str) -> dict | None:
    path = os.path.join(data_dir, "manifest.json")
    if not os.path.isfile(path):
        log(f"WARNING: {path} missing: no photos of build_dataset.py's packages will be used")
        return None
    with open(path) as f:
        return json.load(f)


def manifest_keys(manifest: dict | None, split: str) -> set[tuple[str, str]]:
    return {(i["package"], i["path"]) for i in (manifest or {}).get("images", []) if i["split"] == split}


def forbidden(path: str) -> bool:
    return bool(bd.FORBIDDEN_NAMES.search(os.path.basename(path)))


def native_photos(fetched: dict[str, str], manifest: dict | None) -> list[Photo]:
    """Candidate source photos of the native set (selected by path only, nothing decoded)."""
    photos = []
    for src in NATIVE_SOURCES:
        root = fetched.get(src.package)
        if root is None:
            continue
        exclude = re.compile(src.exclude, re.IGNORECASE)
        for pattern in src.patterns:
            for file in sorted(glob.glob(os.path.join(glob.escape(root), pattern))):
                name = os.path.basename(file)
                if os.path.isfile(file) and not exclude.fullmatch(name) and not forbidden(name):
                    photos.append(Photo(src.package, os.path.relpath(file, root), file, src.eet_entry))
    return photos + heldout_photos(fetched, manifest, NATIVE_FROM_HELDOUT)


def heldout_photos(fetched: dict[str, str], manifest: dict | None, packages) -> list[Photo]:
    """The photos data/manifest.json holds out of training, of some of build_dataset.py's packages."""
    heldout = manifest_keys(manifest, "heldout")
    photos = []
    for src in bd.SOURCES:
        root = fetched.get(src.package)
        if src.package not in packages or root is None:
            continue
        picked, _ = bd.select_files(src, root)  # same selection (and name filter) as the dataset
        photos += [Photo(src.package, rel, os.path.join(root, rel)) for rel in picked if (src.package, rel) in heldout]
    return photos


def train_native_photos(fetched: dict[str, str], manifest: dict | None, excluded: set[tuple[str, str]]) -> list[Photo]:
    photos = []
    for item in (manifest or {}).get("images", []):
        root = fetched.get(item["package"])
        key = (item["package"], item["path"])
        if (
            item["split"] != "train"
            or item["package"] not in TRAIN_NATIVE_PACKAGES
            or root is None
            or key in excluded
            or forbidden(item["path"])
        ):
            continue
        photos.append(
            Photo(item["package"], item["path"], os.path.join(root, item["path"]), rotate_cw=item.get("rotate_cw", 0))
        )
    return sorted(photos, key=lambda p: (p.package, p.path))


def train_image_hashes(train_dir: str) -> list[tuple[str, int, int]]:
    """(file, aHash, dHash) of every data/train image, to catch the same photo in another package."""
    out = []
    for path in sorted(glob.glob(os.path.join(glob.escape(train_dir), "*.png"))):
        with Image.open(path) as im:
            out.append((os.path.basename(path), *bd.hashes(im.convert("RGB"))))
    return out


def train_lookalike(im: Image.Image, train_hashes: list[tuple[str, int, int]]) -> str | None:
    ahash, dhash = bd.hashes(im)
    for name, a, d in train_hashes:
        if bd.near_duplicate({"ahash": ahash, "dhash": dhash}, {"ahash": a, "dhash": d}):
            return name
    return None


# --------------------------------------------------------------------------
# building a crop set
# --------------------------------------------------------------------------


def crop_name(photo: Photo, box: list[int]) -> str:
    stem = os.path.splitext(os.path.basename(photo.path))[0]
    return f"{photo.package}__{stem}__{box[0]}_{box[1]}.png"


def save_png(im: Image.Image, path: str) -> None:
    im.save(path + ".tmp", format="PNG", compress_level=6)
    os.replace(path + ".tmp", path)


def photo_crops(
    photo: Photo, crop: tuple[int, int], stride: int, per_photo: int, train_hashes: list | None
) -> tuple[list[tuple[Image.Image, dict]], str | None]:
    """The chosen (crop image, record) pairs of one photo, or ([], why it gives none)."""
    raw = photo_bytes(photo)
    if raw is None:
        return [], f"no image in entry {photo.entry}"
    try:
        im, facts = decode(raw, photo.rotate_cw)
    except Exception as e:  # unreadable: record, don't crash
        return [], f"unreadable: {e}"
    if "reject" in facts:
        return [], facts["reject"]
    size = crop_size_for(im, crop)
    if im.size[0] < size[0] or im.size[1] < size[1]:
        return [], f"smaller than {size[0]}x{size[1]}: {im.size[0]}x{im.size[1]}"
    lookalike = train_lookalike(im, train_hashes) if train_hashes else None
    if lookalike:
        return [], f"looks like data/train/{lookalike}"
    chosen = pick_crops(candidate_crops(block_texture(im), size, stride), per_photo)
    if not chosen:
        return [], "no textured crop"
    out = []
    for c in chosen:
        piece = im.crop(c["box"])  # a plain crop: no resampling
        assert piece.size == size, (photo.path, c["box"])
        out.append(
            (
                piece,
                {
                    "file": crop_name(photo, c["box"]),
                    "package": photo.package,
                    "path": photo.path,
                    **({"entry": photo.entry} if photo.entry else {}),
                    "source_sha256": bd.sha256_bytes(raw),  # of the image's bytes (for .edj: the entry's)
                    "source_format": facts["format"],
                    "jpeg_quality": facts["jpeg_quality"],
                    "source_size": list(im.size),
                    "box": c["box"],
                    "texture": c["texture"],
                    "flat_fraction": c["flat_fraction"],
                    "pixel_sha256": bd.sha256_bytes(piece.tobytes()),
                },
            )
        )
    return out, None


def build_crops(
    photos: list[Photo],
    out_dir: str,
    crop: tuple[int, int],
    stride: int,
    per_photo: int,
    train_hashes: list | None = None,
) -> tuple[list[dict], list[dict]]:
    """Cut and write the crops of every photo; returns (crop records, skipped photos).
    PNGs of earlier runs that are no longer wanted are removed."""
    os.makedirs(out_dir, exist_ok=True)
    records, skipped = [], []
    for photo in photos:
        crops, reason = photo_crops(photo, crop, stride, per_photo, train_hashes)
        if reason:
            skipped.append({"package": photo.package, "path": photo.path, "reason": reason})
        for piece, record in crops:
            save_png(piece, os.path.join(out_dir, record["file"]))
            records.append(record)
        log(f"{photo.package}:{photo.path}: " + (f"skipped ({reason})" if reason else f"{len(crops)} crops"))
    names = [r["file"] for r in records]
    assert len(names) == len(set(names)), "two photos give the same crop name"
    remove_stale_pngs(out_dir, set(names))
    return records, skipped


def remove_stale_pngs(out_dir: str, wanted: set[str]) -> None:
    for name in sorted(os.listdir(out_dir)):
        if name.endswith(".png") and name not in wanted:
            os.remove(os.path.join(out_dir, name))


def write_json(
    path: str,
    description: str,
    crop: tuple[int, int],
    stride: int,
    per_photo: int,
    debs: dict[str, str],
    records: list[dict],
    skipped: list[dict],
) -> None:
    doc = {
        "description": description,
        "params": {
            "crop": list(crop),
            "portrait_crop": [crop[1], crop[0]],
            "stride": stride,
            "max_crops_per_photo": per_photo,
            "min_jpeg_quality": MIN_JPEG_QUALITY,
            "texture": f"mean |5-point Laplacian| of {BIN}x{BIN}-averaged luma"
            f" (0.299R+0.587G+0.114B), per {BLOCK}x{BLOCK} tile;"
            f" crop score = mean over its tiles",
            "min_crop_score": MIN_CROP_SCORE,
            "flat_tile_score": FLAT_BLOCK_SCORE,
            "max_flat_fraction": MAX_FLAT_FRACTION,
            "resize": "none",
        },
        "debs": debs,
        "crops": records,
        "skipped": skipped,
    }
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def print_summary(title: str, photos: list[Photo], records: list[dict], skipped: list[dict]) -> None:
    log("")
    log(title)
    log(f"{'package':28s} {'photos':>6s} {'used':>5s} {'crops':>6s} {'skipped':>8s}")
    for pkg in sorted({p.package for p in photos}):
        n = sum(p.package == pkg for p in photos)
        used = len({r["path"] for r in records if r["package"] == pkg})
        crops = sum(r["package"] == pkg for r in records)
        sk = sum(s["package"] == pkg for s in skipped)
        log(f"{pkg:28s} {n:6d} {used:5d} {crops:6d} {sk:8d}")
    used_total = len({(r["package"], r["path"]) for r in records})
    log(f"{'TOTAL':28s} {len(photos):6d} {used_total:5d} {len(records):6d} {len(skipped):8d}")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def fetch_all(packages: list[str], deb_dir: str, extract_root: str) -> tuple[dict[str, str], dict[str, str]]:
    """package -> extracted root, package -> .deb name, for the packages that are available."""
    roots, debs = {}, {}
    for pkg in packages:
        got = bd.fetch(pkg, deb_dir, extract_root)
        if got is not None:
            debs[pkg], roots[pkg] = os.path.basename(got[0]), got[1]
    return roots, debs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data", help="data root (default: data)")
    ap.add_argument("--deb-dir", default=None, help="download cache (default: <data-dir>/debs)")
    ap.add_argument(
        "--train-native",
        action="store_true",
        help="also write 256x256 native crops of training photos to <data-dir>/train-native/",
    )
    args = ap.parse_args()
    data_dir = args.data_dir
    deb_dir = os.path.abspath(args.deb_dir or os.path.join(data_dir, "debs"))
    extract_root = os.path.join(data_dir, "extracted")

    manifest = load_manifest(data_dir)
    packages = [s.package for s in NATIVE_SOURCES] + NATIVE_FROM_HELDOUT
    if args.train_native:
        packages += [p for p in TRAIN_NATIVE_PACKAGES if p not in packages]
    roots, debs = fetch_all(packages, deb_dir, extract_root)

    photos = native_photos(roots, manifest)
    train_hashes = train_image_hashes(os.path.join(data_dir, "train"))
    records, skipped = build_crops(
        photos, os.path.join(data_dir, "native"), NATIVE_CROP, NATIVE_STRIDE, NATIVE_PER_PHOTO, train_hashes
    )
    native_debs = {p: d for p, d in debs.items() if any(ph.package == p for ph in photos)}
    write_json(
        os.path.join(data_dir, "native.json"),
        "dqcodec native-resolution evaluation crops, built by scripts/build_native_set.py",
        NATIVE_CROP,
        NATIVE_STRIDE,
        NATIVE_PER_PHOTO,
        native_debs,
        records,
        skipped,
    )
    print_summary("native evaluation set (data/native/)", photos, records, skipped)

    ok = True
    n_photos = len({(r["package"], r["path"]) for r in records})
    if len(records) < NATIVE_MIN_CROPS or n_photos < NATIVE_MIN_PHOTOS:
        log(
            f"WARNING: only {len(records)} crops from {n_photos} photos"
            f" (want >= {NATIVE_MIN_CROPS} from >= {NATIVE_MIN_PHOTOS})"
        )
        ok = False
    missing = [p for p in packages if p not in roots]
    if missing:
        log("WARNING: packages not available: " + ", ".join(missing))

    if args.train_native:
        excluded = manifest_keys(manifest, "heldout") | {(p.package, p.path) for p in photos}
        train_photos = train_native_photos(roots, manifest, excluded)
        t_records, t_skipped = build_crops(
            train_photos, os.path.join(data_dir, "train-native"), TRAIN_CROP, TRAIN_STRIDE, TRAIN_PER_PHOTO
        )
        write_json(
            os.path.join(data_dir, "train-native.json"),
            "dqcodec native-resolution training crops (data/train photos, q >= 90 or lossless),"
            " built by scripts/build_native_set.py --train-native",
            TRAIN_CROP,
            TRAIN_STRIDE,
            TRAIN_PER_PHOTO,
            {p: d for p, d in debs.items() if p in TRAIN_NATIVE_PACKAGES},
            t_records,
            t_skipped,
        )
        print_summary("native training crops (data/train-native/)", train_photos, t_records, t_skipped)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
