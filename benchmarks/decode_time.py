"""Mean decode time of a model's .dq files over a folder, one quality at a time, as `dqcodec eval` times
it (one decode per file, after one warm-up decode), by the torch path and by the torch-free runtime, in one
run; for A/B runs of two commits on an idle machine.

    python benchmarks/decode_time.py data/native --quality 4 --quality 6 [--model dq-2] [--threads 2] \
        [--path torch --path runtime]

Each file is encoded once (torch's encoder); "torch" decodes it with the torch model's layers, "runtime" with
``dqcodec.runtime`` (what ``dqcodec.decompress`` uses for lossy and residual files). The BLAS that numpy's
matrix products ran on is printed first (threadpoolctl): this machine may set OPENBLAS_CORETYPE, which picks
OpenBLAS's kernel, so run the script with it set and unset.
"""

from __future__ import annotations

import os
import time

import click
import numpy as np
import torch
from PIL import Image

import dqcodec
from dqcodec import codec, zoo
from dqcodec.recorder import Recorder
from dqcodec.stack import LayerStack


def blas_kernels() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    rows = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} ({i.get('num_threads')} threads)"
        for i in threadpool_info()
    ]
    return "; ".join(rows)


def decode(data: bytes, path: str) -> np.ndarray:
    opened = codec.open_file(data)
    net = opened.torch_model() if path == "torch" else opened.runtime_model()
    return LayerStack(net, opened.point).decompress(opened.streams, opened.size, opened.header.tile, Recorder())


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-q", "--quality", "qualities", type=int, multiple=True, default=[6], show_default=True)
@click.option("--model", default=zoo.DEFAULT_MODEL, show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--path", "paths", type=click.Choice(["torch", "runtime"]), multiple=True, default=["torch", "runtime"])
def main(folder, qualities, model, threads, paths):
    torch.set_num_threads(threads)
    settings = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    click.echo(f"numpy {np.__version__}, BLAS: {blas_kernels()}; {settings}")
    images = [Image.open(path).convert("RGB") for path in codec.image_files(folder)]
    size = f"{images[0].width}x{images[0].height}" if len({im.size for im in images}) == 1 else "mixed sizes"
    for quality in qualities:
        files = [dqcodec.compress(image, model=model, quality=quality) for image in images]
        decoded = {}
        for path in paths:
            decode(files[0], path)  # warm-up: loads the model
            seconds, decoded[path] = [], []
            for data in files:
                started = time.perf_counter()
                decoded[path].append(decode(data, path))
                seconds.append(time.perf_counter() - started)
            click.echo(
                f"{model} quality {quality}, {path:7}: mean decode {sum(seconds) / len(seconds):.3f} s, "
                f"max {max(seconds):.3f} s over {len(files)} files ({size}), {threads} threads"
            )
        if len(decoded) == 2:
            worst = max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(*decoded.values()))
            click.echo(f"  largest pixel difference between the two paths: {worst}")


if __name__ == "__main__":
    main()
