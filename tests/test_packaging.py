"""A wheel, not only a source checkout: built, unpacked away from the repository and imported from there, it
carries every model the golden files name and decodes them all (issue 30)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import dqcodec

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
pytestmark = [pytest.mark.slow, pytest.mark.shipped]

DECODE_FROM_THE_WHEEL = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import numpy as np
import dqcodec
from dqcodec import zoo
decoded = {path.name: np.asarray(dqcodec.decompress(path.read_bytes())) for path in sorted(Path(sys.argv[2]).glob("*.dq"))}
np.savez(sys.argv[3], **decoded)
print(dqcodec.__file__)
print(zoo.models_dir())
"""


def _source_copy(target: Path) -> Path:
    """The checkout without what building, testing or data left in it (a stale build/ would go into the wheel)."""
    left_out = shutil.ignore_patterns(".git", ".venv", "build", "data", "runs", "*.egg-info", "__pycache__", ".*_cache")
    return Path(shutil.copytree(ROOT, target, ignore=left_out))


def _registered(folder: Path) -> set[str]:
    return {line.split()[1] for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip()}


def test_a_built_wheel_carries_the_models_and_decodes_every_golden_file(tmp_path):
    source = _source_copy(tmp_path / "source")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path / "dist",
            source,
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("dqcodec-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "dqcodec/models/SHA256SUMS" in names and not any("snapshots" in name for name in names)
    models = ROOT / "models"
    shipped = {
        name.split("/", 2)[2] for name in names if name.startswith("dqcodec/models/") and name.endswith((".dqw", ".pt"))
    }
    assert shipped == _registered(models) | {f"previous/{name}" for name in _registered(models / "previous")}
    env = {k: v for k, v in os.environ.items() if k != "DQCODEC_MODELS"}
    done = subprocess.run(
        [sys.executable, "-c", DECODE_FROM_THE_WHEEL, site, GOLDEN, tmp_path / "decoded.npz"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    package, models = done.stdout.split()
    assert Path(package).is_relative_to(site) and Path(models) == site / "dqcodec" / "models"
    from_wheel = np.load(tmp_path / "decoded.npz")
    golden = sorted(GOLDEN.glob("*.dq"))
    assert sorted(from_wheel.files) == [path.name for path in golden]
    for path in golden:
        here = np.asarray(dqcodec.decompress(path.read_bytes())).astype(int)
        assert np.abs(from_wheel[path.name].astype(int) - here).max() <= 1, path.name
