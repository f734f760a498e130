"""A few hundred fuzz cases on every run (dqcodec/testing/fuzzing.py); scripts/fuzz.py runs long ones."""

from pathlib import Path

import pytest

from dqcodec.testing import fuzzing


@pytest.fixture(scope="module")
def seeds(tiny_models_dir):
    import os

    previous = os.environ.get("DQCODEC_MODELS")
    os.environ["DQCODEC_MODELS"] = str(tiny_models_dir)
    try:
        return fuzzing.dq_seeds("tiny"), fuzzing.image_seeds()
    finally:
        if previous is None:
            del os.environ["DQCODEC_MODELS"]
        else:
            os.environ["DQCODEC_MODELS"] = previous


def test_mutated_files_and_images_end_in_dqcodecs_own_errors(tiny_models_dir, seeds):
    dq, images = seeds
    report = fuzzing.fuzz(tiny_models_dir, "tiny", dq, images, count=400, seed=12345, timeout=10.0)
    assert not report.bad, report.summary() + "\n" + "\n".join(f"{o} {t} {s}: {d}" for o, t, s, d, _ in report.bad[:10])
    assert report.counts["refused"] > 200  # the mutations reach the checks, and most fail them
    assert report.counts["ok"] > 0


def test_the_harness_reports_foreign_exceptions_and_crashes(tiny_models_dir, monkeypatch):
    """The harness itself: a worker that raises something else, or dies, is counted as a bug."""
    outcome, detail = fuzzing.run_case("compress", b"", "no-such-model-type", max_pixels=0)
    assert outcome == "refused"  # an empty file is not an image: one of dqcodec's errors
    workers = fuzzing.Workers(tiny_models_dir, timeout=10.0)
    try:
        outcome, _, _ = workers.run(fuzzing.Case("crash-me", b"", "x"), "tiny")
    finally:
        workers.close()
    assert outcome == "foreign"  # an unknown target raises a plain exception in the worker


def test_mutations_keep_the_crc_valid_half_the_time():
    import random
    import zlib

    data = b"DQC\x00\x03\x04tiny" + bytes(40)
    data = fuzzing.with_crc(data + b"\x00\x00\x00\x00")

    def mutations(seed: int) -> list[bytes]:
        rng = random.Random(seed)  # the mutations draw from this generator only, so a seed fixes them all
        return [fuzzing.mutate_dq(data, rng) for _ in range(200)]

    mutated = mutations(0)
    assert mutated == mutations(0)  # deterministic: the bounds below hold on every run, or on none
    valid = sum(len(m) >= 4 and zlib.crc32(m[:-4]) == int.from_bytes(m[-4:], "little") for m in mutated)
    assert 80 < valid < 140  # 110 with seed 0; a binomial(200, about 1/2) count lands here for most seeds


REGRESSIONS = Path(__file__).parent / "fuzz-regressions"


@pytest.mark.parametrize("name", sorted(p.name for p in REGRESSIONS.iterdir()))
def test_what_the_fuzzer_found_is_refused_cleanly(tiny_zoo, name):
    """Inputs a long fuzz run (scripts/fuzz.py) found escaping with a foreign exception: images (.img)
    to encode, .dq files to decode."""
    target = "compress" if name.endswith(".img") else "decompress"
    outcome, detail = fuzzing.run_case(target, (REGRESSIONS / name).read_bytes(), tiny_zoo)
    assert outcome == "refused", detail
