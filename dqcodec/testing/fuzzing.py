"""A mutation fuzzer for everything dqcodec reads from outside: .dq files and image files.

Cases are seed files changed the way an attacker or a broken disk would: bytes and bits flipped,
cut, inserted, deleted or repeated, header fields set to edge values, streams emptied, swapped or
filled with noise, and for .dq files the CRC recomputed half of the time, so the checks after it are
reached. Each case runs in a worker process under a memory cap (RLIMIT_AS) and a timeout, and ends as
one of:

- ``ok``: decoded (or encoded) without complaint;
- ``refused``: one of dqcodec's own errors (``DQCodecError``), as it should be for bad input;
- ``foreign``: any other exception, which is a bug (its type and message are kept);
- ``allocation``: a failed allocation (``MemoryError``, or torch failing to allocate), also a bug;
- ``timeout`` and ``crash``: the worker took too long, or died.

tests/test_fuzz.py runs a few hundred cases on every test run; ``scripts/fuzz.py`` runs long ones,
and also drives the same targets with atheris (coverage-guided, as OSS-Fuzz does) when it is installed.

    python -m dqcodec.testing.fuzzing --worker    (what the parent starts; reads cases on stdin)
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import resource
import select
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .mutations import mutate_dq, mutate_image, with_crc  # noqa: F401  (with_crc re-exported for the tests)

OUTCOMES = ("ok", "refused", "foreign", "allocation", "timeout", "crash")
BAD = ("foreign", "allocation", "timeout", "crash")
TARGETS = ("decompress", "preview", "inspect", "compress", "pair")  # pair: decode and inspect a pair file
MEMORY_CAP = 6 << 30  # bytes of address space per worker (torch itself reserves about 3 GB)


# ---- seeds -----------------------------------------------------------------------------------


def image_seeds() -> dict[str, bytes]:
    """Small valid images in the formats dqcodec reads, and some it refuses."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    seeds = {}
    for name, image, fmt, options in [
        ("png", rgb, "PNG", {}),
        ("jpeg", rgb, "JPEG", {"quality": 90}),
        ("bmp", rgb, "BMP", {}),
        ("tiff", rgb, "TIFF", {}),
        ("gray-png", rgb.convert("L"), "PNG", {}),
        ("gif", rgb.convert("P"), "GIF", {}),
        ("webp", rgb, "WEBP", {"quality": 80}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        seeds[name] = buffer.getvalue()
    return seeds


def dq_seeds(model: str) -> dict[str, bytes]:
    """Valid .dq files of small images from a model: lossy at its lowest and highest quality,
    grayscale, lossless, at a residual quality, and tiled (several tiles)."""
    import numpy as np

    import dqcodec
    from dqcodec import container, point, zoo

    rng = np.random.default_rng(1)
    net, _ = zoo.load(model)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    seeds = {
        "q1": dqcodec.compress(image, quality=1, model=model),
        f"q{len(net.ladder)}": dqcodec.compress(image, quality=len(net.ladder), model=model),
        "gray": dqcodec.compress(image[..., 0], quality=1, model=model),
    }
    if net.has_pixel_model:
        seeds["lossless"] = dqcodec.compress(image[:20, :24], model=model, lossless=True)
    residual_quality = next((p.quality for p in net.ladder.rungs() if p.residual_step), None)
    if residual_quality:
        seeds["residual"] = dqcodec.compress(image, quality=residual_quality, model=model)
    default = point.LOSSY_TILE
    try:  # files of four small tiles
        point.LOSSY_TILE = container.MIN_TILE
        seeds["tiled"] = dqcodec.compress(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), quality=1, model=model)
        if residual_quality:
            seeds["tiled-residual"] = dqcodec.compress(
                rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), quality=residual_quality, model=model
            )
    finally:
        point.LOSSY_TILE = default
    if residual_quality:  # pair files (dqcodec.pairs), view 1 coded each way; fuzzed by the "pair" target
        from dqcodec import pairs

        second = np.roll(image, 5, axis=1)
        for coding in pairs.ViewCoding:
            seeds[f"pair-{coding.name.lower()}"] = pairs.compress_pair(
                image, second, quality=residual_quality, model=model, coding=coding
            )
    return seeds


@dataclass
class Case:
    target: str
    data: bytes
    seed: str


def cases(dq: dict[str, bytes], images: dict[str, bytes], count: int, seed: int = 0):
    """``count`` cases: three quarters mutated .dq files (decoded, previewed or inspected; pair files decoded and
    inspected as pairs), a quarter mutated images (encoded)."""
    rng = random.Random(seed)
    for i in range(count):
        if i % 4 == 3:
            name = rng.choice(sorted(images))
            yield Case("compress", mutate_image(images[name], rng), name)
        else:
            name = rng.choice(sorted(dq))
            target = "pair" if name.startswith("pair-") else TARGETS[i % 4]
            yield Case(target, mutate_dq(dq[name], rng), name)


# ---- running -----------------------------------------------------------------------------------


def run_case(target: str, data: bytes, model: str, max_pixels: int | None = None) -> tuple[str, str]:
    """Run one case in this process: (outcome, detail)."""
    import tempfile

    import dqcodec
    from dqcodec import codec

    limit = codec.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    try:
        if target == "decompress":
            dqcodec.decompress(data, max_pixels=limit)
        elif target == "preview":
            dqcodec.decompress(data, preview=True, max_pixels=limit)
        elif target == "inspect":
            dqcodec.inspect(data, max_pixels=limit)
        elif target == "pair":
            from dqcodec import pairs

            pairs.inspect_pair(data, max_pixels=limit)
            pairs.decompress_pair(data, max_pixels=limit)
        elif target == "compress":
            with tempfile.NamedTemporaryFile(suffix=".img") as f:
                f.write(data)
                f.flush()
                dqcodec.compress(f.name, model=model, quality=1, max_pixels=limit)
        else:
            raise KeyError(f"no fuzz target {target!r}")
        return "ok", ""
    except dqcodec.DQCodecError as error:
        return "refused", f"{type(error).__name__}: {error}"[:300]
    except MemoryError as error:
        return "allocation", f"MemoryError: {error}"[:300]
    except Exception as error:
        kind = "allocation" if "can't allocate memory" in str(error) or "not enough memory" in str(error) else "foreign"
        return kind, f"{type(error).__name__}: {error}"[:300]


def _worker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    import warnings

    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    from dqcodec import zoo

    for installed in zoo.available():  # loaded once, before any case is timed
        zoo.load(installed.name)
    for line in sys.stdin:
        case = json.loads(line)
        started = time.perf_counter()
        outcome, detail = run_case(
            case["target"], base64.b64decode(case["data"]), case["model"], case.get("max_pixels")
        )
        print(json.dumps({"outcome": outcome, "detail": detail, "seconds": time.perf_counter() - started}), flush=True)


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    bad: list = field(default_factory=list)  # (outcome, target, seed, detail, data)
    slowest: float = 0.0
    slowest_case: str = ""

    def add(self, case: Case, outcome: str, detail: str, seconds: float) -> None:
        self.counts[outcome] += 1
        if seconds > self.slowest:
            self.slowest, self.slowest_case = (
                seconds,
                f"{case.target} of a mutated {case.seed}: {outcome} {detail[:120]}",
            )
        if outcome in BAD:
            self.bad.append((outcome, case.target, case.seed, detail, case.data))

    def summary(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{self.counts[o]} {o}" for o in OUTCOMES)
        return f"{total} cases: {parts}; slowest case {self.slowest:.2f} s ({self.slowest_case})"


class Workers:
    """Worker processes fed one case at a time; a worker that times out or dies is replaced."""

    def __init__(self, models_dir: Path, timeout: float):
        self.env = {**os.environ, "DQCODEC_MODELS": str(models_dir), "OMP_NUM_THREADS": "1"}
        self.timeout = timeout
        self.process = None
        self.fresh = False  # started, and not yet past importing torch

    def _start(self):
        root = Path(__file__).resolve().parents[2]  # the folder that holds the dqcodec package
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dqcodec.testing.fuzzing", "--worker"],
            cwd=root,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.fresh = True

    def run(self, case: Case, model: str, max_pixels: int | None = None) -> tuple[str, str, float]:
        if self.process is None or self.process.poll() is not None:
            self._start()
        message = {
            "target": case.target,
            "data": base64.b64encode(case.data).decode(),
            "model": model,
            "max_pixels": max_pixels,
        }
        started = time.perf_counter()
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return self._died(started)
        # the case's own time is measured by the worker; a fresh worker first imports torch
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout + (120 if self.fresh else 5))
        self.fresh = False
        if not ready:
            self.close()
            return "timeout", f"over {self.timeout} s", time.perf_counter() - started
        line = self.process.stdout.readline()
        if not line:
            return self._died(started)
        result = json.loads(line)
        if result["seconds"] > self.timeout:
            return "timeout", f"{result['seconds']:.1f} s", result["seconds"]
        return result["outcome"], result["detail"], result["seconds"]

    def _died(self, started):
        code = self.process.wait()
        self.process = None
        return "crash", f"worker exited with {code}", time.perf_counter() - started

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def fuzz(
    models_dir: Path,
    model: str,
    dq: dict[str, bytes],
    images: dict[str, bytes],
    count: int,
    seed: int = 0,
    timeout: float = 10.0,
    progress=None,
) -> Report:
    """Run ``count`` cases against the models in ``models_dir`` (``model`` encodes the images)."""
    report = Report()
    workers = Workers(models_dir, timeout)
    try:
        for case in cases(dq, images, count, seed):
            outcome, detail, seconds = workers.run(case, model)
            report.add(case, outcome, detail, seconds)
            if progress:
                progress(report)
    finally:
        workers.close()
    return report


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit("usage: python -m dqcodec.testing.fuzzing --worker (scripts/fuzz.py runs the fuzzer)")
