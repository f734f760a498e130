import torch
from PIL import Image

from dqcodec.train import parse_schedule, stage_at, train

from .conftest import TINY, photo_like


def test_schedule_parsing_and_stages():
    stages = parse_schedule("32x4:10,64x2:5")
    assert [(s.crop, s.batch, s.steps) for s in stages] == [(32, 4, 10), (64, 2, 5)]
    assert stage_at(stages, 9).crop == 32 and stage_at(stages, 10).crop == 64 and stage_at(stages, 99).crop == 64


def test_training_writes_a_checkpoint_and_resumes_from_it(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(3):
        Image.fromarray(photo_like(48, 64, seed=i)).save(data / f"{i}.png")
    out = tmp_path / "run"
    ckpt = train(data, out, parse_schedule("32x2:3"), 0.01, 1e-3, TINY, 10.0, seed=0)
    first = torch.load(ckpt, weights_only=False)
    assert first["step"] == 3
    train(data, out, parse_schedule("32x2:3,48x2:2"), 0.01, 1e-3, TINY, 10.0, seed=0)
    second = torch.load(ckpt, weights_only=False)
    assert second["step"] == 5
    assert not torch.equal(first["model"]["state_dict"]["decoder.0.weight"], second["model"]["state_dict"]["decoder.0.weight"])
