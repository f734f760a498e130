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
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("ok", "refused", "foreign", "allocation", "timeout", "crash")
BAD = ("foreign", "allocation", "timeout", "crash")
TARGETS = ("decompress", "preview", "inspect", "compress")
EDGE_U32 = (0, 1, 2, 15, 16, 17, 255, 256, 65535, 65536, 2**31 - 1, 2**32 - 1)
MEMORY_CAP = 6 << 30  # bytes of address space per worker (torch itself reserves about 3 GB)


# ---- mutations --------------------------------------------------------------------------------


def with_crc(data: bytes) -> bytes:
    """The bytes before a .dq file's CRC with the CRC recomputed over them."""
    body = data[:-4] if len(data) >= 4 else data
    return body + struct.pack("<I", zlib.crc32(body))


def _header_fields(data: bytes) -> dict[str, tuple[int, str]]:
    """Offsets and struct formats of a .dq file's header fields (version 3 layout)."""
    if len(data) < 6:
        return {}
    offset = 6 + data[5]
    names = ["weights_hash", "quality", "mode", "height", "width", "tile", "count"]
    formats = ["8s", "B", "B", "I", "I", "H", "B"]
    fields = {"version": (4, "B"), "name_length": (5, "B")}
    for name, fmt in zip(names, formats):
        fields[name] = (offset, fmt)
        offset += struct.calcsize("<" + fmt)
    fields["lengths"] = (offset, "I")
    return fields


def mutate_dq(data: bytes, rng: random.Random) -> bytes:
    """One to three mutations of a .dq file, then the CRC recomputed with probability 1/2."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice([_flip_bytes, _flip_bits, _truncate, _insert, _delete, _repeat, _header_edge, _stream_edit])(
            data, rng
        )
    return with_crc(data) if rng.random() < 0.5 else data


def mutate_image(data: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 3)):
        data = rng.choice([_flip_bytes, _flip_bits, _truncate, _insert, _delete, _repeat, _image_size_edge])(data, rng)
    return data


def _flip_bytes(data, rng):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _flip_bits(data, rng):
    data = bytearray(data)
    if data:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def _truncate(data, rng):
    return data[: rng.randrange(len(data) + 1)]


def _insert(data, rng):
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.randbytes(rng.choice([1, 4, 8, 64])) + data[i:]


def _delete(data, rng):
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i + rng.choice([1, 4, 16]) :]


def _repeat(data, rng):
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i : i + rng.choice([4, 16, 64])] * rng.randint(1, 8) + data[i:]


def _header_edge(data, rng):
    fields = _header_fields(data)
    if not fields:
        return data
    name = rng.choice(list(fields))
    offset, fmt = fields[name]
    size = struct.calcsize("<" + fmt)
    if offset + size > len(data):
        return data
    if fmt == "8s":
        value = rng.randbytes(8)
    else:
        limit = 2 ** (8 * size) - 1
        value = rng.choice([v for v in EDGE_U32 if v <= limit] + [rng.randint(0, limit)])
    return data[:offset] + struct.pack("<" + fmt, value) + data[offset + size :]


def _stream_edit(data, rng):
    """Empty a stream, fill it with noise, or swap two, keeping the header's lengths consistent."""
    fields = _header_fields(data)
    try:
        count_offset = fields["count"][0]
        count = data[count_offset]
        first = fields["lengths"][0]
        lengths = list(struct.unpack_from(f"<{count}I", data, first))
        start = first + 4 * count
        streams, offset = [], start
        for n in lengths:
            streams.append(data[offset : offset + n])
            offset += n
        tail = data[offset:]
    except (KeyError, IndexError, struct.error):
        return data
    if not streams:
        return data
    i = rng.randrange(len(streams))
    action = rng.choice(["empty", "noise", "swap", "word"])
    if action == "empty":
        streams[i] = b""
    elif action == "noise":
        streams[i] = rng.randbytes(4 * rng.randint(1, 64))
    elif action == "swap" and len(streams) > 1:
        j = rng.randrange(len(streams))
        streams[i], streams[j] = streams[j], streams[i]
    else:
        streams[i] = streams[i] + rng.randbytes(4)
    header = data[:first] + struct.pack(f"<{len(streams)}I", *map(len, streams))
    return header + b"".join(streams) + tail


def _image_size_edge(data, rng):
    """Set a PNG's IHDR size (with its CRC fixed) to an edge value; other formats get a byte flip."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 33:
        width, height = rng.choice([(0, 0), (1, 65535), (65535, 65535), (100000, 100000), (2**31 - 1, 1)])
        ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
        return data[:16] + ihdr[4:] + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]
    return _flip_bytes(data, rng)


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
    from dqcodec import point, tiling, zoo

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
    residual_quality = net.ladder.lossy_count + 1 if net.config.residual_steps else None
    if residual_quality:
        seeds["residual"] = dqcodec.compress(image, quality=residual_quality, model=model)
    default = point.LOSSY_TILE
    try:  # files of four small tiles
        point.LOSSY_TILE = tiling.MIN_TILE
        seeds["tiled"] = dqcodec.compress(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), quality=1, model=model)
        if residual_quality:
            seeds["tiled-residual"] = dqcodec.compress(
                rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), quality=residual_quality, model=model
            )
    finally:
        point.LOSSY_TILE = default
    return seeds


@dataclass
class Case:
    target: str
    data: bytes
    seed: str


def cases(dq: dict[str, bytes], images: dict[str, bytes], count: int, seed: int = 0):
    """``count`` cases: three quarters mutated .dq files (decoded, previewed or inspected), a quarter
    mutated images (encoded)."""
    rng = random.Random(seed)
    for i in range(count):
        if i % 4 == 3:
            name = rng.choice(sorted(images))
            yield Case("compress", mutate_image(images[name], rng), name)
        else:
            name = rng.choice(sorted(dq))
            yield Case(TARGETS[i % 4], mutate_dq(dq[name], rng), name)


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
