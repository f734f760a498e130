"""A level added to a trained model (DQCodec.with_level) for higher rates, trained alone."""

import click
import pytest
import torch
from PIL import Image

from dqcodec import codec, surgery
from dqcodec.entropy import StreamEncoder
from dqcodec.errors import ArgumentError
from dqcodec.levels import LevelConfig
from dqcodec.stack import LayerStack
from dqcodec.training import CHECKPOINT, NewLevel, Stage, TrainConfig, train
from dqcodec.training.cli import parse_level
from dqcodec.training.modes import train_new_level

from .conftest import photo_like, tiny_model

NEW = LevelConfig(groups=2, codebook=8, dim=2, hidden=3)


@pytest.fixture(scope="module")
def models():
    model = tiny_model()
    return model, surgery.with_level(model, NEW, [1, 2])


def image_tensor(h=40, w=56):
    return codec.pad(codec.to_tensor(Image.fromarray(photo_like(h, w))))


def test_qualities_without_the_new_level_code_and_decode_as_before(models):
    model, grown = models
    assert grown.num_levels == 3 and len(grown.ladder) == len(model.ladder) + 2
    assert grown.config.qualities[-2:] == [[2, 4, 1], [2, 4, 2]]
    x = image_tensor()
    for quality in range(1, model.ladder.lossy_count + 1):
        before, after = model.compress(x, quality), grown.compress(x, quality)
        assert before["strings"] == after["strings"][:2] and after["strings"][2] == b""
        image = model.decompress(before["strings"], before["shape"], quality)["x_hat"]
        # the same computation, but some layers run in another memory format: float rounding apart
        assert torch.allclose(grown.decompress(after["strings"], after["shape"], quality)["x_hat"], image, atol=1e-5)
    # the pixel likelihood reads the same features: lossless files are the same bytes
    lossless = model.config.lossless_quality
    before, after = (m.compress(x, lossless, lossless=True)["strings"] for m in (model, grown))
    assert after == before[:2] + [b""] + before[2:]


def test_new_qualities_round_trip_with_the_encoders_indices(models):
    _, grown = models
    x = image_tensor()
    for quality in (grown.ladder.lossy_count - 1, grown.ladder.lossy_count):
        out = grown.compress(x, quality)
        assert out["strings"][2]
        point = grown.ladder.resolve(quality)
        decoded = LayerStack(grown, point).decode_codes(out["strings"], tuple(x.shape[-2:]), 0)[0]
        streams = [StreamEncoder() for _ in range(grown.num_levels)]
        encoded = grown.chain.compress(grown.analyse(x), x, point, streams)
        for got, want in zip(decoded.indices, encoded.indices):
            assert torch.equal(got, want)
        assert grown.decompress(out["strings"], out["shape"], quality)["x_hat"].shape == x.shape


def test_training_moves_only_the_new_level(models, tmp_path):
    _, grown = models
    grown = grown.__class__.from_checkpoint(grown.checkpoint())  # a copy
    surgery.drop_pixel_model(grown)
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(photo_like(48, 48, seed)).save(folder / f"{seed}.png")
    train(
        grown,
        TrainConfig(
            folder, tmp_path / "run", [Stage(32, 2, 3)], 0.05, 1e-2, checkpoint_minutes=60.0, mode=NewLevel(), ecvq=0.5
        ),
    )
    assert [level.training_rate_weight for level in grown.levels] == [
        0.0,
        0.0,
        0.5,
    ]  # entropy-constrained: the new level only
    after = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["model"]["state_dict"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("levels.2.", "mixers.1.", "synthesis.0.weight")) for k in changed), changed
    codes = grown.levels[-1].out_channels
    assert torch.equal(after["synthesis.0.weight"][:, codes:], before["synthesis.0.weight"][:, codes:])
    assert not torch.equal(after["synthesis.0.weight"][:, :codes], before["synthesis.0.weight"][:, :codes])


def test_training_all_moves_the_levels_above_with_the_new_one(models, tmp_path):
    _, grown = models
    grown = grown.__class__.from_checkpoint(grown.checkpoint())
    surgery.drop_pixel_model(grown)
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo_like(48, 48, 0)).save(folder / "0.png")
    train(
        grown,
        TrainConfig(
            folder,
            tmp_path / "run",
            [Stage(32, 2, 3)],
            0.05,
            1e-2,
            checkpoint_minutes=60.0,
            mode=NewLevel(alone=False),
            ecvq=0.5,
        ),
    )
    assert [level.training_rate_weight for level in grown.levels] == [0.0, 0.0, 0.5]
    after = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["model"]["state_dict"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for prefix in ("analysis.", "levels.0.", "levels.2.", "synthesis.", "contexts."):
        assert any(k.startswith(prefix) for k in changed), prefix
    # a model with a pixel likelihood is refused: its pixel bits would train the new level too
    with pytest.raises(click.ClickException, match="without a pixel likelihood"):
        train(
            models[1],
            TrainConfig(
                folder,
                tmp_path / "other",
                [Stage(32, 2, 1)],
                0.05,
                1e-2,
                checkpoint_minutes=60.0,
                mode=NewLevel(alone=False),
            ),
        )


def test_entropy_constrained_training_spends_fewer_bits_on_the_new_level(models):
    """The same crops through the new level in training: with a rate weight, indices trade distance for
    bits under its prior, so they cost fewer bits than the nearest codewords do."""
    _, grown = models
    grown = grown.__class__.from_checkpoint(grown.checkpoint())
    surgery.drop_pixel_model(grown)
    train_new_level(grown)
    level = grown.levels[-1]
    x = image_tensor()
    groups = torch.tensor([[2, 4, 2]])
    bits = []
    for weight in (0.0, 1.0):
        level.training_rate_weight = weight
        torch.manual_seed(0)
        with torch.no_grad():
            out = grown(x, groups)
        bits.append(-torch.log2(out["likelihoods"]["stride4"]).sum().item())
    assert bits[1] < bits[0], bits


def test_a_level_is_added_only_where_it_fits():
    with pytest.raises(ArgumentError):
        surgery.with_level(tiny_model(), NEW, [3])  # the level has 2 groups
    with pytest.raises(ArgumentError):
        surgery.with_level(tiny_model(), NEW, [])


def test_parse_level():
    assert parse_level("16x64x4") == LevelConfig(16, 64, 4)
    assert parse_level("16x64x4x8") == LevelConfig(16, 64, 4, 8)
    for bad in ("16x64", "16x0x4", "ax64x4"):
        with pytest.raises(Exception, match="GROUPSxCODEBOOKxDIM"):
            parse_level(bad)
