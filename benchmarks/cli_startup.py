"""How long the command line makes a user wait, start to finish, in fresh processes.

    python benchmarks/cli_startup.py [IMAGE] [--runs 5]

Times `dqcodec --help`, `dqcodec models`, `dqcodec encode -q 4` of IMAGE (default examples/photo.png, 768x512) and
`dqcodec decode` of it encoded at the default quality, as a user runs them (the installed `dqcodec` script), and
prints the median wall time of each with the time the command itself reports; then the slowest imports of a
decode (`python -X importtime`). The coding commands run twice: with the torch-free runtime (DQCODEC_BACKEND=runtime,
what `auto` picks there) and with torch (DQCODEC_BACKEND=torch, the path before issue 30). Run it on an idle
machine. Targets: --help and models at most 0.5 s (issue 15); decode at most 1.0 s, aim 0.5 s, and encode at
quality 4 aim 1.0 s (issue 30).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


def wall(args: list[str], backend: str | None = None) -> tuple[float, str]:
    env = {**os.environ, "DQCODEC_BACKEND": backend} if backend else None
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - started, done.stdout + done.stderr


def slowest_imports(args: list[str], count: int) -> list[tuple[float, str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, check=True)
    rows = [re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line) for line in done.stderr.splitlines()]
    top = [(int(m[1]) / 1e6, m[3]) for m in rows if m and len(m[2]) <= 1]  # top-level imports only
    return sorted(top, reverse=True)[:count]


@click.command()
@click.argument("image", default=str(ROOT / "examples" / "photo.png"))
@click.option("--runs", default=5, show_default=True)
def main(image, runs):
    dq = shutil.which("dqcodec") or str(Path(sys.executable).parent / "dqcodec")
    with tempfile.TemporaryDirectory() as tmp:
        encoded, decoded = Path(tmp) / "a.dq", Path(tmp) / "a.png"
        subprocess.run([dq, "encode", image, "-o", str(encoded)], check=True, capture_output=True)
        commands = {
            ("--help", None): [dq, "--help"],
            ("models", None): [dq, "models"],
        }
        for backend in ("runtime", "torch"):
            commands[("encode -q 4", backend)] = [
                dq,
                "encode",
                image,
                "-q",
                "4",
                "-o",
                str(Path(tmp) / "b.dq"),
                "--force",
            ]
            commands[("decode", backend)] = [dq, "decode", str(encoded), "-o", str(decoded), "--force"]
        for (name, backend), args in commands.items():
            times, outputs = zip(*(wall(args, backend) for _ in range(runs)))
            reported = [float(m[1]) for out in outputs for m in [re.search(r", ([0-9.]+) s$", out.strip())] if m]
            extra = f" (the command reports {statistics.median(reported):.2f} s)" if reported else ""
            label = f"{name} [{backend}]" if backend else name
            click.echo(
                f"{label:22} median {statistics.median(times):.2f} s over {runs} runs, min {min(times):.2f}{extra}"
            )
        click.echo("slowest top-level imports of the decode:")
        for seconds, module in slowest_imports(
            ["-m", "dqcodec_cli.main", "decode", str(encoded), "-o", str(decoded), "--force"], 6
        ):
            click.echo(f"  {seconds:6.2f} s  {module}")


if __name__ == "__main__":
    main()
