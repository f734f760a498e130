import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dqcodec import evaluate
from dqcodec.testing.models import photo_like
from dqcodec_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_encode_decode_info(tiny_zoo, tmp_path):
    src = save(tmp_path / "a.png", photo_like(40, 50))
    result = run("encode", src, "-q", 2, "--model", tiny_zoo)
    assert result.exit_code == 0, result.output
    assert "bpp" in result.output
    dq = tmp_path / "a.dq"
    assert dq.exists()
    out = tmp_path / "new" / "folder" / "back.png"
    assert run("decode", dq, "-o", out).exit_code == 0
    assert Image.open(out).size == (50, 40)
    info = run("info", dq)
    assert info.exit_code == 0
    assert "lossy, quality 2" in info.output and "ideal" in info.output


def test_lossless_encode_decode_and_preview(tiny_zoo, tmp_path):
    original = photo_like(30, 44)
    src = save(tmp_path / "a.png", original)
    result = run("encode", src, "--lossless", "--model", tiny_zoo)
    assert result.exit_code == 0, result.output
    assert "bits/dim" in result.output
    assert run("decode", tmp_path / "a.dq", "-o", tmp_path / "exact.png").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "exact.png")), original)
    assert run("decode", tmp_path / "a.dq", "--preview", "-o", tmp_path / "preview.png").exit_code == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "preview.png")), original)
    assert "lossless" in run("info", tmp_path / "a.dq").output


def test_bpd_reports_real_file_sizes_next_to_classical_codecs(tiny_zoo, tmp_path):
    folder = tmp_path / "images"
    save(folder / "a.png", photo_like(24, 40))
    save(folder / "b.png", photo_like(33, 17, seed=1))
    report = tmp_path / "bpd.json"
    result = run("bpd", folder, "--codec", "dq", "--codec", "png", "--model", tiny_zoo, "--json", report)
    assert result.exit_code == 0, result.output
    assert "pooled" in result.output and "every image exact" in result.output
    figures = json.loads(report.read_text())
    assert set(figures["pooled"]) == {"dq", "png"}
    dq = [p for p in figures["images"] if p["codec"] == "dq"]
    assert len(dq) == 2 and all(p["exact"] for p in dq)
    dims = 24 * 40 * 3 + 33 * 17 * 3
    assert figures["pooled"]["dq"]["bpd"] == pytest.approx(sum(p["bits"] for p in dq) / dims)
    assert all(p["code_bits"] + p["pixel_bits"] < p["bits"] for p in dq)  # the header is the rest


def test_no_overwrite_without_force(tiny_zoo, tmp_path):
    src = save(tmp_path / "a.png", photo_like(16, 16))
    target = tmp_path / "a.dq"
    target.write_bytes(b"keep me")
    result = run("encode", src, "--model", tiny_zoo)
    assert result.exit_code != 0 and "--force" in result.output
    assert target.read_bytes() == b"keep me"
    assert run("encode", src, "--model", tiny_zoo, "--force").exit_code == 0
    assert target.read_bytes()[:3] == b"DQC"
    png = tmp_path / "a.png"
    before = png.read_bytes()
    assert run("decode", target).exit_code != 0
    assert png.read_bytes() == before


def test_many_inputs_to_a_folder(tiny_zoo, tmp_path):
    sources = [save(tmp_path / f"img{i}.png", photo_like(16 + i, 20, seed=i)) for i in range(3)]
    out = tmp_path / "out"
    result = run("encode", *sources, "-o", out, "--model", tiny_zoo)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["img0.dq", "img1.dq", "img2.dq"]
    decoded = tmp_path / "decoded"
    assert run("decode", *out.iterdir(), "-o", decoded).exit_code == 0
    assert len(list(decoded.iterdir())) == 3


def test_bad_inputs_fail_with_one_line(tiny_zoo, tmp_path):
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (4, 4)).save(rgba)
    result = run("encode", rgba, "--model", tiny_zoo)
    assert result.exit_code == 1
    assert "RGBA" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "alpha.dq").exists()

    src = save(tmp_path / "a.png", photo_like(24, 24))
    run("encode", src, "--model", tiny_zoo)
    data = (tmp_path / "a.dq").read_bytes()
    for name, bad in (("flipped.dq", data[:20] + bytes([data[20] ^ 1]) + data[21:]), ("short.dq", data[:-7])):
        path = tmp_path / name
        path.write_bytes(bad)
        result = run("decode", path)
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert "checksum" in result.output
        assert not path.with_suffix(".png").exists()


def test_encoder_effort(tiny_zoo, tmp_path):
    src = save(tmp_path / "a.png", photo_like(24, 40))
    result = run("encode", src, "-e", "2", "--model", tiny_zoo)
    assert result.exit_code == 0, result.output
    assert run("decode", tmp_path / "a.dq", "-o", tmp_path / "b.png").exit_code == 0
    assert Image.open(tmp_path / "b.png").size == (40, 24)
    for bad in (["-e", "3"], ["-e", "1", "--lossless"]):
        result = run("encode", src, *bad, "--model", tiny_zoo, "--force")
        assert result.exit_code == 2 and "effort" in result.output


def test_unreadable_image_is_a_clean_error(tiny_zoo, tmp_path):
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"not an image")
    result = run("encode", bogus, "--model", tiny_zoo)
    assert result.exit_code == 1 and "cannot read" in result.output


def test_models_lists_installed(tiny_zoo):
    result = run("models")
    assert result.exit_code == 0 and "tiny" in result.output


def test_export_ships_a_checkpoint_with_its_rate_points(tmp_path, monkeypatch):
    import torch

    from dqcodec import zoo
    from dqcodec.testing.models import tiny_model

    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": tiny_model().checkpoint(), "step": 7}, checkpoint)
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path / "models"))
    result = run(
        "export",
        checkpoint,
        "--name",
        "mine",
        "--qualities",
        "1,4",
        "--rate-weights",
        "0,0.5",
        "--default-quality",
        "2",
    )
    assert result.exit_code == 0, result.output
    model, _ = zoo.load("mine")
    assert model.config.qualities == [[2, 1], [2, 4]] and model.config.rate_weights == [0.0, 0.5]
    assert run("export", checkpoint, "--name", "mine").exit_code == 1  # no silent replacement
    bad = run("export", checkpoint, "--name", "mine", "--force", "--qualities", "1,2")
    assert bad.exit_code == 1 and "rate_weights" in bad.output
    assert len(list((tmp_path / "models").glob("mine-*.dqw"))) == 1


@pytest.mark.slow
def test_eval_writes_compressai_json_csv_plot_and_bd_rate(tiny_zoo, tmp_path):
    import csv
    import json

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        save(folder / f"im{i}.png", photo_like(24 + 8 * i, 40, seed=i))
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "results"
    result = run(
        "eval", folder, "--codec", "dq", "--codec", "jpeg", "--codec", "nosuch", "-o", out, "--model", tiny_zoo
    )
    assert result.exit_code == 0, result.output
    assert "nosuch" in result.output and "broken.png" in result.output  # listed as skipped, run went on
    for name in ("dq", "jpeg"):
        data = json.loads((out / f"{name}.json").read_text())
        assert data["name"] == name
        assert set(data["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
        assert len(data["results"]["bpp"]) == len(data["settings"])
    with open(out / "points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (6 + 11)  # images x (dq qualities: 3 lossy, 1 residual, 2 near-lossless; JPEG qualities)
    assert (out / "rd.png").read_bytes()[:4] == b"\x89PNG"
    assert "jpeg" in evaluate.read_bd_rates(out / "bd_rate.csv")
    from compressai.utils.plot.__main__ import parse_json_file

    for path in out.glob("*.json"):  # what `python -m compressai.utils.plot --results-file OUT/*.json` reads
        parse_json_file(path, "psnr")


def test_eval_of_an_empty_folder_is_a_clear_error(tiny_zoo, tmp_path):
    result = run("eval", tmp_path, "--codec", "jpeg", "--model", tiny_zoo)
    assert result.exit_code == 1 and "nothing to evaluate" in result.output


def test_eval_codes_a_compressai_baseline_through_its_own_coder(tmp_path, monkeypatch):
    import torch

    from dqcodec import baselines, zoo
    from dqcodec.testing.models import tiny_model

    models = tmp_path / "models"
    torch.manual_seed(0)
    zoo.export(tiny_model(), "tiny", models)
    for i in (1, 2):
        zoo.export(baselines.build("bmshj2018-factorized", 1), f"bmshj2018-factorized-{i}", models)
    monkeypatch.setenv("DQCODEC_MODELS", str(models))
    folder = tmp_path / "images"
    save(folder / "a.png", photo_like(40, 72))
    save(folder / "b.png", photo_like(33, 17, seed=1))
    out = tmp_path / "results"
    result = run("eval", folder, "--codec", "dq", "--codec", "bmshj2018-factorized", "-o", out, "--model", "tiny")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "bmshj2018-factorized.json").read_text())
    assert summary["settings"] == ["bmshj2018-factorized-1", "bmshj2018-factorized-2"]
    assert all(bpp > 0 for bpp in summary["results"]["bpp"])
    assert "bmshj2018-factorized" in evaluate.read_bd_rates(out / "bd_rate.csv")


def test_models_shows_the_held_out_rate_of_a_baseline(tmp_path, monkeypatch):
    from dqcodec import baselines, zoo

    models = tmp_path / "models"
    zoo.export(baselines.build("bmshj2018-factorized", 1), "bmshj2018-factorized-1", models)
    card = {"name": "bmshj2018-factorized-1", "heldout": [{"bpp": 0.3512, "psnr": 28.9}]}
    (models / "bmshj2018-factorized-1.json").write_text(json.dumps(card))
    monkeypatch.setenv("DQCODEC_MODELS", str(models))
    result = run("models")
    assert result.exit_code == 0, result.output
    assert "  0.351 bpp, 28.90 dB PSNR (held-out photos)" in result.output


def test_models_names_the_residual_and_near_lossless_qualities_of_a_dq_card(tmp_path, monkeypatch):
    from dqcodec import zoo
    from dqcodec.testing.models import tiny_model

    models = tmp_path / "models"
    model = tiny_model()
    zoo.export(model, "tiny", models)
    rows = [{"quality": q, "bpp": 0.5 * q, "psnr": 30.0 + q} for q in range(1, 7)]
    config = {"qualities": model.config.qualities, "residual_steps": [[2, 16]], "tolerances": [1, 3]}
    (models / "tiny.json").write_text(json.dumps({"name": "tiny", "config": config, "heldout": rows}))
    monkeypatch.setenv("DQCODEC_MODELS", str(models))
    result = run("models")
    assert result.exit_code == 0, result.output
    assert "  quality 3: 1.500 bpp, 33.00 dB PSNR" in result.output
    assert "  quality 4 (quality 2's codes and a residual of step 16): 2.000 bpp" in result.output
    assert "  quality 5 (near-lossless, samples within 2): 2.500 bpp" in result.output
    assert "  quality 6 (near-lossless, samples within 6): 3.000 bpp" in result.output


def test_a_near_lossless_file_says_so_in_info(tiny_zoo, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(photo_like(24, 32)).save(path)
    assert run("encode", path, "-q", "6", "--model", tiny_zoo).exit_code == 0
    info = run("info", tmp_path / "a.dq")
    assert info.exit_code == 0 and "near-lossless (every sample within 6 grey levels), quality 6" in info.output
    # the tiny model's lossless quality, 1, codes the first level whole and one group of the second
    assert "codes           quality 1's (groups of each level: 2+1)" in info.output


def test_train_refuses_a_quality_the_model_does_not_have_and_a_width_it_would_ignore(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(photo_like(40, 40)).save(tmp_path / "images" / "a.png")
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "images"), "--out", str(tmp_path / "run"), "-q", "9"])
    assert result.exit_code != 0 and "--quality" in result.output
    result = CliRunner().invoke(
        cli, ["train", str(tmp_path / "images"), "--out", str(tmp_path / "run"), "--pixel-hidden", "96"]
    )
    assert result.exit_code != 0 and "--pixel-hidden" in result.output
    assert not (tmp_path / "run").exists()


def test_bits_per_dimension_of_a_grayscale_file_count_one_sample_per_pixel(tiny_zoo, tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(photo_like(24, 32)[..., 0]).save(gray)
    result = run("encode", gray, "--lossless", "--model", tiny_zoo)
    assert result.exit_code == 0, result.output
    size = (tmp_path / "gray.dq").stat().st_size
    bpp = 8 * size / (24 * 32)
    assert f"{bpp:.4f} bpp ({bpp:.4f} bits/dim)" in result.output
    info = run("info", tmp_path / "gray.dq")
    assert f"{bpp:.4f} bits/dim" in info.output


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_help_and_models_load_neither_torch_nor_compressai():
    """`dqcodec --help` and `dqcodec models` stay quick: what they import is checked, not timed."""
    done = _fresh(
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from dqcodec_cli.main import cli\n"
        "for args in (['--help'], ['models'], ['encode', '--help'], ['eval', '--help']):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "print(sorted(m for m in ('torch', 'compressai', 'scipy') if m in sys.modules))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_decoding_a_file_neither_imports_compressai_nor_warns(tmp_path):
    src = save(tmp_path / "a.png", photo_like(40, 50))
    done = _fresh(
        "import sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "from click.testing import CliRunner\n"
        "from dqcodec_cli.main import cli\n"
        f"for args in (['encode', {str(src)!r}], ['decode', {str(tmp_path / 'a.dq')!r}, '-o', {str(tmp_path / 'b.png')!r}]):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "print('compressai' in sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert done.stderr == ""


def test_a_dependencys_warning_does_not_reach_the_user(tmp_path):
    """Pillow warns about the damaged EXIF block of this TIFF (a fuzzing find) before refusing it; the
    user sees dqcodec's one line only. A fresh process, so no earlier warning hides this one."""
    src = Path(__file__).parent / "fuzz-regressions" / "tiff-missing-dimensions.img"
    done = _fresh(
        "import warnings\n"
        "warnings.simplefilter('default')\n"
        "from click.testing import CliRunner\n"
        "from dqcodec_cli.main import cli\n"
        f"result = CliRunner().invoke(cli, ['encode', {str(src)!r}, '-o', {str(tmp_path / 'a.dq')!r}])\n"
        "print(result.exit_code, repr(result.output))\n"
    )
    assert done.returncode == 0, done.stderr
    code, output = done.stdout.split(" ", 1)
    assert code == "1" and output.count("\\n") == 1 and "Warning" not in output + done.stderr


def _without(monkeypatch, *packages):
    """Make importing ``packages`` (and their submodules, imported or not) raise ImportError, as when the
    extra that installs them is missing."""
    for name in [*packages, *(m for m in list(sys.modules) if m.split(".")[0] in packages)]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    "command, extra",
    [
        (["eval", "{images}", "--codec", "dq", "--model", "tiny", "-o", "{out}"], "eval"),
        (["train", "{images}", "--arch", "bmshj2018-factorized", "--out", "{out}", "--schedule", "32x2:1"], "train"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(tiny_zoo, tmp_path, monkeypatch, command, extra):
    save(tmp_path / "images" / "a.png", photo_like(32, 32))
    _without(monkeypatch, "compressai", "torchvision", "pytorch_msssim", "pillow_jxl", "matplotlib")
    args = [a.format(images=tmp_path / "images", out=tmp_path / "out") for a in command]
    result = run(*args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.count("\n") == 1 and f"pip install 'dqcodec[{extra}]'" in result.output, result.output
