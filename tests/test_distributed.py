"""Training on two processes, launched by torchrun as a user would (gloo on the CPU, localhost).

``--debug-ranks DIR`` (a hidden option of dqcodec train) makes every process write what it drew
and digests of its model's state when it started (before DDP copied rank 0's weights to it)
and when it ended, so the ranks can be compared with each other and with the checkpoint.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from PIL import Image

from dqcodec import zoo
from dqcodec.training.checkpoints import state_digest

from .conftest import photo_like

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"
    ),
    pytest.mark.slow,  # about 40 s: three launches of two processes
]


def torchrun() -> list[str]:
    """The torchrun next to this interpreter, or the module it runs."""
    script = Path(sys.executable).parent / "torchrun"
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def launch(data: Path, out: Path, debug: Path, *options: str) -> str:
    command = [
        *torchrun(),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dqcodec.training",
        str(data),
        "--out",
        str(out),
    ]
    command += ["--channels", "8", "--schedule", "32x2:20", "--debug-ranks", str(debug), *options]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # containers whose host name does not resolve
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def traces(debug: Path, start: int) -> list[dict]:
    return [json.loads((debug / f"rank{rank}-from{start}.json").read_text()) for rank in (0, 1)]


def log_steps(out: Path) -> list[int]:
    lines = (out / "log.csv").read_text().splitlines()
    assert lines[0].startswith("step,")
    return [int(line.split(",")[0]) for line in lines[1:]]


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo_like(48, 64, seed=i)).save(folder / f"{i}.png")
    return folder


def test_two_processes_keep_one_model_see_different_crops_and_resume(images, tmp_path):
    out, debug = tmp_path / "run", tmp_path / "debug"
    launch(images, out, debug, "--until", "10")

    first = traces(debug, 0)
    assert [t["world_size"] for t in first] == [2, 2] and [t["end_step"] for t in first] == [10, 10]
    # different crops (and qualities) at every step
    assert all(a != b for a, b in zip(first[0]["crops"], first[1]["crops"]))
    assert first[0]["qualities"] != first[1]["qualities"]
    # one model: every weight and every buffer (the codebooks learn by moving averages in the
    # forward pass, not by gradients) the same on both ranks after the last step, and trained
    assert first[0]["state"] == first[1]["state"]
    assert any(first[0]["state"][name] != first[0]["start_state"][name] for name in first[0]["state"])
    assert any(
        first[0]["state"][name] != first[0]["start_state"][name]
        for name in first[0]["state"]
        if name.endswith("quantizer.embed")
    )

    # rank 0 saved that model, in the single-process format (no DDP "module." prefix)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 10 and len(saved["rank_rngs"]) == 2
    assert not any(name.startswith("module.") for name in saved["model"]["state_dict"])
    assert state_digest(saved["model"]["state_dict"]) == first[0]["state"]
    zoo.from_checkpoint(saved["model"])
    assert log_steps(out) == [10]

    # the same command again resumes at step 10 on both ranks, from the saved weights
    output = launch(images, out, debug)
    assert "resumed" in output and "at step 10" in output
    second = traces(debug, 10)
    assert [t["start_state"] for t in second] == [first[0]["state"]] * 2  # what each rank loaded
    assert [t["end_step"] for t in second] == [20, 20]
    assert all(a != b for a, b in zip(second[0]["crops"], second[1]["crops"]))
    assert second[0]["state"] == second[1]["state"]
    assert log_steps(out) == [10, 20]  # the log goes on at the next step
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final["step"] == 20 and state_digest(final["model"]["state_dict"]) == second[0]["state"]

    # and it goes on exactly as a run that never stopped: the same crops, the same weights
    through = tmp_path / "through"
    launch(images, through, tmp_path / "through-debug")
    never_stopped = traces(tmp_path / "through-debug", 0)
    for rank in (0, 1):
        assert never_stopped[rank]["crops"] == first[rank]["crops"] + second[rank]["crops"]
        assert never_stopped[rank]["state"] == second[rank]["state"]
