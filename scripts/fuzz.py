#!/usr/bin/env python3
"""Fuzz dqcodec's decoder and encoder inputs for a long run (the test suite runs 400 cases).

    python scripts/fuzz.py --cases 10000                 # mutation fuzzing (dqcodec/testing/fuzzing.py)
    python scripts/fuzz.py --atheris -- -runs=100000     # coverage-guided, with atheris (pip install -e '.[fuzz]')

Mutation mode: seed files from the shipped dq-hier and from a tiny random model (fast, so most cases
reach deep into decoding), mutated with and without a recomputed CRC, plus mutated image files; every
case runs in a worker under a memory cap and a timeout. It prints the tally and writes every case that
ended in a foreign exception, a failed allocation, a timeout or a crash to --out, and exits non-zero
if there was one.

Atheris mode: libFuzzer's coverage-guided loop, as OSS-Fuzz runs Python projects. One input is a .dq
file or an image (its first byte picks the target); anything but one of dqcodec's own errors is a
finding. Pass libFuzzer's options after --, e.g. -rss_limit_mb=4096 -timeout=10 -runs=N.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dqcodec.testing import fuzzing


def _models(folder: Path) -> None:
    """A models folder with dq-hier, dq-2 and a tiny random model (named tiny)."""
    from dqcodec import zoo
    from dqcodec.testing.models import tiny_model

    zoo.install(zoo.find("dq-hier").path, folder)
    zoo.install(zoo.find("dq-2").path, folder)
    zoo.export(tiny_model(), "tiny", folder)


def _seeds(folder: Path) -> tuple[dict, dict]:
    os.environ["DQCODEC_MODELS"] = str(folder)
    dq = {f"tiny-{k}": v for k, v in fuzzing.dq_seeds("tiny").items()}
    dq |= {f"dq-hier-{k}": v for k, v in fuzzing.dq_seeds("dq-hier").items()}
    dq |= {f"dq-2-{k}": v for k, v in fuzzing.dq_seeds("dq-2").items()}  # its residual qualities too
    return dq, fuzzing.image_seeds()


@click.command(context_settings={"show_default": True, "ignore_unknown_options": True})
@click.option("--cases", default=10_000)
@click.option("--seed", default=0)
@click.option("--timeout", default=10.0, help="seconds a case may take")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("fuzz-findings"),
    help="where findings are written",
)
@click.option("--atheris", "use_atheris", is_flag=True, help="coverage-guided fuzzing with atheris instead")
@click.argument("libfuzzer_args", nargs=-1, type=click.UNPROCESSED)
def main(cases, seed, timeout, out, use_atheris, libfuzzer_args):
    folder = Path(tempfile.mkdtemp(prefix="dqcodec-fuzz-models-"))
    _models(folder)
    dq, images = _seeds(folder)
    if use_atheris:
        _run_atheris(dq, images, libfuzzer_args)
        return
    started = time.perf_counter()

    def progress(report):
        done = sum(report.counts.values())
        if done % 500 == 0:
            click.echo(f"{done} cases in {time.perf_counter() - started:.0f} s: {dict(report.counts)}", err=True)

    report = fuzzing.fuzz(folder, "tiny", dq, images, cases, seed, timeout, progress)
    click.echo(
        f"{report.summary()}; {time.perf_counter() - started:.0f} s; memory cap {fuzzing.MEMORY_CAP >> 30} GiB, timeout {timeout} s"
    )
    if report.bad:
        out.mkdir(parents=True, exist_ok=True)
        for i, (outcome, target, seed_name, detail, data) in enumerate(report.bad):
            (out / f"{i:04d}-{outcome}-{target}-{seed_name}.bin").write_bytes(data)
            click.echo(f"{outcome} {target} ({seed_name}): {detail}")
        raise SystemExit(1)


def _run_atheris(dq: dict, images: dict, libfuzzer_args) -> None:
    """Write the seeds as a corpus, then run libFuzzer in a fresh process that imports dqcodec under
    atheris' instrumentation (only dqcodec's own code is instrumented: torch is too large)."""
    import subprocess

    corpus = Path(tempfile.mkdtemp(prefix="dqcodec-fuzz-corpus-"))
    for i, (name, data) in enumerate({**dq, **images}.items()):
        target = fuzzing.TARGETS.index("compress") if name in images else i % 3
        if name.startswith("pair-"):
            target = fuzzing.TARGETS.index("pair")
        (corpus / name).write_bytes(bytes([target]) + data)
    command = [sys.executable, __file__, "--atheris-worker", str(corpus), *libfuzzer_args]
    raise SystemExit(subprocess.call(command, env=os.environ.copy()))


def _atheris_worker(argv: list[str]) -> None:
    import importlib
    import pkgutil

    import atheris

    with atheris.instrument_imports(include=["dqcodec"]):
        import dqcodec  # instrumented here, used by fuzzing.run_case

        # dqcodec imports its modules on first use (PEP 562), so import them here, or none but the
        # package and its errors would be instrumented and libFuzzer would see no coverage
        for module in pkgutil.iter_modules(dqcodec.__path__):
            importlib.import_module(f"dqcodec.{module.name}")

    def one_input(data: bytes) -> None:
        if not data:
            return
        target = fuzzing.TARGETS[data[0] % len(fuzzing.TARGETS)]
        outcome, detail = fuzzing.run_case(target, data[1:], "tiny")
        if outcome in fuzzing.BAD:
            raise RuntimeError(f"{outcome} in {target}: {detail}")

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--atheris-worker"]:
        _atheris_worker(sys.argv[2:])
    else:
        main()
