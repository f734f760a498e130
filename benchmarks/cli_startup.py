"""How long the command line makes a user wait, start to finish, in fresh processes.

    python benchmarks/cli_startup.py [IMAGE] [--runs 5]

Times `dqcodec --help`, `dqcodec models` and `dqcodec decode` of IMAGE (default examples/photo.png, 768x512)
encoded at the default quality, as a user runs them (the installed `dqcodec` script), and prints the
median wall time of each with the time the decode itself reports; then the slowest imports of a decode
(`python -X importtime`). Run it on an idle machine. Targets (issue 15): --help and models at most 0.5 s,
the decode at most 4 s.
"""

from __future__ import annotations

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


def wall(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True)
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
            "--help": [dq, "--help"],
            "models": [dq, "models"],
            "decode": [dq, "decode", str(encoded), "-o", str(decoded), "--force"],
        }
        for name, args in commands.items():
            times, outputs = zip(*(wall(args) for _ in range(runs)))
            reported = [float(m[1]) for out in outputs for m in [re.search(r", ([0-9.]+) s$", out.strip())] if m]
            extra = f" (the command reports {statistics.median(reported):.2f} s)" if reported else ""
            click.echo(
                f"{name:8} median {statistics.median(times):.2f} s over {runs} runs, min {min(times):.2f}{extra}"
            )
        click.echo("slowest top-level imports of the decode:")
        for seconds, module in slowest_imports(
            ["-m", "dqcodec_cli.main", "decode", str(encoded), "-o", str(decoded), "--force"], 6
        ):
            click.echo(f"  {seconds:6.2f} s  {module}")


if __name__ == "__main__":
    main()
