"""How lossless coding time depends on the pixel likelihood's width (issue 13 asks for 5 s per megapixel).

    python benchmarks/lossless_width.py [--model dq-2] [--hidden 96,64,48,32,16] [--threads 2]

Codes examples/photo.png (768x512) lossless with the model as shipped, then with its lossy part and an
untrained pixel likelihood of each HIDDEN width (the exact arithmetic's time depends on the layers' shapes,
not on their values), encodes and decodes it (best of 3 each) and checks the pixels come back exact.
Prints seconds per megapixel each way and the file's bits/dim: the untrained likelihoods' files are large,
so their sizes say nothing; their times say how fast a likelihood of that width could be.
"""

from __future__ import annotations

import copy
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image
from rd import best_of_three  # benchmarks/ is on the path when this runs as a script

from dqcodec import codec, tiling, zoo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.png"


def measure(net, image: Image.Image) -> tuple[float, float, float, bool]:
    """(encode s/MP, decode s/MP, bits/dim, exact) of a lossless file of ``image``."""
    rgb = np.asarray(image)
    size = rgb.shape[:2]
    x = codec.pad(codec.to_tensor(image))
    quality = net.config.lossless_quality
    encode_s, strings = best_of_three(lambda: tiling.encode(net, x, quality, tiling.LOSSLESS_TILE, lossless_size=size))
    decode_s, decoded = best_of_three(lambda: tiling.decode(net, strings, size, quality, tiling.LOSSLESS_TILE, lossless=True))
    megapixels = size[0] * size[1] / 1e6
    bits_per_dim = 8 * sum(len(s) for s in strings) / (rgb.size)
    return encode_s / megapixels, decode_s / megapixels, bits_per_dim, bool(np.array_equal(decoded, rgb))


@click.command()
@click.option("--model", default="dq-2")
@click.option("--hidden", default="96,64,48,32,16", help="widths of the untrained pixel likelihoods")
@click.option("--threads", default=2)
def main(model: str, hidden: str, threads: int) -> None:
    torch.set_num_threads(threads)
    image = Image.open(EXAMPLE).convert("RGB")
    shipped, _ = zoo.load(model)
    print(f"{EXAMPLE.name} {image.width}x{image.height}, lossless, torch threads {threads}, best of 3")
    print("pixel likelihood          encode s/MP  decode s/MP  bits/dim  exact")
    encode, decode, bits, exact = measure(shipped, image)
    print(f"{model} as shipped ({shipped.config.pixel_hidden:3})  {encode:11.2f}  {decode:11.2f}  {bits:8.4f}  {exact}")
    for width in (int(w) for w in hidden.split(",")):
        net = copy.deepcopy(shipped)
        torch.manual_seed(0)
        net.add_pixel_model(shipped.config.pixel_mixtures, width)
        net.eval()
        encode, decode, bits, exact = measure(net, image)
        print(f"untrained, {width:3} channels    {encode:11.2f}  {decode:11.2f}  {bits:8.4f}  {exact}")


if __name__ == "__main__":
    main()
