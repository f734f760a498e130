"""How long the pixel likelihood's tables take to build, on the chunks of a real lossless encode.

    python benchmarks/pixel_tables.py [--model dq-2] [--chunks 12] [--repeats 3]

Encodes examples/photo.png losslessly once and keeps what the first CHUNKS chunk distributions were given
(one block position of one tile each: the step network's outputs, x_hat and the values coded). Then builds
their tables again, channel by channel with the same values pushed, on one thread (``map``), and, where the
code has it, with the coder's pool of two single-threaded workers; checks both give the encoder's very
frequencies and prints milliseconds per table (best of REPEATS). An A/B of two commits runs this script of
the newer one with ``PYTHONPATH`` on the older one's tree.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from dqcodec import codec, pixel_codec, pixel_tables, zoo
from dqcodec.stack import LayerStack

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.png"


def record_chunks(net, image: Image.Image, count: int) -> list[dict]:
    """The inputs, coded values and frequencies of the first ``count`` chunk distributions of a lossless encode."""
    recorded = []
    init, table, push = (
        pixel_tables.ChunkDistribution.__init__,
        pixel_tables.ChunkDistribution.table,
        pixel_tables.ChunkDistribution.push,
    )

    def recording_init(self, raw, base, tolerance=0):
        self._record = {
            "raw": raw.clone(),
            "base": base.clone(),
            "tolerance": tolerance,
            "values": [],
            "frequencies": [],
        }
        if len(recorded) < count:
            recorded.append(self._record)
        init(self, raw, base, tolerance)

    def recording_table(self, c, *args):
        result = table(self, c, *args)
        self._record["frequencies"].append(result.frequencies.copy())
        return result

    def recording_push(self, c, values):
        self._record["values"].append(values.clone())
        push(self, c, values)

    x = codec.pad(codec.to_tensor(image))
    try:
        pixel_tables.ChunkDistribution.__init__ = recording_init
        pixel_tables.ChunkDistribution.table = recording_table
        pixel_tables.ChunkDistribution.push = recording_push
        point = net.ladder.resolve(lossless=True)
        LayerStack(net, point).compress(x, (image.height, image.width), point.tile)
    finally:
        pixel_tables.ChunkDistribution.__init__, pixel_tables.ChunkDistribution.table = init, table
        pixel_tables.ChunkDistribution.push = push
    return recorded


def build_tables(chunks: list[dict], map_blocks=None) -> tuple[float, int, bool]:
    """(seconds, tables built, same frequencies as the encoder's) for every chunk's three channels."""
    started, same, built = time.perf_counter(), True, 0
    for chunk in chunks:
        distribution = pixel_tables.ChunkDistribution(chunk["raw"], chunk["base"], chunk["tolerance"])
        for c, (values, expected) in enumerate(zip(chunk["values"], chunk["frequencies"])):
            table = distribution.table(c) if map_blocks is None else distribution.table(c, map_blocks)
            same &= np.array_equal(table.frequencies, expected)
            distribution.push(c, values)
            built += 1
    return time.perf_counter() - started, built, same


def best(repeats: int, run) -> tuple[float, int, bool]:
    results = [run() for _ in range(repeats)]
    return min(r[0] for r in results), results[0][1], all(r[2] for r in results)


@click.command()
@click.option("--model", default="dq-2")
@click.option("--chunks", default=12, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(model: str, chunks: int, repeats: int) -> None:
    torch.set_num_threads(2)
    net, _ = zoo.load(model)
    image = Image.open(EXAMPLE).convert("RGB")
    recorded = record_chunks(net, image, chunks)
    rows = sum(len(chunk["raw"]) for chunk in recorded)
    click.echo(f"{EXAMPLE.name}: {len(recorded)} chunks, {rows} pixels, {model}, best of {repeats}")
    torch.set_num_threads(1)
    seconds, built, same = best(repeats, lambda: build_tables(recorded))
    click.echo(
        f"one thread:           {1000 * seconds / built:6.2f} ms per table ({built} tables), encoder's frequencies: {same}"
    )
    torch.set_num_threads(2)
    if "map_blocks" in inspect.signature(pixel_tables.ChunkDistribution.table).parameters:
        with pixel_codec._table_builders(2) as pool:
            seconds, built, same = best(repeats, lambda: build_tables(recorded, pool.map))
        click.echo(
            f"two workers (coder's): {1000 * seconds / built:6.2f} ms per table ({built} tables), encoder's frequencies: {same}"
        )


if __name__ == "__main__":
    main()
