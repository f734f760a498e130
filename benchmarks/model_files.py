"""The shipped model files before and after quantization and entropy coding (dqcodec/weights.py).

    python benchmarks/model_files.py [--old-rev 8d9a9f3] [--images 8] [--threads 2]

"Before" is every shipped model as the half-precision .pt file of git revision OLD_REV (read with
``git archive``); "after" is models/ now. Each side runs in its own process whose models folder holds
only its own files, so every file is encoded and decoded through the public API with that side's
weights. Per model: file size, ratio, the time ``zoo.load`` takes in a process that has imported
torch and dqcodec (best of three, cache cleared) and the time of reading the weights alone. On a fixed
subset (the first ``--images`` of every 4th photo of data/heldout and of every 6th crop of
data/native): dq-hier's bpp and PSNR (RGB, mean over images) at every quality, its lossless
bits/dim (each new lossless file is checked to decode exactly), and each baseline's bpp and PSNR
at its one rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"heldout": ("data/heldout", 4), "native": ("data/native", 6)}


def subset(count: int) -> dict[str, list[Path]]:
    from dqcodec import codec

    return {name: codec.image_files(ROOT / folder)[::every][:count] for name, (folder, every) in FOLDERS.items()}


def psnr(a, b) -> float:
    import numpy as np

    error = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float(10 * np.log10(255**2 / error))


def load_times(name: str) -> dict:
    from dqcodec import weights, zoo

    def best(fn):
        times = []
        for _ in range(3):
            zoo.clear_caches()
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    path = zoo.find(name).path
    read = (
        (lambda: weights.read(path.read_bytes()))
        if path.suffix == ".dqw"
        else (lambda: zoo._legacy_checkpoint(path, path.read_bytes()))
    )
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "load_s": best(lambda: zoo.load(name)),
        "weights_s": best(read),
    }


def dq_points(images: list, lossless: bool) -> dict:
    import numpy as np

    import dqcodec
    from dqcodec import zoo

    net, _ = zoo.load("dq-hier")
    out = {}
    for q in range(1, len(net.ladder) + 1):
        files = [dqcodec.compress(image, quality=q) for image in images]
        out[f"q{q}"] = {
            "bpp": sum(8 * len(f) for f in files) / sum(i.shape[0] * i.shape[1] for i in images),
            "psnr": float(np.mean([psnr(dqcodec.decompress(f), i) for f, i in zip(files, images)])),
        }
    if lossless:
        files = [dqcodec.compress(image, lossless=True) for image in images]
        out["lossless_bpd"] = sum(8 * len(f) for f in files) / sum(i.size for i in images)
        out["lossless_exact"] = all(np.array_equal(np.asarray(dqcodec.decompress(f)), i) for f, i in zip(files, images))
    return out


def baseline_points(name: str, images: list) -> dict:
    from PIL import Image

    from dqcodec import evaluate

    made = evaluate.make_codec(name.rsplit("-", 1)[0])
    files = [made.encode(Image.fromarray(image), name) for image in images]
    return {
        "bpp": sum(8 * len(f) for f in files) / sum(i.shape[0] * i.shape[1] for i in images),
        "psnr": sum(psnr(made.decode(f), i) for f, i in zip(files, images)) / len(images),
    }


def measure(count: int, threads: int, lossless_check: bool) -> dict:
    """Run inside one side's process (DQCODEC_MODELS set)."""
    import numpy as np
    import torch
    from PIL import Image

    import dqcodec.model  # noqa: F401  imported before any load is timed
    from dqcodec import baselines, registry, weights, zoo  # noqa: F401

    baselines.compressai_module("compressai.zoo")
    torch.set_num_threads(threads)
    names = list(dict.fromkeys(m.name for m in zoo.available()))
    out = {"models": {name: load_times(name) for name in names}, "points": {}}
    for folder, paths in subset(count).items():
        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        points = {"images": [p.name for p in paths], "dq-hier": dq_points(images, lossless_check)}
        for name in names:
            if name != "dq-hier":
                points[name] = baseline_points(name, images)
        out["points"][folder] = points
        print(f"  {folder} done", file=sys.stderr, flush=True)
    return out


def run_side(models: Path, count: int, threads: int, lossless_check: bool) -> dict:
    env = {**os.environ, "DQCODEC_MODELS": str(models), "PYTHONPATH": str(ROOT)}
    code = f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import model_files; print(json.dumps(model_files.measure({count}, {threads}, {lossless_check})))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def old_models(rev: str, folder: Path) -> Path:
    """The models folder of git revision ``rev``, extracted into ``folder``."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "models"], cwd=ROOT, stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "models"


def new_models(folder: Path) -> Path:
    """The current version of every model in models/, alone in a folder."""
    from dqcodec import zoo

    target = folder / "models"
    for name in dict.fromkeys(m.name for m in zoo.available()):
        zoo.install(zoo.find(name).path, target)
    return target


def change(before: float, after: float) -> str:
    return f"{100 * (after / before - 1):+.2f}%"


def report(before: dict, after: dict, count: int) -> None:
    click.echo("| model | old file | MB | new file | MB | ratio | load s old / new | weights s old / new |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for name, new in after["models"].items():
        old = before["models"][name]
        click.echo(
            f"| {name} | {old['file']} | {old['bytes'] / 1e6:.3f} | {new['file']} | {new['bytes'] / 1e6:.3f} | {old['bytes'] / new['bytes']:.2f}x "
            f"| {old['load_s']:.3f} / {new['load_s']:.3f} | {old['weights_s']:.3f} / {new['weights_s']:.3f} |"
        )
    for folder, new in after["points"].items():
        old = before["points"][folder]
        click.echo(f"\n{folder}: {count} images ({', '.join(new['images'])})\n")
        click.echo("| model | setting | bpp old | bpp new | change | PSNR old | PSNR new | change dB |")
        click.echo("|---|---|---|---|---|---|---|---|")
        for name, points in new.items():
            if name == "images":
                continue
            rows = {k: v for k, v in points.items() if isinstance(v, dict)} if name == "dq-hier" else {"": points}
            for setting, p in rows.items():
                o = old[name][setting] if setting else old[name]
                click.echo(
                    f"| {name} | {setting} | {o['bpp']:.4f} | {p['bpp']:.4f} | {change(o['bpp'], p['bpp'])} | {o['psnr']:.3f} | {p['psnr']:.3f} | {p['psnr'] - o['psnr']:+.3f} |"
                )
        if "lossless_bpd" in new["dq-hier"]:
            o, p = old["dq-hier"]["lossless_bpd"], new["dq-hier"]["lossless_bpd"]
            exact = (
                "every new file decodes exactly"
                if new["dq-hier"]["lossless_exact"]
                else "A NEW FILE DID NOT DECODE EXACTLY"
            )
            click.echo(f"\ndq-hier lossless bits/dim: {o:.4f} -> {p:.4f} ({change(o, p)}); {exact}")


@click.command()
@click.option(
    "--old-rev", default="8d9a9f3", show_default=True, help="git revision whose models/ holds the half-precision files"
)
@click.option("--images", "count", default=8, show_default=True, help="images of each folder's subset")
@click.option("--threads", default=2, show_default=True)
@click.option("--lossless/--no-lossless", default=True, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path))
def main(old_rev, count, threads, lossless, json_out):
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"before": old_models(old_rev, Path(tmp) / "old"), "after": new_models(Path(tmp) / "new")}
        results = {}
        for label, models in sides.items():
            click.echo(f"measuring {label}: {models}", err=True)
            results[label] = run_side(models, count, threads, lossless)
    click.echo(f"{threads} threads; old models from git revision {old_rev}\n")
    report(results["before"], results["after"], count)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
