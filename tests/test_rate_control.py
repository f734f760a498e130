"""Rate control: the ladder's quality that meets a size or a PSNR target."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dqcodec
from dqcodec import rate_control, zoo
from dqcodec_cli.main import cli

from .conftest import photo_like

IMAGE = photo_like(24, 32, seed=3)


@pytest.fixture
def ladder_files(tiny_zoo):
    """Every quality's file of IMAGE, its bpp and its PSNR, in the order rate control searches them."""
    rows = []
    for point in rate_control.rising(zoo.load(tiny_zoo)[0].ladder):
        data = dqcodec.compress(IMAGE, quality=point.quality, model=tiny_zoo)
        decoded = np.asarray(dqcodec.decompress(data), dtype=np.float64)
        psnr = 10 * np.log10(255**2 / np.mean((decoded - IMAGE) ** 2))
        rows.append((point.quality, data, 8 * len(data) / IMAGE[..., 0].size, psnr))
    return rows


def test_the_tiny_ladder_rises_in_rate_and_psnr_in_that_order(ladder_files):
    """What the binary search relies on, for the image these tests use: the tiny model's near-lossless
    qualities 5 (tolerance 1) and 6 (tolerance 3) are searched as 6, then 5."""
    rates, psnrs = [r[2] for r in ladder_files], [r[3] for r in ladder_files]
    assert rates == sorted(rates) and psnrs == sorted(psnrs)
    assert [r[0] for r in ladder_files] == [1, 2, 3, 4, 6, 5]


@pytest.mark.slow
def test_a_size_target_gets_the_largest_quality_within_it(tiny_zoo, ladder_files):
    for _, _, rate, _ in ladder_files:
        coded = rate_control.compress_to(IMAGE, bpp=rate * 1.0001, model=tiny_zoo)
        expected = [row for row in ladder_files if row[2] <= rate * 1.0001][-1]
        assert (coded.quality, coded.data) == expected[:2]
    smallest = rate_control.compress_to(IMAGE, bpp=ladder_files[0][2] / 2, model=tiny_zoo)
    assert smallest.quality == 1  # nothing fits: the smallest file


@pytest.mark.slow
def test_a_psnr_target_gets_the_smallest_quality_that_reaches_it(tiny_zoo, ladder_files):
    for _, _, _, psnr in ladder_files:
        coded = rate_control.compress_to(IMAGE, psnr=psnr - 1e-6, model=tiny_zoo)
        expected = next(row for row in ladder_files if row[3] >= psnr - 1e-6)  # the tiny model's lossy PSNRs tie
        assert (coded.quality, coded.data) == expected[:2] and coded.psnr >= psnr - 1e-6
    best = rate_control.compress_to(IMAGE, psnr=200.0, model=tiny_zoo)
    assert best.quality == ladder_files[-1][0]  # nothing reaches it: the best image


@pytest.mark.parametrize("targets", [{}, {"bpp": 1.0, "psnr": 30.0}, {"bpp": 0}, {"psnr": -3.0}, {"bpp": "1"}])
def test_one_positive_target_is_required(tiny_zoo, targets):
    with pytest.raises(dqcodec.ArgumentError):
        rate_control.compress_to(IMAGE, model=tiny_zoo, **targets)


def test_the_command_line_writes_the_chosen_quality(tiny_zoo, tmp_path, ladder_files):
    Image.fromarray(IMAGE).save(tmp_path / "a.png")
    target = ladder_files[2][2] * 1.0001
    result = CliRunner().invoke(cli, ["encode", str(tmp_path / "a.png"), "--bpp", str(target), "--model", tiny_zoo])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.dq").read_bytes() == ladder_files[2][1] and f"quality {ladder_files[2][0]}" in result.output
    both = CliRunner().invoke(cli, ["encode", str(tmp_path / "a.png"), "--bpp", "1", "-q", "2", "--force"])
    assert both.exit_code == 2 and "give one of" in both.output
