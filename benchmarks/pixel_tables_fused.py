"""What a fused, compiled kernel would make of the lossless pixel tables: an experiment, not a dependency.

    pip install numba   # not one of dqcodec's dependencies
    python benchmarks/pixel_tables_fused.py [--model dq-2] [--chunks 12]

Takes the chunks of photo.png's lossless encode as ``pixel_tables.py`` does, builds each lossless table
(tolerance 0) with dqcodec, then again from the same window (``low``, ``first``, ``step``, the weights) with
one numba loop per pixel that does the same integer arithmetic (the sigmoid table's interpolation, the
mixture, the masses and the frequencies) without a tensor in between. Prints milliseconds per table on one
and two threads, the numba kernel's compile time, and whether every table matched dqcodec's.
"""

from __future__ import annotations

import time

import click
import numba
import numpy as np
import torch
from numba import njit, prange
from PIL import Image
from pixel_tables import EXAMPLE, record_chunks  # benchmarks/ is on the path when this runs as a script

from dqcodec import exact, zoo
from dqcodec import pixel_tables as pixels
from dqcodec.entropy import PIXEL_PROBABILITY_BITS


@njit(parallel=True)
def fused_frequencies(first, step, edges, low, span, weights, values, slopes, top, bits):
    """As ``ChunkDistribution.table`` for tolerance 0: first, step (K, N), t measured from the sigmoid table's bottom."""
    components, n = first.shape
    out = np.empty((n, edges.shape[0] - 1), np.float64)
    for p in prange(n):
        mixed = np.zeros(edges.shape[0], np.int64)
        for j in range(edges.shape[0]):
            edge = edges[j]
            if edge == 0.0 and low[p] == 0:
                edge = -np.inf
            elif edge == span and low[p] + span == 256:
                edge = np.inf
            for k in range(components):
                t = min(max(first[k, p] + edge * step[k, p], 0.0), top)
                u = np.int64(t)
                mixed[j] += weights[p, k] * (values[u >> 8] + ((slopes[u >> 8] * (u & 255)) >> 8))
        total = 0
        for j in range(edges.shape[0] - 1):
            total += (mixed[j + 1] - mixed[j]) >> 16
        for j in range(edges.shape[0] - 1):
            out[p, j] = (((mixed[j + 1] - mixed[j]) >> 16 << bits) // total) + 1
    return out


@click.command()
@click.option("--model", default="dq-2")
@click.option("--chunks", default=12, show_default=True)
def main(model: str, chunks: int) -> None:
    torch.set_num_threads(2)
    net, _ = zoo.load(model)
    recorded = record_chunks(net, Image.open(EXAMPLE).convert("RGB"), chunks)
    sigmoid = exact.tables()["sigmoid"]
    values, slopes = sigmoid.values[torch.int64].numpy(), sigmoid.steps[torch.int64].numpy()
    bottom, top = float(sigmoid.low << pixels.T_FRAC), float((sigmoid.high - sigmoid.low) << pixels.T_FRAC)
    edges = pixels._edge_steps(pixels.WINDOW, 1).numpy()
    windows = []  # (arguments of the fused kernel, dqcodec's frequencies)
    for chunk in recorded:
        distribution = pixels.ChunkDistribution(chunk["raw"], chunk["base"])
        for c, values_coded in enumerate(chunk["values"]):
            expected = distribution.table(c).frequencies
            low, first, step = distribution._window
            arguments = ((first[..., 0] - bottom).contiguous().numpy(), step[..., 0].contiguous().numpy(), edges, low.numpy(), pixels.WINDOW,
                         distribution.weights.numpy(), values, slopes, top, PIXEL_PROBABILITY_BITS)
            windows.append((arguments, expected))
            distribution.push(c, values_coded)
    started = time.perf_counter()
    fused_frequencies(*windows[0][0])
    click.echo(f"{EXAMPLE.name}: {len(recorded)} chunks, {len(windows)} tables; numba {numba.__version__} compiled in {time.perf_counter() - started:.2f} s")
    for threads in (1, 2):
        numba.set_num_threads(threads)
        seconds, same = [], True
        for _ in range(3):
            started = time.perf_counter()
            for arguments, expected in windows:
                same &= np.array_equal(fused_frequencies(*arguments), expected)
            seconds.append(time.perf_counter() - started)
        click.echo(f"fused, {threads} thread(s): {1000 * min(seconds) / len(windows):6.2f} ms per table (best of 3), dqcodec's frequencies: {same}")


if __name__ == "__main__":
    main()
