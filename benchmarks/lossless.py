"""Lossless dq against PNG, WebP lossless (method 6) and JPEG XL lossless (effort 7 and 9),
on the same images in one run.

    python benchmarks/lossless.py [FOLDER] [--model NAME] [--threads 2] [--json OUT]

Prints pooled bits per dimension (total file bits / total H*W*3) per codec, dq's split into
code and pixel bits next to its model's own estimate, encode and decode seconds per megapixel;
then the encode and decode time of examples/photo.png (768x512, best of three), and the peak
memory of a child process that encodes and decodes a 4-megapixel photo.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from rd import best_of_three  # benchmarks/ is on the path when this runs as a script

import dqcodec
from dqcodec import codec, evaluate_lossless, zoo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.png"
CODECS = ["dq", "png", "webp", "jxl", "jxl-e9"]


def four_megapixels(model: str, threads: int) -> None:
    """Runs in a child process: encode and decode the example upscaled to 2304x1728."""
    torch.set_num_threads(threads)
    image = Image.open(EXAMPLE).convert("RGB").resize((2304, 1728), Image.Resampling.LANCZOS)
    started = time.perf_counter()
    data = dqcodec.compress(image, model=model, lossless=True)
    encoded = time.perf_counter()
    exact = np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(image))
    print(
        json.dumps(
            {
                "encode_s": encoded - started,
                "decode_s": time.perf_counter() - encoded,
                "exact": exact,
                "bpd": 8 * len(data) / (2304 * 1728 * 3),
            }
        )
    )


@click.command()
@click.argument("folder", default="data/heldout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", default=zoo.DEFAULT_LOSSLESS_MODEL)
@click.option("--threads", default=2)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write per-image points and pooled figures",
)
@click.option("--child", is_flag=True, hidden=True)
def main(folder, model, threads, json_out, child):
    if child:
        return four_megapixels(model, threads)
    torch.set_num_threads(threads)
    paths = codec.image_files(folder)
    if not paths:
        raise click.ClickException(f"no images in {folder}")
    codecs = [evaluate_lossless.make_lossless_codec(name, model) for name in CODECS]
    points = []
    with click.progressbar(paths, label=f"{len(paths)} images", file=sys.stderr) as bar:
        for path in bar:
            image = Image.open(path).convert("RGB")
            points.extend(evaluate_lossless.measure_lossless(c, image, path.name) for c in codecs)
    pooled = evaluate_lossless.pool_lossless(points)

    click.echo(
        f"{len(paths)} images from {folder} ({sum(p.dims for p in points if p.codec == 'dq') / 3e6:.2f} MP); torch threads {threads}; model {model}"
    )
    click.echo(f"{'codec':7} {'bits/dim':>9} {'enc s/MP':>9} {'dec s/MP':>9}  exact")
    for name, row in pooled.items():
        click.echo(
            f"{name:7} {row['bpd']:9.4f} {row['encode_s_per_mp']:9.2f} {row['decode_s_per_mp']:9.2f}  {row['all_exact']}"
        )
    dq = pooled["dq"]
    click.echo(
        f"dq split: codes {dq['code_bpd']:.4f} + pixels {dq['pixel_bpd']:.4f} (+ headers); "
        f"model estimate {dq['estimated_bpd']:.4f}, file {100 * (dq['bpd'] / dq['estimated_bpd'] - 1):+.2f}%"
    )
    for other in ("webp", "jxl", "jxl-e9"):
        click.echo(f"dq against {other}: {100 * (dq['bpd'] / pooled[other]['bpd'] - 1):+.1f}% bits")

    example = Image.open(EXAMPLE).convert("RGB")
    encode_s, data = best_of_three(lambda: dqcodec.compress(example, model=model, lossless=True))
    decode_s, decoded = best_of_three(lambda: dqcodec.decompress(data))
    exact = np.array_equal(np.asarray(decoded), np.asarray(example))
    click.echo(
        f"{EXAMPLE.name} {example.width}x{example.height}: encode {encode_s:.2f} s, decode {decode_s:.2f} s (best of 3), {8 * len(data) / (example.width * example.height * 3):.4f} bits/dim, exact {exact}"
    )

    child_run = subprocess.run(
        [sys.executable, __file__, "--child", "--model", model, "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    big = json.loads(child_run.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    click.echo(
        f"4 MP (2304x1728): encode {big['encode_s']:.1f} s, decode {big['decode_s']:.1f} s, exact {big['exact']}, peak memory {peak_mb:.0f} MB"
    )

    if json_out:
        json_out.write_text(
            json.dumps(
                {
                    "pooled": pooled,
                    "images": [asdict(p) for p in points],
                    "example": {"encode_s": encode_s, "decode_s": decode_s, "exact": exact},
                    "four_megapixels": {**big, "peak_mb": peak_mb},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
