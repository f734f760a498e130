"""Two checkouts of dqcodec on one image, in one run: every quality and a lossless file, their bytes,
whether their streams are the same, and their decode time.

    python benchmarks/checkouts.py OLD_CHECKOUT [IMAGE] [--new .] [--threads 2] [--repeats 3]

Each checkout runs in its own process (its folder first on PYTHONPATH, its own models/), one after the
other: it writes a file at every quality of the default model and a lossless file, and decodes each
``--repeats`` times (the best time counts). Streams are compared through the container of each side
(the header may differ between format versions); lossless files are checked to decode exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


def measure(image_path: Path, threads: int, repeats: int) -> dict:
    """Run inside the checkout's process."""
    import numpy as np
    import torch
    from PIL import Image

    import dqcodec
    from dqcodec import container, zoo

    torch.set_num_threads(threads)
    net, _ = zoo.load()
    count = len(net.ladder) if hasattr(net, "ladder") else net.num_qualities
    image = Image.open(image_path).convert("RGB")
    settings = [{"quality": q} for q in range(1, count + 1)] + [{"lossless": True}]
    rows = []
    for options in settings:
        data = dqcodec.compress(image, **options)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            decoded = dqcodec.decompress(data)
            times.append(time.perf_counter() - started)
        if options.get("lossless"):
            assert np.array_equal(np.asarray(decoded), np.asarray(image)), "a lossless file did not decode exactly"
        streams = container.unpack(data)[1]
        digest = hashlib.sha256(b"".join(len(s).to_bytes(4, "little") + s for s in streams)).hexdigest()
        rows.append({"setting": options, "bytes": len(data), "streams_sha256": digest, "decode_s": min(times)})
    return {"rows": rows, "version": container.VERSION}


def run(checkout: Path, image: Path, threads: int, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "DQCODEC_MODELS": str(checkout / "models")}
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import checkouts; "
        f"print(json.dumps(checkouts.measure(__import__('pathlib').Path({str(image)!r}), {threads}, {repeats})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=checkout, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise click.ClickException(f"{checkout}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@click.command()
@click.argument("old", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument(
    "image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=ROOT / "examples" / "photo.png"
)
@click.option("--new", type=click.Path(exists=True, file_okay=False, path_type=Path), default=ROOT)
@click.option("--threads", default=2, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(old: Path, image: Path, new: Path, threads: int, repeats: int) -> None:
    before = run(old.resolve(), image.resolve(), threads, repeats)
    after = run(new.resolve(), image.resolve(), threads, repeats)
    click.echo(
        f"{image.name}, {threads} threads, best of {repeats} decodes; format {before['version']} -> {after['version']}"
    )
    click.echo(
        f"{'setting':<16} {'bytes before':>12} {'bytes after':>12} {'streams':>8} {'decode s before':>16} {'after':>8}"
    )
    for b, a in zip(before["rows"], after["rows"]):
        name = "lossless" if b["setting"].get("lossless") else f"quality {b['setting']['quality']}"
        same = "same" if b["streams_sha256"] == a["streams_sha256"] else "DIFFER"
        click.echo(
            f"{name:<16} {b['bytes']:>12} {a['bytes']:>12} {same:>8} {b['decode_s']:>16.3f} {a['decode_s']:>8.3f}"
        )


if __name__ == "__main__":
    main()
