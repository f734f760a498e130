"""Encode and decode the sample photo with the shipped model at every quality, then losslessly.

python examples/roundtrip.py [IMAGE]
"""

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import dqcodec
from dqcodec import zoo


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


def main(path: Path) -> None:
    image = Image.open(path).convert("RGB")
    ladder = dqcodec.ladder()  # the default model's qualities, from its file (no torch needed)
    print(
        f"{path}: {image.width}x{image.height}, model {zoo.DEFAULT_MODEL} (lossless files: {zoo.DEFAULT_LOSSLESS_MODEL})"
    )
    for quality in range(1, len(ladder) + 1):
        started = time.perf_counter()
        data = dqcodec.compress(image, quality=quality)
        encoded = time.perf_counter()
        decoded = dqcodec.decompress(data)
        done = time.perf_counter()
        bpp = 8 * len(data) / (image.width * image.height)
        print(
            f"quality {quality}: {len(data):7d} bytes  {bpp:.4f} bpp  PSNR {psnr(image, decoded):.2f} dB  "
            f"encode {encoded - started:.2f} s  decode {done - encoded:.2f} s"
        )
    started = time.perf_counter()
    data = dqcodec.compress(image, lossless=True)
    encoded = time.perf_counter()
    exact = np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(image))
    done = time.perf_counter()
    preview = dqcodec.decompress(data, preview=True)
    print(
        f"lossless:  {len(data):7d} bytes  {8 * len(data) / (image.width * image.height * 3):.4f} bits/dim  exact {exact}  "
        f"encode {encoded - started:.2f} s  decode {done - encoded:.2f} s  (preview PSNR {psnr(image, preview):.2f} dB)"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("photo.png"))
