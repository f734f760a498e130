"""Two checkouts of dqcodec side by side, in one run: rate, distortion and speed of their files.

    python benchmarks/versions.py OLD_CHECKOUT [FOLDER] [--new .] [--threads 2] [--lossless/--no-lossless]

Each checkout runs in its own process (its folder first on PYTHONPATH, its own models/), on the
same images: every quality's mean bpp (real files), PSNR (RGB, over all pixels) and encode /
decode seconds per image; the pooled lossless bits/dim with encode / decode seconds per image;
and, on examples/photo.png (768x512), the lossy decode at the default quality (best of three)
and one lossless encode and decode. Every lossless file is checked to decode exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure(folder: Path, threads: int, lossless: bool) -> dict:
    """Run inside the checkout's process."""
    import numpy as np
    import torch
    from PIL import Image

    import dqcodec
    from dqcodec import codec, zoo

    torch.set_num_threads(threads)
    net, _ = zoo.load()
    images = [np.asarray(Image.open(p).convert("RGB")) for p in codec.image_files(folder)]
    out: dict = {"images": len(images), "qualities": {}}
    for q in range(1, len(net.ladder) + 1):
        bits = pixels = encode = decode = 0.0
        psnr = []
        for image in images:
            t_enc, data = _timed(lambda i=image, q=q: dqcodec.compress(i, quality=q))
            t_dec, decoded = _timed(lambda d=data: dqcodec.decompress(d))
            error = np.mean((np.asarray(decoded, dtype=np.float64) - image) ** 2)
            psnr.append(10 * np.log10(255**2 / error))
            bits, pixels, encode, decode = (
                bits + 8 * len(data),
                pixels + image.shape[0] * image.shape[1],
                encode + t_enc,
                decode + t_dec,
            )
        out["qualities"][q] = {
            "bpp": bits / pixels,
            "psnr": float(np.mean(psnr)),
            "encode_s": encode / len(images),
            "decode_s": decode / len(images),
        }
        print(f"  q{q} done", file=sys.stderr, flush=True)
    if lossless:
        bits = dims = encode = decode = 0.0
        for image in images:
            t_enc, data = _timed(lambda i=image: dqcodec.compress(i, lossless=True))
            t_dec, decoded = _timed(lambda d=data: dqcodec.decompress(d))
            if not np.array_equal(np.asarray(decoded), image):
                raise SystemExit("a lossless file did not decode exactly")
            bits, dims, encode, decode = bits + 8 * len(data), dims + image.size, encode + t_enc, decode + t_dec
        out["lossless"] = {"bpd": bits / dims, "encode_s": encode / len(images), "decode_s": decode / len(images)}
    photo = np.asarray(Image.open(ROOT / "examples" / "photo.png").convert("RGB"))
    data = dqcodec.compress(photo)
    out["photo_decode_s"] = min(_timed(lambda: dqcodec.decompress(data))[0] for _ in range(3))
    t_enc, data = _timed(lambda: dqcodec.compress(photo, lossless=True))
    t_dec, _ = _timed(lambda: dqcodec.decompress(data))
    out["photo_lossless"] = {"bpd": 8 * len(data) / photo.size, "encode_s": t_enc, "decode_s": t_dec}
    return out


def run_checkout(checkout: Path, folder: Path, threads: int, lossless: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "DQCODEC_MODELS": str(checkout / "models")}
    code = f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import versions; print(json.dumps(versions.measure(__import__('pathlib').Path({str(folder)!r}), {threads}, {lossless})))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=checkout, stdout=subprocess.PIPE, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@click.command()
@click.argument("old", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("folder", default="data/heldout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--new", default=ROOT, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--threads", default=2, show_default=True)
@click.option("--lossless/--no-lossless", default=True, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path))
def main(old, folder, new, threads, lossless, json_out):
    results = {}
    for label, checkout in (("before", old.resolve()), ("after", new.resolve())):
        click.echo(f"measuring {label}: {checkout}", err=True)
        results[label] = run_checkout(checkout, folder.resolve(), threads, lossless)
    before, after = results["before"], results["after"]
    click.echo(f"{before['images']} images in {folder}, {threads} threads\n")
    click.echo(
        "| q | bpp before | bpp after | change | PSNR before | PSNR after | encode s before / after | decode s before / after |"
    )
    click.echo("|---|---|---|---|---|---|---|---|")
    for q, b in before["qualities"].items():
        a = after["qualities"][q]
        click.echo(
            f"| {q} | {b['bpp']:.4f} | {a['bpp']:.4f} | {100 * (a['bpp'] / b['bpp'] - 1):+.2f}% | {b['psnr']:.3f} | {a['psnr']:.3f} "
            f"| {b['encode_s']:.3f} / {a['encode_s']:.3f} | {b['decode_s']:.3f} / {a['decode_s']:.3f} |"
        )
    if lossless:
        b, a = before["lossless"], after["lossless"]
        click.echo(
            f"\nlossless bits/dim: {b['bpd']:.4f} -> {a['bpd']:.4f} ({100 * (a['bpd'] / b['bpd'] - 1):+.2f}%); "
            f"encode s/image {b['encode_s']:.2f} -> {a['encode_s']:.2f}, decode s/image {b['decode_s']:.2f} -> {a['decode_s']:.2f}"
        )
    click.echo(
        f"photo.png lossy decode (default quality, best of 3): {before['photo_decode_s']:.3f} s -> {after['photo_decode_s']:.3f} s"
    )
    b, a = before["photo_lossless"], after["photo_lossless"]
    click.echo(
        f"photo.png lossless: {b['bpd']:.4f} -> {a['bpd']:.4f} bits/dim, encode {b['encode_s']:.2f} -> {a['encode_s']:.2f} s, decode {b['decode_s']:.2f} -> {a['decode_s']:.2f} s"
    )
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
