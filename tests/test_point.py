"""Operating points: a request or a header resolves once, against the model's ladder."""

import pytest

import dqcodec
from dqcodec.point import Kind, Ladder

CONFIG = {
    "qualities": [[4, 1], [4, 2], [4, 4]],
    "rate_weights": [0.0, 0.1, 0.3],
    "default_quality": 2,
    "lossless_quality": 1,
    "residual_steps": [[2, 40], [3, 20]],
    "tolerances": [4],
    "pixel_mixtures": 3,
}
LADDER = Ladder.from_config(CONFIG)


def test_the_ladder_runs_lossy_then_residual_then_near_lossless():
    kinds = [point.kind for point in LADDER.rungs()]
    assert kinds == [Kind.LOSSY] * 3 + [Kind.RESIDUAL] * 2 + [Kind.NEAR_LOSSLESS]
    assert len(LADDER) == 6 and LADDER.lossy_count == 3


def test_each_rung_says_what_it_codes():
    residual, near = LADDER.rung(5), LADDER.rung(6)
    assert (residual.codes_quality, residual.groups, residual.residual_step, residual.rate_weight) == (
        3,
        (4, 4),
        20,
        0.3,
    )
    assert residual.enhancement == "residual" and residual.stream_names(["a", "b"]) == ["a", "b", "residual"]
    assert (near.codes_quality, near.tolerance, near.bound, near.codes_pixels, near.exact) == (1, 4, 8, True, False)
    assert LADDER.rung(2).enhancement is None and LADDER.rung(2).stream_names(["a"]) == ["a"]
    assert "step 20" in residual.describe() and "within 8" in near.describe()


def test_a_request_resolves_with_the_models_defaults():
    assert LADDER.resolve() == LADDER.rung(2)
    lossless = LADDER.resolve(lossless=True)
    assert (lossless.kind, lossless.quality, lossless.codes_quality, lossless.exact) == (Kind.LOSSLESS, 1, 1, True)
    assert LADDER.resolve(3, lossless=True).groups == (4, 4)


def test_a_residual_quality_may_be_the_default_and_say_it_deblocks_and_how_its_encoder_rounds():
    ladder = Ladder.from_config(
        {**CONFIG, "default_quality": 5, "residual_deblocking": True, "residual_rate_weight": 0.12}
    )
    assert ladder.resolve() == ladder.rung(5) and ladder.resolve().deblocking
    assert ladder.resolve().residual_rate_weight == 0.12
    assert not any(point.deblocking for point in ladder.rungs() if point.kind != Kind.RESIDUAL)
    assert not any(point.deblocking or point.residual_rate_weight for point in LADDER.rungs())


@pytest.mark.parametrize("default", [6, 0])
def test_a_config_whose_default_is_no_lossy_or_residual_quality_is_refused(default):
    from dqcodec.config import DQConfig

    with pytest.raises(dqcodec.ArgumentError, match="default_quality"):
        DQConfig(**{**CONFIG, "default_quality": default})
    assert DQConfig(**{**CONFIG, "default_quality": 5}).default_quality == 5


@pytest.mark.parametrize(
    "quality,lossless", [(0, False), (7, False), (4, True), (1.5, False), (True, False), ("2", False)]
)
def test_a_quality_the_model_does_not_have_is_an_argument_error(quality, lossless):
    with pytest.raises(dqcodec.ArgumentError, match="quality"):
        LADDER.resolve(quality, lossless)


def test_a_model_without_a_pixel_likelihood_refuses_pixel_points():
    ladder = Ladder.from_config({**CONFIG, "pixel_mixtures": 0, "tolerances": []})
    with pytest.raises(dqcodec.ModelError, match="no pixel likelihood"):
        ladder.resolve(lossless=True)
    assert len(ladder) == 5


def test_a_header_resolves_to_the_same_point_the_encoder_wrote():
    for point in [*LADDER.rungs(), LADDER.resolve(2, lossless=True)]:
        assert LADDER.from_header(int(point.kind), point.quality, point.codes_quality) == point


@pytest.mark.parametrize(
    "kind,quality,codes,message",
    [
        (0, 4, 2, "residual"),  # quality 4 is a residual rung, not a lossy one
        (1, 2, 2, "lossy"),  # and quality 2 is lossy
        (1, 4, 3, "codes of quality 3"),  # quality 4 carries quality 2's codes
        (3, 4, 4, "lossy qualities are 1, 2, 3"),  # a lossless file carries a lossy quality's codes
        (2, 6, 2, "codes of quality 2"),
        (9, 1, 1, "kind 9"),
        (0, 0, 0, "quality 0"),
    ],
)
def test_a_header_the_ladder_does_not_name_is_a_container_error(kind, quality, codes, message):
    with pytest.raises(dqcodec.ContainerError, match=message):
        LADDER.from_header(kind, quality, codes)


def test_legacy_headers_resolve_by_their_stream_count():
    assert LADDER.from_legacy_header(2, 2, 2).kind == Kind.LOSSY
    assert LADDER.from_legacy_header(2, 3, 2).kind == Kind.LOSSLESS  # a lossy quality and one more stream
    assert LADDER.from_legacy_header(4, 3, 2).kind == Kind.RESIDUAL
    assert LADDER.from_legacy_header(6, 3, 2).kind == Kind.NEAR_LOSSLESS
    with pytest.raises(dqcodec.ContainerError, match="no stream after its codes"):
        LADDER.from_legacy_header(4, 2, 2)
    with pytest.raises(dqcodec.ContainerError, match="4 streams"):
        LADDER.from_legacy_header(2, 4, 2)


def test_the_model_card_and_the_model_give_the_same_ladder():
    """The command line lists a model's qualities from its JSON card, without loading it."""
    import json

    from dqcodec import zoo

    model = zoo.load("dq-2")[0]
    card = json.loads((zoo.models_dir() / "dq-2.json").read_text())
    assert Ladder.from_config(card["config"]) == model.ladder


def test_a_card_of_dqcodec_0_2_gives_its_ladder_too():
    """dq-hier's card names its two levels (top_groups) and gives the second level's groups per quality."""
    ladder = Ladder.from_config({"top_groups": 4, "qualities": [1, 2, 4], "rate_weights": [0, 0, 0]})
    assert [p.groups for p in ladder.rungs()] == [(4, 1), (4, 2), (4, 4)]


PLACED = {  # dq-3's layout since 2026-12: residual qualities over quality 1 below the second lossy quality
    **CONFIG,
    "qualities": [[4, 1], [4, 2]],
    "rate_weights": [0.3, 0.3],
    "lossy_positions": [1, 4],
    "residual_steps": [[1, 200], [1, 160], [4, 116], [4, 88]],
    "default_quality": 5,
    "lossless_quality": 4,
}


def test_a_model_may_place_its_lossy_qualities_among_the_residual_ones():
    ladder = Ladder.from_config(PLACED)
    rungs = ladder.rungs()
    assert [p.kind for p in rungs] == [Kind.LOSSY, Kind.RESIDUAL, Kind.RESIDUAL, Kind.LOSSY] + [Kind.RESIDUAL] * 2 + [
        Kind.NEAR_LOSSLESS
    ]
    assert [(p.codes_quality, p.groups, p.residual_step) for p in rungs[:6]] == [
        (1, (4, 1), 0),
        (1, (4, 1), 200),
        (1, (4, 1), 160),
        (4, (4, 2), 0),
        (4, (4, 2), 116),
        (4, (4, 2), 88),
    ]
    assert rungs[6].codes_quality == 4 and rungs[6].groups == (4, 2)
    lossless = ladder.resolve(lossless=True)
    assert (lossless.quality, lossless.groups) == (4, (4, 2)) and ladder.resolve(1, lossless=True).groups == (4, 1)
    with pytest.raises(dqcodec.ArgumentError, match="lossy quality"):
        ladder.resolve(2, lossless=True)  # quality 2 is a residual one
    for point in [*rungs, lossless]:
        assert ladder.from_header(int(point.kind), point.quality, point.codes_quality) == point
    with pytest.raises(dqcodec.ContainerError, match="lossy qualities are 1, 4"):
        ladder.from_header(int(Kind.LOSSLESS), 2, 2)
    from dqcodec.config import DQConfig

    assert Ladder.from_config(DQConfig(**PLACED)) == ladder


@pytest.mark.parametrize(
    "change,message",
    [
        ({"lossy_positions": [2, 4]}, "rising from 1"),
        ({"lossy_positions": [1]}, "rising from 1"),
        ({"lossy_positions": [1, 7]}, "qualities 1 to 6"),
        ({"residual_steps": [[4, 200], [1, 160], [4, 116], [4, 88]]}, "quality 2 got \\[4, 200\\]"),
        ({"residual_steps": [[2, 200], [1, 160], [4, 116], [4, 88]]}, "base one of the lossy qualities"),
        ({"lossless_quality": 2}, "lossless_quality"),
    ],
)
def test_a_config_that_places_its_lossy_qualities_wrongly_is_refused(change, message):
    from dqcodec.config import DQConfig

    with pytest.raises(dqcodec.ArgumentError, match=message):
        DQConfig(**{**PLACED, **change})


def test_rate_control_and_pair_prediction_follow_the_placed_ladder():
    from dqcodec import pairs, rate_control
    from dqcodec.config import DQConfig

    ladder = Ladder.from_config(PLACED)
    assert [p.quality for p in rate_control.rising(ladder)] == list(range(1, 8))
    steps = [pairs.prediction_step(ladder.rung(q), DQConfig(**PLACED)) for q in range(1, 8)]
    assert steps == [250, 200, 160, round(116 * 116 / 88), 116, 88, 0]
    # the lossy qualities first (every shipped model before dq-3's 2026-12 ladder): as before
    unplaced = {
        **PLACED,
        "lossy_positions": [],
        "residual_steps": [[2, 116], [2, 88]],
        "lossless_quality": 2,
        "default_quality": 2,
    }
    assert [pairs.prediction_step(p, DQConfig(**unplaced)) for p in Ladder.from_config(unplaced).rungs()[:2]] == [
        round(116 * (116 / 88) ** 2),
        round(116 * 116 / 88),
    ]


def test_pair_evaluation_takes_the_lossy_qualities_and_every_other_residual_one_down_from_the_finest():
    from dqcodec.evaluate_pairs import dq_qualities

    assert dq_qualities(Ladder.from_config(PLACED)) == [1, 4, 6]
    assert dq_qualities(LADDER) == [1, 2, 3, 5]
