import pytest
import torch
from PIL import Image

from dqcodec import baselines, surgery, zoo
from dqcodec.model import DQCodec
from dqcodec.training import Lossless, TrainConfig, parse_schedule, train
from dqcodec.training.objective import stage_at

from .conftest import TINY, photo_like, tiny_model


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
    ckpt = train(DQCodec(TINY), TrainConfig(data, out, parse_schedule("32x2:3"), 0.01, 1e-3, checkpoint_minutes=10.0))
    first = torch.load(ckpt, weights_only=True)
    assert first["step"] == 3
    train(DQCodec(TINY), TrainConfig(data, out, parse_schedule("32x2:3,48x2:2"), 0.01, 1e-3, checkpoint_minutes=10.0))
    second = torch.load(ckpt, weights_only=True)
    assert second["step"] == 5
    assert not torch.equal(
        first["model"]["state_dict"]["synthesis.0.weight"], second["model"]["state_dict"]["synthesis.0.weight"]
    )


def test_keep_all_codes_that_fraction_of_crops_at_the_last_quality():
    from dqcodec.training.data import sample_qualities

    torch.manual_seed(0)
    assert set(sample_qualities(3, 1000, 0.0).tolist()) == {0, 1, 2}
    assert set(sample_qualities(3, 100, 1.0).tolist()) == {2}
    share = (sample_qualities(3, 3000, 0.5) == 2).float().mean().item()
    assert 0.6 < share < 0.73  # 0.5 + 0.5 / 3
    assert sample_qualities(3, 5, 0.0, quality=2).tolist() == [1] * 5


def test_each_crop_is_weighted_by_its_own_lambda():
    from compressai.losses import RateDistortionLoss

    from dqcodec.training.objective import rate_distortion

    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    output = {
        "x_hat": x + 0.1 * torch.randn_like(x),
        "likelihoods": {"a": torch.rand(2, 4, 2, 2), "b": torch.rand(2, 2, 4, 4)},
    }
    same = rate_distortion(output, x, torch.tensor([0.01, 0.01]))
    reference = RateDistortionLoss(lmbda=0.01)(output, x)
    assert torch.allclose(same["loss"], reference["loss"]) and torch.allclose(same["bpp_loss"], reference["bpp_loss"])
    mixed = rate_distortion(output, x, torch.tensor([0.01, 0.1]))
    one = [
        rate_distortion(
            {
                "x_hat": output["x_hat"][i : i + 1],
                "likelihoods": {k: v[i : i + 1] for k, v in output["likelihoods"].items()},
            },
            x[i : i + 1],
            torch.tensor([lm]),
        )
        for i, lm in enumerate([0.01, 0.1])
    ]
    assert torch.allclose(mixed["loss"], (one[0]["loss"] + one[1]["loss"]) / 2)


def test_until_stops_early_with_a_checkpoint(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    ckpt = train(
        DQCodec(TINY),
        TrainConfig(data, tmp_path / "run", parse_schedule("32x2:10"), 0.01, 1e-3, checkpoint_minutes=10.0, until=4),
    )
    assert torch.load(ckpt, weights_only=True)["step"] == 4


def test_a_compressai_baseline_trains_resumes_and_codes_through_its_own_coder(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(64, 80)).save(data / "a.png")
    torch.manual_seed(0)
    model = baselines.build("bmshj2018-hyperprior", 1)
    ckpt = train(
        model,
        TrainConfig(
            data, tmp_path / "run", parse_schedule("64x2:2,64x2:1"), 0.01, 1e-4, checkpoint_minutes=10.0, until=2
        ),
    )
    ckpt = train(
        model, TrainConfig(data, tmp_path / "run", parse_schedule("64x2:2,64x2:1"), 0.01, 1e-4, checkpoint_minutes=10.0)
    )
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and state["aux_optimizer"] is not None
    trained = zoo.from_checkpoint(state["model"])
    x = torch.rand(1, 3, 17, 70)
    out = baselines.compress(trained, x)
    assert sum(len(s[0]) for s in out["strings"]) > 0
    x_hat = baselines.decompress(trained, out, (17, 70))
    assert x_hat.shape == x.shape
    assert torch.equal(x_hat, baselines.decompress(trained, baselines.compress(trained, x), (17, 70)))


def test_lossless_training_at_one_quality_changes_only_the_pixel_likelihood(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    model = tiny_model()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    ckpt = train(
        model,
        TrainConfig(
            data,
            tmp_path / "run",
            parse_schedule("32x2:2"),
            0.01,
            1e-3,
            checkpoint_minutes=10.0,
            mode=Lossless(),
            quality=2,
        ),
    )
    state = torch.load(ckpt, weights_only=True)
    assert state["quality"] == 2
    after = state["model"]["state_dict"]
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("pixels.") for name in changed)


def test_lossy_training_from_a_lossless_model_drops_its_pixel_likelihood(tiny_zoo, tmp_path):
    from click.testing import CliRunner

    from dqcodec.training.cli import main

    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, [str(data), "--out", str(run), "--init", tiny_zoo, "--schedule", "32x2:1"])
    assert result.exit_code == 0, result.output
    assert "pixel likelihood is dropped" in result.output
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert state["config"]["pixel_mixtures"] == 0
    assert not any(name.startswith("pixels.") for name in state["state_dict"])


def test_a_lambda_per_quality_trains_and_is_kept_in_the_checkpoint(tmp_path):
    import pytest
    from click import BadParameter

    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(48, 64)).save(data / "a.png")
    ckpt = train(
        DQCodec(TINY),
        TrainConfig(
            data, tmp_path / "run", parse_schedule("32x2:2"), [0.002, 0.01, 0.05], 1e-3, checkpoint_minutes=10.0
        ),
    )
    assert torch.load(ckpt, weights_only=True)["lmbda"] == [0.002, 0.01, 0.05]
    with pytest.raises(BadParameter, match="one per quality"):
        train(
            DQCodec(TINY),
            TrainConfig(
                data, tmp_path / "other", parse_schedule("32x2:2"), [0.002, 0.01], 1e-3, checkpoint_minutes=10.0
            ),
        )


def test_soft_to_hard_codebooks_train_anneal_and_code(tmp_path):
    """The second seed's quantizer: its codebooks move by gradients, its temperature falls over the
    run, and the trained model's files decode to what its float forward pass reconstructs."""
    import dataclasses

    import numpy as np

    from dqcodec import codec
    from dqcodec.stack import LayerStack

    data = tmp_path / "images"
    data.mkdir()
    for i in range(2):
        Image.fromarray(photo_like(48, 64, seed=i)).save(data / f"{i}.png")
    torch.manual_seed(0)
    model = DQCodec(dataclasses.replace(TINY, codebook_learning="soft-to-hard"))
    initial = model.levels[0].quantizer.embed.detach().clone()
    ckpt = train(
        model, TrainConfig(data, tmp_path / "run", parse_schedule("32x2:6"), 0.01, 1e-3, checkpoint_minutes=10.0)
    )
    trained = zoo.from_checkpoint(torch.load(ckpt, weights_only=True)["model"])
    quantizer = trained.levels[0].quantizer
    assert quantizer.learning == "soft-to-hard" and isinstance(quantizer.embed, torch.nn.Parameter)
    assert not torch.equal(quantizer.embed.detach(), initial)
    assert model.levels[0].quantizer.temperature < 0.1  # annealed towards the end of the run
    x = codec.pad(codec.to_tensor(Image.fromarray(photo_like(48, 48))))
    stack = LayerStack(trained, trained.ladder.resolve(2))
    decoded = stack.decompress(stack.compress(x, (48, 48), 64), (48, 48), 64)
    with torch.no_grad():
        groups = torch.tensor([stack.point.groups])
        expected = (trained.eval()(x, groups)["x_hat"].clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(decoded.astype(float) - expected).max() <= 1


def test_adam_state_follows_parameter_names_when_another_version_registers_them_in_another_order():
    from dqcodec.training.checkpoints import restore_optimizer

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3, 3))
    saved_opt = torch.optim.Adam([a, b])
    a.grad, b.grad = torch.ones(2), torch.full((3, 3), 2.0)
    saved_opt.step()
    saved = saved_opt.state_dict()
    params = {"a": a, "b": b}
    reordered = torch.optim.Adam([b, a])  # the new version registers b first
    assert restore_optimizer(reordered, saved, ["a", "b"], ["b", "a"], params)
    assert torch.equal(reordered.state[b]["exp_avg"], saved["state"][1]["exp_avg"])
    assert torch.equal(reordered.state[a]["exp_avg"], saved["state"][0]["exp_avg"])
    # a checkpoint without names (written before they were saved) is loaded only if its shapes fit
    assert not restore_optimizer(torch.optim.Adam([b, a]), saved, None, ["b", "a"], params)
    assert restore_optimizer(torch.optim.Adam([a, b]), saved, None, ["a", "b"], params)
    assert not restore_optimizer(torch.optim.Adam([a]), saved, ["a", "b"], ["a"], params)  # other parameters


def test_a_checkpoint_whose_adam_state_fits_no_parameter_order_resumes_with_fresh_moments(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    out = tmp_path / "run"
    ckpt = train(DQCodec(TINY), TrainConfig(data, out, parse_schedule("32x2:2"), 0.01, 1e-3, checkpoint_minutes=10.0))
    state = torch.load(ckpt, weights_only=True)
    assert state["optimized_names"][0][0] == next(n for n, p in DQCodec(TINY).named_parameters() if p.requires_grad)
    moments = state["optimizer"]["state"]
    order = sorted(moments)
    state["optimizer"]["state"] = {i: moments[j] for i, j in zip(order, order[::-1])}  # another version's order
    del state["optimized_names"]
    torch.save(state, ckpt)
    train(DQCodec(TINY), TrainConfig(data, out, parse_schedule("32x2:4"), 0.01, 1e-3, checkpoint_minutes=10.0))
    assert torch.load(ckpt, weights_only=True)["step"] == 4


def test_a_half_precision_snapshot_resumes_its_run_at_its_step_with_fresh_moments(tmp_path):
    from dqcodec.training import write_snapshot

    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    ckpt = train(
        DQCodec(TINY),
        TrainConfig(data, tmp_path / "run", parse_schedule("32x2:2"), 0.01, 1e-3, checkpoint_minutes=10.0),
    )
    snapshot = tmp_path / "snapshot.pt"
    write_snapshot(ckpt, snapshot)
    saved = torch.load(snapshot, weights_only=True)
    assert "optimizer" not in saved and saved["step"] == 2
    weights = saved["model"]["state_dict"]
    assert weights["synthesis.0.weight"].dtype == torch.float16
    assert all(not t.is_floating_point() or t.dtype == torch.float16 for t in weights.values())
    full = torch.load(ckpt, weights_only=True)["model"]["state_dict"]["synthesis.0.weight"]
    assert torch.equal(weights["synthesis.0.weight"], full.half())

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "checkpoint.pt").write_bytes(snapshot.read_bytes())
    after = torch.load(
        train(DQCodec(TINY), TrainConfig(data, resumed, parse_schedule("32x2:4"), 0.01, 1e-3, checkpoint_minutes=10.0)),
        weights_only=True,
    )
    assert after["step"] == 4 and after["optimizer"]["state"]
    assert after["model"]["state_dict"]["synthesis.0.weight"].dtype == torch.float32


def test_a_seed_from_a_model_checkpoint_starts_the_schedule_at_its_step_from_those_weights(tmp_path):
    from dqcodec.training import write_seed

    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    model = DQCodec(TINY)
    with torch.no_grad():
        model.synthesis[0].weight.fill_(0.25)  # weights no fresh model has
    out = tmp_path / "run"
    out.mkdir()
    write_seed(zoo.checkpoint_of(model), 3, 0, out / "checkpoint.pt")
    seeded = torch.load(out / "checkpoint.pt", weights_only=True)
    assert seeded["step"] == 3 and "optimizer" not in seeded
    after = torch.load(
        train(
            DQCodec(TINY),
            TrainConfig(data, out, parse_schedule("32x2:3,32x2:1"), 0.01, 1e-3, checkpoint_minutes=10.0, until=4),
        ),
        weights_only=True,
    )
    assert after["step"] == 4
    trained = after["model"]["state_dict"]["synthesis.0.weight"]
    assert not torch.equal(trained, torch.full_like(trained, 0.25))
    assert (trained - 0.25).abs().max() < 0.01  # one Adam step (lr 1e-3) from the seed's weights


def test_init_from_a_runs_checkpoint_starts_from_its_float_weights(tmp_path):
    from click.testing import CliRunner

    from dqcodec.training.cli import initial_model, main

    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    first = tmp_path / "first"
    train(DQCodec(TINY), TrainConfig(data, first, parse_schedule("32x2:2"), 0.01, 1e-3, checkpoint_minutes=10.0))
    saved = torch.load(first / "checkpoint.pt", weights_only=True)["model"]["state_dict"]
    model = initial_model(str(first / "checkpoint.pt"))
    assert model.training and all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    result = CliRunner().invoke(
        main,
        [
            str(data),
            "--out",
            str(tmp_path / "second"),
            "--init",
            str(first / "checkpoint.pt"),
            "--add-level",
            "2x8x2",
            "--level-qualities",
            "1,2",
            "--train-all",
            "--schedule",
            "32x2:1",
        ],
    )
    assert result.exit_code == 0, result.output
    grown = torch.load(tmp_path / "second" / "checkpoint.pt", weights_only=True)["model"]["config"]
    assert len(grown["levels"]) == len(TINY.levels) + 1


def test_a_pixel_likelihood_starts_from_another_models(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dqcodec.errors import ModelError
    from dqcodec.training.cli import main

    donor = tiny_model(seed=1)
    lossy = tiny_model(seed=2)
    surgery.drop_pixel_model(lossy)
    folder = tmp_path / "models"
    zoo.export(donor, "donor", folder)
    lossy_file = zoo.export(lossy, "lossy", folder)
    monkeypatch.setenv("DQCODEC_MODELS", str(folder))
    copy = DQCodec.from_checkpoint(lossy.checkpoint())
    surgery.adopt_pixel_model(copy, donor)
    assert all(torch.equal(v, donor.pixels.state_dict()[k]) for k, v in copy.pixels.state_dict().items())
    with pytest.raises(ModelError):
        surgery.adopt_pixel_model(copy, lossy)  # it has none to give
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(photo_like(40, 40)).save(data / "a.png")
    args = [
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--init",
        "lossy",
        "--lossless",
        "--pixels-from",
        "donor",
        "--schedule",
        "32x2:1",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]["config"]
    assert (config["pixel_mixtures"], config["pixel_hidden"]) == (2, 8)  # the donor's, not the defaults
    refused = CliRunner().invoke(
        main,
        [
            str(data),
            "--out",
            str(tmp_path / "other"),
            "--init",
            "lossy",
            "--lossless",
            "--pixels-from",
            "lossy",
            "--schedule",
            "32x2:1",
        ],
    )
    assert refused.exit_code == 2 and "has none" in refused.output
    narrowed = CliRunner().invoke(
        main,
        [
            str(data),
            "--out",
            str(tmp_path / "narrow"),
            "--init",
            "lossy",
            "--lossless",
            "--pixels-from",
            "donor",
            "--pixel-hidden",
            "4",
            "--schedule",
            "32x2:1",
        ],
    )
    assert narrowed.exit_code == 2 and "cannot narrow" in narrowed.output and "Traceback" not in narrowed.output

    # a new version of "lossy" ships with the likelihood: the same command, with a longer schedule, still
    # resumes the run at its step, and the old version's file still starts a run from scratch
    previous = zoo.retire(lossy_file)
    zoo.export(copy, "lossy", folder)
    resumed = CliRunner().invoke(main, args[:-1] + ["32x2:2"])
    assert resumed.exit_code == 0 and "at step 1" in resumed.output, resumed.output
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 2
    again = CliRunner().invoke(
        main,
        [
            str(data),
            "--out",
            str(tmp_path / "again"),
            "--init",
            "lossy",
            "--lossless",
            "--pixels-from",
            "donor",
            "--schedule",
            "32x2:1",
        ],
    )
    assert again.exit_code == 2 and "without a pixel likelihood" in again.output
    fresh = CliRunner().invoke(
        main,
        [
            str(data),
            "--out",
            str(tmp_path / "fresh"),
            "--init",
            str(previous),
            "--lossless",
            "--pixels-from",
            "donor",
            "--schedule",
            "32x2:1",
        ],
    )
    assert fresh.exit_code == 0, fresh.output


def test_each_mode_owns_its_freezing_rules():
    from click import ClickException

    from dqcodec.levels import LevelConfig
    from dqcodec.training import Lossy, NewLevel
    from dqcodec.training.distributed import Processes
    from dqcodec.training.modes import new_level_parameters

    procs = Processes()
    # lossless: only the pixel likelihood learns, and only it is in training mode (the codebooks stay put)
    model = tiny_model()
    Lossless().prepare(model, procs)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith("pixels.")
    }
    Lossless().train_modules(model)
    assert model.pixels.training and not any(level.training for level in model.levels)
    assert Lossless().lmbda([0.01, 0.02]) == 0.0
    lossy = tiny_model()
    surgery.drop_pixel_model(lossy)
    with pytest.raises(ClickException, match="pixel likelihood"):
        Lossless().prepare(lossy, procs)
    # lossy: every weight, at every quality; a pixel likelihood is dropped
    model = tiny_model()
    Lossy().prepare(model, procs)
    assert model.pixels is None and all(p.requires_grad for p in model.parameters())
    Lossy().train_modules(model)
    assert all(m.training for m in model.modules()) and Lossy().first_quality(model) == 0

    # a new level alone: only its parameters learn, and the synthesis' first convolution's context share gets no gradient
    grown = surgery.with_level(lossy, LevelConfig(groups=2, codebook=8, dim=2, hidden=3), [1, 2])
    alone = NewLevel()
    alone.prepare(grown, procs)
    trainable = {n for n, p in grown.named_parameters() if p.requires_grad}
    assert trainable == set(new_level_parameters(grown)) and "synthesis.0.weight" in trainable
    assert all(n.startswith(("levels.2.", "mixers.1.", "synthesis.0.weight")) for n in trainable)
    alone.train_modules(grown)
    assert (
        grown.levels[-1].training
        and grown.mixers[-1].training
        and not grown.levels[0].training
        and not grown.synthesis.training
    )
    first = alone.first_quality(grown)
    assert grown.config.qualities[first][-1] and not grown.config.qualities[first - 1][-1]
    torch.manual_seed(0)
    out = grown(torch.rand(1, 3, 32, 32), torch.tensor([grown.config.qualities[-1]]))
    out["x_hat"].square().mean().backward()
    grad, codes = grown.synthesis[0].weight.grad, grown.levels[-1].out_channels
    assert grad[:, :codes].abs().sum() > 0 and torch.equal(grad[:, codes:], torch.zeros_like(grad[:, codes:]))
    assert alone.rate_levels(grown) == [grown.levels[-1]]
    # a new level with all: every weight, every quality
    grown = surgery.with_level(lossy, LevelConfig(groups=2, codebook=8, dim=2, hidden=3), [1, 2])
    NewLevel(alone=False).prepare(grown, procs)
    assert all(p.requires_grad for p in grown.parameters()) and NewLevel(alone=False).first_quality(grown) == 0
