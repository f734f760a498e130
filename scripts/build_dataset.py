#!/usr/bin/env python3
"""Build dqcodec's photo training / held-out sets from Debian packages.

Deterministic recipe (stdlib + Pillow only), following the project notes on Debian photo sources (shared/DATA.md):

  1. ``apt-get download`` each source package into a cache dir (default
     data/debs/) and ``dpkg -x`` it into data/extracted/<package>/.  Both steps
     are skipped when their result already exists; a package that cannot be
     downloaded is skipped with a warning.
  2. Select the photographs (per-package directories and file filters below),
     never the field's standard test images (Kodak, parrot.ppm, cameraman...).
  3. Open with Pillow, apply the EXIF orientation (and, for kphotoalbum, the
     rotations recorded in its index.xml), convert to RGB.
  4. Drop exact duplicates (sha256 of the file and of the decoded pixels) and
     near duplicates (16x16 average hash + 16x16 dHash), keeping the largest.
  5. Downscale by an integer box factor >= 2 so the longer side is <= 1024 px;
     drop images whose shorter side would then be < 128 px.
  6. Cap each package (120 photos; krank 25), choosing by sha256 of the path.
  7. Split ~8% of each package's photos (>= 1 when it has >= 5) to
     data/heldout/, the rest to data/train/, as <package>__<stem>.png.
  8. Write data/manifest.json and print a per-source summary.

Usage:  python3 scripts/build_dataset.py [--data-dir data] [--deb-dir data/debs]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = 200_000_000  # some wallpapers are large but trusted

MAX_SIDE = 1024
MIN_FACTOR = 2
MIN_SHORT_SIDE = 128
DEFAULT_CAP = 120
HELDOUT_FRACTION = 0.08
HELDOUT_MIN_SOURCE = 5  # sources with at least this many photos get >= 1 held-out
# Near-duplicate thresholds, in bits out of 256 (see near_duplicate()).
DHASH_MAX_DIST = 20
AHASH_MAX_DIST = 24

IMAGE_EXT = (".jpg", ".jpeg", ".png")

# Standard codec test images: never train (or hold out) on them.  Name based,
# applied to every candidate file on top of the per-package selection.
FORBIDDEN_NAMES = re.compile(
    r"(^kodim\d*\b|kodak|^parrot\.ppm$|cameraman|^lenn?a\b|^peppers\b|^baboon\b|^mandrill\b)",
    re.IGNORECASE,
)


@dataclass
class Source:
    package: str
    dirs: list[str]  # directories inside the package (non-recursive)
    include: str = r".*"  # regex on the file name (full match, case-insensitive)
    exclude: list[str] = field(default_factory=list)  # file names to skip
    exts: tuple[str, ...] = IMAGE_EXT
    cap: int = DEFAULT_CAP
    kpa_index: str | None = None  # KPhotoAlbum index.xml whose angle= rotations to honour


SOURCES = [
    Source("endless-sky-high-dpi", ["usr/share/games/endless-sky/plugins/endless-sky-high-dpi/images/land"]),
    Source(
        "scratch",  # .jpg only: the .gif and the one .png are cartoons
        [f"usr/share/scratch/Media/Backgrounds/{d}" for d in ("Outdoors", "Nature", "Indoors", "Sports")],
        exts=(".jpg", ".jpeg"),
        exclude=[
            "party-room.jpg",
            "room1.jpg",
            "room2.jpg",
            "room3.jpg",  # drawn
            "spotlight-stage.jpg",
            "woods-and-bench.jpg",
            "school2.jpg",
        ],
    ),
    Source("krank", ["usr/share/games/krank/levels/unera-backgrounds"], cap=25),
    # Its rotations are not EXIF but angle="..." (clockwise) in the album's index.xml.
    Source(
        "kphotoalbum",
        ["usr/share/kphotoalbum/demo"],
        exts=(".jpg", ".jpeg"),
        kpa_index="usr/share/kphotoalbum/demo/index.xml",
    ),
    # (qt-logo.jpg is a real photo of people with Qt tattoos, kept)
    Source("plasma-workspace-data", ["usr/share/plasma/avatars/photos"], exts=(".png",)),
    Source("tuxpaint-data", ["usr/share/tuxpaint/templates"]),
    Source("gnome-control-center-data", ["usr/share/pixmaps/faces"]),  # not legacy/; symlinks skipped
    Source("libelementary-data", ["usr/share/elementary/images"], exts=(".jpg", ".jpeg")),
    Source("tuxtype-data", ["usr/share/tuxtype/images"], include=r"kcas\d+\.jpg|hidden\.jpg"),
    Source(
        "lomiri-wallpapers-16.04",
        ["usr/share/backgrounds"],
        exclude=[
            "analogpattern_by_Peter_Nerlich.jpg",  # abstract
            "umang_by_Abhishek_Mudgal.jpg",
        ],
    ),  # abstract render
    Source(
        "lxqt-themes",
        ["usr/share/lxqt/wallpapers"],
        include=r"Butterfly-Kenneth-Wimer\.jpg|Valendas\.png|after-the-rain\.jpg|"
        r"appleflower\.png|beam\.png|butterfly\.png|cloud\.png|drop\.png|"
        r"flowers\.png|fog\.jpg|this-is-not-windows\.jpg",
    ),  # rest: logos, renders
    Source("libdlib19.1", ["usr/share/doc/libdlib19.1/examples/faces"]),
    Source("liblemonldap-ng-portal-perl", ["usr/share/lemonldap-ng/portal/htdocs/static/common/backgrounds"]),
    Source("darknet", ["usr/share/darknet/data"], exclude=["scream.jpg"]),  # painting
    Source(
        "forensics-samples-files",
        [f"usr/share/forensics-samples/original-files/pic{i}" for i in (1, 2)],
        include=r"IMG[-_].*",
    ),  # skips debian*/d-debian* logos and empty.jpg
]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def log(msg: str) -> None:
    print(msg, flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def name_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# 1. download + extract
# --------------------------------------------------------------------------


def find_deb(deb_dir: str, package: str) -> str | None:
    hits = sorted(glob.glob(os.path.join(glob.escape(deb_dir), glob.escape(package) + "_*.deb")))
    return hits[-1] if hits else None


def fetch(package: str, deb_dir: str, extract_root: str) -> tuple[str, str] | None:
    """Return (deb path, extracted root) or None when the package is unavailable."""
    os.makedirs(deb_dir, exist_ok=True)
    deb = find_deb(deb_dir, package)
    if deb is None:
        log(f"downloading {package} ...")
        proc = subprocess.run(["apt-get", "download", package], cwd=deb_dir, capture_output=True, text=True)
        deb = find_deb(deb_dir, package)
        if proc.returncode != 0 or deb is None:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            log(
                f"WARNING: could not download {package}; skipping it"
                f" ({err[-1] if err else 'exit ' + str(proc.returncode)})"
            )
            return None
    dest = os.path.join(extract_root, package)
    stamp = os.path.join(dest, ".extracted-from")
    base = os.path.basename(deb)
    if os.path.isfile(stamp) and _read(stamp).strip() == base:
        return deb, dest
    log(f"extracting {base} ...")
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(tmp)
    proc = subprocess.run(["dpkg", "-x", deb, tmp], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"WARNING: dpkg -x failed for {base}; skipping it ({proc.stderr.strip()})")
        return None
    with open(os.path.join(tmp, ".extracted-from"), "w") as f:
        f.write(base + "\n")
    os.rename(tmp, dest)
    return deb, dest


# --------------------------------------------------------------------------
# 2. selection
# --------------------------------------------------------------------------


def select_files(src: Source, root: str) -> tuple[list[str], list[str]]:
    """Return (selected paths inside the package, forbidden names seen)."""
    picked, forbidden = [], []
    include = re.compile(src.include, re.IGNORECASE)
    for d in src.dirs:
        full_dir = os.path.join(root, d)
        if not os.path.isdir(full_dir):
            log(f"WARNING: {src.package}: missing directory {d}")
            continue
        for name in sorted(os.listdir(full_dir)):
            full = os.path.join(full_dir, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue  # e.g. gnome faces symlinks into legacy/
            if FORBIDDEN_NAMES.search(name):
                forbidden.append(f"{d}/{name}")
                continue
            if not name.lower().endswith(src.exts) or not include.fullmatch(name):
                continue
            if name in src.exclude:
                continue
            picked.append(f"{d}/{name}")
    return picked, forbidden


# --------------------------------------------------------------------------
# 3-5. decode, hash, downscale
# --------------------------------------------------------------------------


def kpa_angles(index_xml: str) -> dict[str, int]:
    """File name -> clockwise rotation in degrees, from a KPhotoAlbum index.xml."""
    angles = {}
    for el in ET.parse(index_xml).getroot().iter("image"):
        angle = int(el.get("angle", "0")) % 360
        if angle:
            angles[el.get("file")] = angle
    return angles


CW_TRANSPOSE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def load_rgb(path: str, rotate_cw: int = 0) -> tuple[Image.Image, tuple[int, int], str | None]:
    """Open, apply EXIF orientation (then an extra clockwise rotation), convert to RGB.
    Returns (image, stored size, note)."""
    with Image.open(path) as im:
        stored = im.size
        im.load()
        im = ImageOps.exif_transpose(im)
        if rotate_cw:
            im = im.transpose(CW_TRANSPOSE[rotate_cw])
        note = None
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            if rgba.getextrema()[3][0] < 255:
                note = "has transparency"
            im = rgba
        return im.convert("RGB"), stored, note


def reduce_factor(w: int, h: int) -> int:
    return max(MIN_FACTOR, -(-max(w, h) // MAX_SIDE))


def downscale(im: Image.Image) -> Image.Image:
    f = reduce_factor(*im.size)
    w, h = im.size
    im = im.crop((0, 0, w // f * f, h // f * f))  # whole boxes only, no ragged edge
    return im.reduce(f)


def bits(values) -> int:
    out = 0
    for v in values:
        out = (out << 1) | int(v)
    return out


def hashes(im: Image.Image) -> tuple[int, int]:
    """256-bit average hash and 256-bit horizontal dHash of the grayscale image."""
    g = im.convert("L")
    a = list(g.resize((16, 16), Image.Resampling.BOX).getdata())
    mean = sum(a) / len(a)
    ahash = bits(v > mean for v in a)
    d = list(g.resize((17, 16), Image.Resampling.BOX).getdata())
    dhash = bits(d[r * 17 + c] > d[r * 17 + c + 1] for r in range(16) for c in range(16))
    return ahash, dhash


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def near_duplicate(x: dict, y: dict) -> bool:
    return hamming(x["dhash"], y["dhash"]) <= DHASH_MAX_DIST and hamming(x["ahash"], y["ahash"]) <= AHASH_MAX_DIST


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data", help="output root (default: data)")
    ap.add_argument("--deb-dir", default=None, help="download cache (default: <data-dir>/debs)")
    args = ap.parse_args()

    data_dir = args.data_dir
    deb_dir = os.path.abspath(args.deb_dir or os.path.join(data_dir, "debs"))
    extract_root = os.path.join(data_dir, "extracted")
    train_dir = os.path.join(data_dir, "train")
    held_dir = os.path.join(data_dir, "heldout")

    failed: list[str] = []
    dropped: list[dict] = []
    forbidden_seen: list[dict] = []
    cands: list[dict] = []
    debs: dict[str, str] = {}

    for src in SOURCES:
        got = fetch(src.package, deb_dir, extract_root)
        if got is None:
            failed.append(src.package)
            continue
        deb, root = got
        debs[src.package] = os.path.basename(deb)
        picked, forbidden = select_files(src, root)
        angles = kpa_angles(os.path.join(root, src.kpa_index)) if src.kpa_index else {}
        forbidden_seen += [{"package": src.package, "path": p} for p in forbidden]
        if not picked:
            log(f"WARNING: {src.package}: no photos selected")
        for rel in picked:
            path = os.path.join(root, rel)
            with open(path, "rb") as f:
                raw = f.read()
            rotate_cw = angles.get(os.path.basename(rel), 0)
            try:
                im, stored, note = load_rgb(path, rotate_cw)
            except Exception as e:  # unreadable file: record, don't crash
                dropped.append({"package": src.package, "path": rel, "reason": f"unreadable: {e}"})
                continue
            w, h = im.size
            f_ = reduce_factor(w, h)
            item = {
                "package": src.package,
                "path": rel,
                "file": path,
                "sha256": sha256_bytes(raw),
                "stored_size": list(stored),
                "orig_size": [w, h],
                "rotate_cw": rotate_cw,
                "out_size": [w // f_, h // f_],
                "factor": f_,
                "pixel_sha256": sha256_bytes(im.tobytes()),
            }
            if note:
                dropped.append({"package": src.package, "path": rel, "reason": note})
                continue
            if min(w // f_, h // f_) < MIN_SHORT_SIDE:
                dropped.append(
                    {"package": src.package, "path": rel, "reason": f"too small after /{f_}: {w // f_}x{h // f_}"}
                )
                continue
            item["ahash"], item["dhash"] = hashes(im)
            cands.append(item)
        log(f"{src.package}: {len(picked)} selected")

    # 4. dedupe: largest first (ties: package, path), drop anything matching a kept one
    cands.sort(key=lambda c: (-c["orig_size"][0] * c["orig_size"][1], c["package"], c["path"]))
    kept: list[dict] = []
    for c in cands:
        dup = None
        for k in kept:
            if c["sha256"] == k["sha256"] or c["pixel_sha256"] == k["pixel_sha256"]:
                dup = (k, "exact duplicate")
                break
            if near_duplicate(c, k):
                dup = (
                    k,
                    f"near duplicate (dHash {hamming(c['dhash'], k['dhash'])}, aHash {hamming(c['ahash'], k['ahash'])})",
                )
                break
        if dup:
            k, why = dup
            dropped.append(
                {"package": c["package"], "path": c["path"], "reason": f"{why} of {k['package']}:{k['path']}"}
            )
        else:
            kept.append(c)

    # 6. cap per package, 7. split
    caps = {s.package: s.cap for s in SOURCES}
    by_pkg: dict[str, list[dict]] = {}
    for c in kept:
        by_pkg.setdefault(c["package"], []).append(c)
    final: list[dict] = []
    for pkg in [s.package for s in SOURCES]:
        items = sorted(by_pkg.get(pkg, []), key=lambda c: name_key(c["path"]))
        for c in items[caps[pkg] :]:
            dropped.append({"package": pkg, "path": c["path"], "reason": f"over cap {caps[pkg]}"})
        items = items[: caps[pkg]]
        n = len(items)
        n_held = max(1, int(HELDOUT_FRACTION * n + 0.5)) if n >= HELDOUT_MIN_SOURCE else 0
        order = sorted(items, key=lambda c: name_key("heldout:" + c["path"]))
        held = {id(c) for c in order[:n_held]}
        for c in sorted(items, key=lambda c: c["path"]):
            c["split"] = "heldout" if id(c) in held else "train"
            final.append(c)

    # output names: <package>__<stem>.png, disambiguated by the parent dir if needed
    names: dict[str, int] = {}
    for c in final:
        stem = os.path.splitext(os.path.basename(c["path"]))[0]
        c["out_name"] = f"{c['package']}__{stem}.png"
        names[c["out_name"]] = names.get(c["out_name"], 0) + 1
    for c in final:
        if names[c["out_name"]] > 1:
            parent = os.path.basename(os.path.dirname(c["path"]))
            stem = os.path.splitext(os.path.basename(c["path"]))[0]
            c["out_name"] = f"{c['package']}__{parent}_{stem}.png"

    # 5. downscale + write (stale PNGs from earlier runs are removed)
    for d in (train_dir, held_dir):
        os.makedirs(d, exist_ok=True)
    wanted = {os.path.join(train_dir if c["split"] == "train" else held_dir, c["out_name"]) for c in final}
    for d in (train_dir, held_dir):
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if p not in wanted and name.endswith(".png"):
                os.remove(p)
    for i, c in enumerate(final):
        im, _, _ = load_rgb(c["file"], c["rotate_cw"])
        small = downscale(im)
        assert list(small.size) == c["out_size"], (c["path"], small.size, c["out_size"])
        out = os.path.join(train_dir if c["split"] == "train" else held_dir, c["out_name"])
        small.save(out + ".tmp", format="PNG", compress_level=6)
        os.replace(out + ".tmp", out)
        if (i + 1) % 50 == 0:
            log(f"written {i + 1}/{len(final)}")

    # 8. manifest + summary
    manifest = {
        "description": "dqcodec photo set built by scripts/build_dataset.py from Debian packages",
        "params": {
            "max_side": MAX_SIDE,
            "min_factor": MIN_FACTOR,
            "min_short_side": MIN_SHORT_SIDE,
            "default_cap": DEFAULT_CAP,
            "caps": {s.package: s.cap for s in SOURCES if s.cap != DEFAULT_CAP},
            "heldout_fraction": HELDOUT_FRACTION,
            "dhash_max_dist": DHASH_MAX_DIST,
            "ahash_max_dist": AHASH_MAX_DIST,
            "resample": "Image.reduce (box), integer factor",
        },
        "debs": debs,
        "failed_packages": failed,
        "images": [
            {
                "package": c["package"],
                "path": c["path"],
                "sha256": c["sha256"],
                "orig_size": c["orig_size"],
                "stored_size": c["stored_size"],
                "rotate_cw": c["rotate_cw"],
                "factor": c["factor"],
                "out_size": c["out_size"],
                "split": c["split"],
                "file": f"{c['split']}/{c['out_name']}",
            }
            for c in final
        ],
        "dropped": sorted(dropped, key=lambda d: (d["package"], d["path"])),
        "forbidden_names_excluded": forbidden_seen,
    }
    with open(os.path.join(data_dir, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(os.path.join(data_dir, "manifest.json.tmp"), os.path.join(data_dir, "manifest.json"))

    log("")
    log(f"{'package':32s} {'train':>6s} {'heldout':>8s} {'dropped':>8s}")
    tot_t = tot_h = 0
    for s in SOURCES:
        t = sum(1 for c in final if c["package"] == s.package and c["split"] == "train")
        h = sum(1 for c in final if c["package"] == s.package and c["split"] == "heldout")
        dr = sum(1 for d in dropped if d["package"] == s.package)
        tag = "  (FAILED)" if s.package in failed else ""
        log(f"{s.package:32s} {t:6d} {h:8d} {dr:8d}{tag}")
        tot_t += t
        tot_h += h
    log(f"{'TOTAL':32s} {tot_t:6d} {tot_h:8d} {len(dropped):8d}")
    reasons: dict[str, int] = {}
    for d in dropped:
        r = d["reason"].split(" (")[0].split(" of ")[0].split(":")[0]
        reasons[r] = reasons.get(r, 0) + 1
    log("dropped by reason: " + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())))
    if forbidden_seen:
        log(f"standard test images excluded by name: {len(forbidden_seen)}")
    if failed:
        log("WARNING: packages not available: " + ", ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
