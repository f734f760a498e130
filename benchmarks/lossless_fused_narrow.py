"""How fast lossless coding could get with both a fused table kernel and a narrow pixel likelihood: an
experiment for issue 13's 5 s per megapixel, not a dependency.

    pip install numba   # not one of dqcodec's dependencies
    python benchmarks/lossless_fused_narrow.py [--model dq-2] [--hidden 96,16] [--threads 2]

Codes examples/photo.png (768x512) lossless, as ``lossless_width.py`` does (best of 3 each way, pixels
checked exact), with dqcodec's pixel tables and then with every lossless table's frequencies computed by
``pixel_tables_fused.fused_frequencies`` (one numba loop per pixel, the same integers) instead of dqcodec's
tensor operations, for the shipped likelihood and untrained ones of each HIDDEN width. The fused run's
files must be the same bytes as dqcodec's, which shows the tables are the same. Prints s/MP each way.
"""

from __future__ import annotations

import copy

import click
import numba
import torch
from lossless_width import EXAMPLE, measure  # benchmarks/ is on the path when this runs as a script
from PIL import Image
from pixel_tables_fused import fused_frequencies

from dqcodec import codec, exact, tiling, zoo
from dqcodec import pixel_tables as pixels
from dqcodec.entropy import PIXEL_PROBABILITY_BITS

_DQCODEC_TABLE = pixels.ChunkDistribution.table


def _fused_table(self, c: int, map_blocks=map):
    """dqcodec's table with its frequencies left unfilled, then filled by the fused kernel from its window."""
    if self.width > 1:
        return _DQCODEC_TABLE(self, c, map_blocks)
    table = _DQCODEC_TABLE(self, c, lambda fill, blocks: [])
    low, first, step = self._window
    table.frequencies[:] = fused_frequencies(
        (first[..., 0] - _BOTTOM).contiguous().numpy(), step[..., 0].contiguous().numpy(), _EDGES, low.numpy(), pixels.WINDOW,
        self.weights.numpy(), _VALUES, _SLOPES, _TOP, PIXEL_PROBABILITY_BITS,
    )
    return table


_SIGMOID = exact.tables()["sigmoid"]
_EDGES = pixels._edge_steps(pixels.WINDOW, 1).numpy()
_VALUES, _SLOPES = _SIGMOID.values[torch.int64].numpy(), _SIGMOID.steps[torch.int64].numpy()
_BOTTOM, _TOP = float(_SIGMOID.low << pixels.T_FRAC), float((_SIGMOID.high - _SIGMOID.low) << pixels.T_FRAC)


def _files(net, image) -> list[bytes]:
    x = codec.pad(codec.to_tensor(image))
    return tiling.encode(net, x, net.config.lossless_quality, tiling.LOSSLESS_TILE, lossless_size=(image.height, image.width))


@click.command()
@click.option("--model", default="dq-2")
@click.option("--hidden", default="96,16", help="widths of the untrained pixel likelihoods")
@click.option("--threads", default=2)
def main(model: str, hidden: str, threads: int) -> None:
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    image = Image.open(EXAMPLE).convert("RGB")
    shipped, _ = zoo.load(model)
    nets = [(f"{model} as shipped ({shipped.config.pixel_hidden})", shipped)]
    for width in (int(w) for w in hidden.split(",")):
        net = copy.deepcopy(shipped)
        torch.manual_seed(0)
        net.add_pixel_model(shipped.config.pixel_mixtures, width)
        nets.append((f"untrained, {width} channels", net.eval()))
    print(f"{EXAMPLE.name} {image.width}x{image.height}, lossless, torch and numba threads {threads}, best of 3")
    print(f"{'pixel likelihood':28} {'tables':7} {'encode s/MP':>11} {'decode s/MP':>11}  exact  same bytes")
    for name, net in nets:
        reference = _files(net, image)
        for tables in ("dqcodec", "fused"):
            pixels.ChunkDistribution.table = _fused_table if tables == "fused" else _DQCODEC_TABLE
            try:
                same = _files(net, image) == reference  # also compiles the kernel before the timed runs
                encode, decode, _, exact_pixels = measure(net, image)
            finally:
                pixels.ChunkDistribution.table = _DQCODEC_TABLE
            print(f"{name:28} {tables:7} {encode:11.2f} {decode:11.2f}  {exact_pixels!s:5}  {same}")


if __name__ == "__main__":
    main()
