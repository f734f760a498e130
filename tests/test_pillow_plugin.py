"""The Pillow plugin (dqcodec.DqImagePlugin), as a user sees it: everything runs in one fresh process
(tests/pillow_user.py) that imports the plugin itself, so nothing another test imported helps it.
The facts it reports are checked here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import dqcodec
from dqcodec.testing.models import photo_like

SCRIPT = Path(__file__).with_name("pillow_user.py")
HEIGHT, WIDTH = 48, 64


# every test reads the facts of one fresh process that imports torch and codes a few files (over ~5 s)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def facts(tiny_models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pillow")
    rgb, gray = Image.fromarray(photo_like(HEIGHT, WIDTH)), Image.fromarray(photo_like(HEIGHT, WIDTH, seed=1)[..., 1])
    rgb.save(folder / "lossy.png")
    gray.save(folder / "gray.png")
    env = {**os.environ, "DQCODEC_MODELS": str(tiny_models_dir)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DQCODEC_MODELS", str(tiny_models_dir))
        (folder / "lossy.dq").write_bytes(dqcodec.compress(rgb, quality=2, model="tiny"))
        (folder / "gray.dq").write_bytes(dqcodec.compress(gray, quality=3, model="tiny"))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), "tiny"], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode:
        pytest.fail(f"{SCRIPT.name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def test_importing_the_plugin_registers_the_format_without_loading_torch(facts):
    assert not facts["torch_after_import"]
    assert facts["extension"] == "DQ" and facts["mime"] == "image/x-dq" and facts["can_save"]


def test_open_reads_size_mode_and_info_from_the_header_alone(facts):
    opened = facts["open"]
    assert opened["format"] == "DQ" and opened["size"] == [WIDTH, HEIGHT] and opened["mode"] == "RGB"
    assert opened["info"] == {"model": "tiny", "quality": 2, "tile": 1024, "version": 4}
    assert not opened["pixels_allocated"] and opened["tiles"] == 1
    assert facts["open_gray"] == {"size": [WIDTH, HEIGHT], "mode": "L"}
    assert facts["open_bytesio"] == {"format": "DQ", "size": [WIDTH, HEIGHT], "mode": "RGB"}
    # nothing was decoded: opening three files imported neither torch nor the codec
    assert not facts["torch_after_open"] and not facts["codec_after_open"]


def test_loading_decodes_what_dqcodec_decompress_does(facts):
    assert facts["lossy_equals_decompress"] and facts["bytesio_equals_decompress"] and facts["gray_equals_decompress"]
    assert facts["parser_equals_decompress"]  # ImageFile.Parser, fed 100 bytes at a time
    assert facts["info_after_load"] == {
        "model": "tiny",
        "quality": 2,
        "tile": 1024,
        "version": 4,
        "lossless": False,
        "kind": "lossy",
    }
    assert facts["file_closed_after_load"]


def test_image_operations_decode_the_file_when_they_need_its_pixels(facts):
    operations = facts["operations"]
    assert all(same for _, same in operations.values()), operations
    assert operations["thumbnail"][0] == [32, 24]
    assert operations["convert_L"][0] == "L"
    assert operations["crop"][0] == [32, 32]
    assert operations["resize"][0] == [32, 24]
    assert operations["copy"][0] == [WIDTH, HEIGHT]
    assert operations["tobytes"][0] == WIDTH * HEIGHT * 3


def test_save_passes_quality_effort_and_model_to_compress(facts):
    save = facts["save"]
    assert save["quality"] and save["effort"] and save["bytesio"], save  # the very bytes of dqcodec.compress
    assert save["bytesio_quality"] == 2
    assert save["default_quality"] == 2  # the tiny model's default


def test_a_near_lossless_quality_saves_and_loads_within_its_bound_and_is_not_called_lossless(facts):
    near = facts["near_lossless"]
    assert near["quality"] == 6 and near["lossless"] is False and near["max_error"] <= 6


def test_lossless_save_decodes_to_the_very_pixels(facts):
    lossless = facts["lossless"]
    assert lossless["equal"]
    assert lossless["info"]["lossless"] is True
    assert facts["lossless_modes"] == {"L": ["L", True], "1": ["L", True], "P": ["RGB", True]}


@pytest.mark.parametrize("mode", ["RGBA", "LA", "I;16", "CMYK", "P with transparency"])
def test_modes_dqcodec_does_not_code_are_refused_with_an_oserror(facts, mode):
    refused = facts["refused"][mode]
    error = refused["error"]
    assert error is not None and "OSError" in error["classes"]
    assert error["cause"] == "UnsupportedImageError"
    assert "is not supported" in error["message"] and "convert it first" in error["message"]
    assert not refused["file_left"]


def test_bad_options_are_value_errors(facts):
    bad = facts["bad_options"]
    assert bad["quality 99"]["type"] == "ArgumentError" and "between 1 and 6" in bad["quality 99"]["message"]
    assert bad["lossless and effort"]["type"] == "ArgumentError"
    assert bad["no such model"]["type"] == "ModelError" and "not installed" in bad["no such model"]["message"]
    assert all("ValueError" in error["classes"] for error in bad.values())


@pytest.mark.parametrize("case", ["bad magic", "header cut", "version 1", "version 9"])
def test_a_file_without_a_readable_header_is_unidentified(facts, case):
    damaged = facts["damaged"][case]
    assert damaged["open"]["type"] == "UnidentifiedImageError"
    if case.startswith("version"):  # the magic matched: the message says why the header is not read
        assert damaged["open"]["message"].endswith(damaged["decompress"]["message"])
    if case == "header cut":
        assert damaged["open"]["message"].endswith("malformed header: the file is truncated inside it")


@pytest.mark.parametrize("case", ["truncated", "checksum", "corrupt stream"])
def test_a_damaged_stream_raises_oserror_on_load_with_dqcodecs_message(facts, case):
    damaged = facts["damaged"][case]
    assert damaged["open"] is None  # the header is good
    load, direct = damaged["load"], damaged["decompress"]
    assert load["type"] == "OSError" and "DQCodecError" in load["cause_classes"]
    assert load["message"] == direct["message"] and load["cause"] == direct["type"]
    if case != "corrupt stream":
        assert load["message"] == "checksum mismatch: the file is truncated or corrupted"


def test_decompression_bombs_are_pillows_to_refuse(facts):
    bombs = facts["bombs"]
    assert bombs["over twice the limit"]["type"] == "DecompressionBombError"
    assert bombs["warning"] == ["DecompressionBombWarning"] and bombs["decodes"] is None
    assert bombs["header of 10 gigapixels"]["type"] == "DecompressionBombError"
