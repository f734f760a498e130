"""Where lossless coding's time goes: a profile of encoding and decoding one image, bucketed by stage.

    python benchmarks/lossless_profile.py [IMAGE] [--model dq-3] [--backend runtime|torch]

Prints seconds per megapixel each way (best of two, outside the profiler), then for each direction the
profiled seconds per megapixel of: the pixel likelihood's networks, its tables, the exact synthesis, the walk
over the pixels (range coding, folding), and the rest (the levels' codes, I/O); ``STAGES`` says which functions
count where. Format 1 (a fixed-point likelihood) and format 2 (low-bit) alike. The profiler adds its own
overhead, so the stages' shares matter more than their sum.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.png"
# stage -> the functions whose cumulative time it is ("file:function"; none of them calls another of its stage)
STAGES = {
    "pixel networks": ["pixels.py:params", "pixels.py:context", "pixel_tables.py:params", "pixel_tables.py:context"],
    "pixel tables": ["pixels.py:table", "pixels.py:push", "pixel_tables.py:table", "pixel_tables.py:push"],
    "exact synthesis": ["model.py:exact_synthesis"],
    "pixel walk": ["pixels.py:code_pixels", "pixel_codec.py:code_pixels"],
}


def profile(function) -> dict[str, float]:
    """Cumulative seconds per stage; "pixel walk" less the networks and tables is the walk itself (range coding,
    folding, gathering), and the total less the walk and the synthesis is everything else (the codes, I/O)."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(function)
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    stages = dict.fromkeys(STAGES, 0.0)
    for (filename, _, name), (_, _, _, cumulative, _) in stats.items():
        key = f"{Path(filename).name}:{name}"
        for stage, keys in STAGES.items():
            if any(key.endswith(k) for k in keys):
                stages[stage] += cumulative
    walk = stages.pop("pixel walk")
    stages["walk and range coding"] = walk - stages["pixel networks"] - stages["pixel tables"]
    stages["codes and the rest"] = total - walk - stages["exact synthesis"]
    stages["total"] = total
    return stages


def best_of_two(function) -> float:
    times = []
    for _ in range(2):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=EXAMPLE)
@click.option("--model", default="dq-3", show_default=True)
@click.option("--backend", type=click.Choice(["runtime", "torch"]), default="runtime", show_default=True)
def main(image: Path, model: str, backend: str) -> None:
    os.environ["DQCODEC_BACKEND"] = backend
    import dqcodec

    picture = Image.open(image).convert("RGB")
    megapixels = picture.width * picture.height / 1e6
    data = dqcodec.compress(picture, model=model, lossless=True)
    assert np.array_equal(np.asarray(dqcodec.decompress(data)), np.asarray(picture))
    encode = best_of_two(lambda: dqcodec.compress(picture, model=model, lossless=True))
    decode = best_of_two(lambda: dqcodec.decompress(data))
    click.echo(f"{image.name} ({picture.width}x{picture.height}), {model}, {backend} backend")
    click.echo(f"bits/dim {len(data) * 8 / (megapixels * 3e6):.4f}")
    click.echo(f"encode {encode / megapixels:.2f} s/MP, decode {decode / megapixels:.2f} s/MP")
    for direction, function in (
        ("encode", lambda: dqcodec.compress(picture, model=model, lossless=True)),
        ("decode", lambda: dqcodec.decompress(data)),
    ):
        stages = profile(function)
        click.echo(f"{direction} profile, s/MP: " + ", ".join(f"{k} {v / megapixels:.2f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
