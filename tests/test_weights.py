"""Model files: quantized, entropy-coded weights (dqcodec/weights.py), their export (dqcodec/export.py, gptq.py, steps.py),
the registry's families and the zoo's weight versions."""

import contextlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dqcodec
from dqcodec import container, surgery, weights, zoo
from dqcodec.testing import kernels

from .conftest import photo_like, tiny_model

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"


def small_state_dict(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(16, 8, 3, 3, generator=generator) * 0.05,
        "conv.bias": torch.randn(16, generator=generator) * 0.1,
        "book": torch.randn(4, 8, generator=generator) * 3,
        "half": torch.randn(5, generator=generator).half(),  # no step: stored exactly
        "zeros": torch.zeros(7),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(0.5),
        "counts": torch.arange(-3, 40, dtype=torch.int64).reshape(43, 1),
        "flag": torch.tensor(True),
    }


STEPS = {"conv.weight": 0.01, "conv.bias": 1e-4, "book": 2**-10, "zeros": 0.1, "empty": 0.1, "scalar": 0.25}


def test_a_state_dict_round_trips_integers_exactly_and_floats_within_half_a_step():
    state_dict = small_state_dict()
    meta = {"arch": "test", "size": 3}
    got_meta, decoded, digest = weights.read(weights.compress_state_dict(state_dict, STEPS, meta))
    assert got_meta == meta and list(decoded) == list(state_dict)
    for name, tensor in state_dict.items():
        assert decoded[name].shape == tensor.shape, name
        if name in STEPS:
            assert decoded[name].dtype == torch.float32
            assert ((decoded[name].double() - tensor.double()).abs() <= STEPS[name] / 2 * (1 + 1e-6)).all(), name
            step = torch.tensor(np.float32(STEPS[name]))
            q = (decoded[name].double() / step.double()).round()
            assert torch.equal(decoded[name], q.float() * step), f"{name}: not whole steps times the float32 step"
        else:
            assert decoded[name].dtype == tensor.dtype and torch.equal(decoded[name], tensor), name
    assert digest == weights.digest(meta, decoded) == weights.digest(meta, weights.quantized(state_dict, STEPS))


def test_entropy_coding_beats_half_precision_on_gaussian_weights():
    weight = torch.randn(256, 64, 3, 3, generator=torch.Generator().manual_seed(1)) * 0.03
    data = weights.compress_state_dict({"w": weight}, {"w": 0.25 * 0.03})
    assert len(data) < weight.numel() * 2 / 3.5  # about 4 bits per weight, half precision is 16


def test_the_digest_depends_on_every_value_name_shape_and_dtype():
    state_dict = {"a": torch.zeros(2, 3), "b": torch.arange(4)}
    base = weights.digest({}, state_dict)
    variants = [
        {"a": torch.zeros(2, 3), "b": torch.tensor([0, 1, 2, 4])},
        {"c": torch.zeros(2, 3), "b": torch.arange(4)},
        {"a": torch.zeros(3, 2), "b": torch.arange(4)},
        {"a": torch.zeros(2, 3, dtype=torch.float64), "b": torch.arange(4)},
    ]
    assert all(weights.digest({}, v) != base for v in variants)
    assert weights.digest({"x": 1}, state_dict) != base
    assert weights.digest({}, dict(reversed(state_dict.items()))) == base  # canonical order


def test_decoding_is_deterministic_here_and_on_other_kernels(tmp_path):
    data = weights.compress_state_dict(small_state_dict(), STEPS)
    first, second = weights.decompress_state_dict(data), weights.decompress_state_dict(data)
    assert all(torch.equal(first[k], second[k]) for k in first)
    path = tmp_path / "w.dqw"
    path.write_bytes(data)
    code = "import sys; from dqcodec import weights; print(weights.digest(*weights.read(open(sys.argv[1], 'rb').read())[:2]).hex())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == weights.stored_digest(data).hex()


def test_a_model_file_reads_without_torch_to_the_same_arrays(tmp_path):
    """The runtime's first piece (issue 30): with torch unimportable, ``read_arrays`` decodes a model file
    and checks its digest; the arrays are the tensors ``read`` gives."""
    data = weights.compress_state_dict(small_state_dict(), STEPS, {"arch": "test"})
    path = tmp_path / "w.dqw"
    path.write_bytes(data)
    code = (
        "import numpy as np\n"
        "from dqcodec import weights\n"
        "meta, arrays, digest = weights.read_arrays(open(sys.argv[1], 'rb').read())\n"
        "np.savez(sys.argv[2], **arrays)\n"
        "print(digest.hex(), 'torch' in sys.modules and sys.modules['torch'] is not None)"
    )
    done = kernels.without_torch(code, path, tmp_path / "arrays.npz")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [weights.stored_digest(data).hex(), "False"]
    arrays = np.load(tmp_path / "arrays.npz")
    for name, tensor in weights.read(data)[1].items():
        assert arrays[name].dtype == tensor.numpy().dtype and np.array_equal(arrays[name], tensor.numpy())


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_damaged_and_truncated_files_raise_model_error():
    data = weights.compress_state_dict(small_state_dict(), STEPS)
    for cut in (0, 3, 10, 60, len(data) // 2, len(data) - 1):
        with pytest.raises(dqcodec.ModelError):
            weights.read(data[:cut])
    rng = np.random.default_rng(0)
    body, digest = data[:-4], weights.stored_digest(data)
    for offset in rng.integers(4, len(body), 200):  # bit flips whose CRC is made to fit: only parsing stands
        damaged = bytearray(body)
        damaged[offset] ^= 1 << int(rng.integers(8))
        # a flip in a histogram can leave every decoded symbol as it was: the same weights
        with contextlib.suppress(dqcodec.ModelError):
            assert weights.digest(*weights.read(_with_crc(bytes(damaged)))[:2]) == digest
    with pytest.raises(dqcodec.ModelError, match="checksum"):
        weights.read(data[:-1] + bytes([data[-1] ^ 1]))


def test_a_payload_tampered_consistently_is_caught_by_the_weights_hash():
    data = weights.compress_state_dict({"w": torch.full((10,), 0.5)}, {"w": 0.25})
    body = bytearray(data[:-4])
    step_at = body.index(struct.pack("<f", 0.25))
    body[step_at : step_at + 4] = struct.pack("<f", 0.5)  # every weight doubles; the file still parses
    with pytest.raises(dqcodec.ModelError, match="SHA-256"):
        weights.read(_with_crc(bytes(body)))


def test_a_header_naming_huge_tensors_is_refused_before_allocating():
    data = weights.compress_state_dict({"w": torch.zeros(4)}, {"w": 0.5})
    body = bytearray(data[:-4])
    shape_at = body.index(struct.pack("<BB1I", weights.DTYPES.index("float32"), 1, 4)) + 2
    body[shape_at : shape_at + 4] = struct.pack("<I", 2**32 - 1)  # every value the same symbol: no stream to run out
    with pytest.raises(dqcodec.ModelError, match="more than the file may hold"):
        weights.read(_with_crc(bytes(body)))


def test_a_step_too_fine_for_the_values_is_refused():
    with pytest.raises(dqcodec.ArgumentError, match="too fine"):
        weights.compress_state_dict({"w": torch.tensor([1e3])}, {"w": 1e-6})


# ---- the zoo: .dqw files and weight versions -------------------------------------------------------


def test_export_writes_a_dqw_named_by_the_hash_of_its_decoded_weights(tmp_path, monkeypatch):
    path = zoo.export(tiny_model(), "tiny", tmp_path)
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path))
    assert path.suffix == ".dqw" and zoo.find("tiny").path == path
    _, digest = zoo.load("tiny")
    assert path.name == f"tiny-{digest.hex()[:8]}.dqw" and digest == zoo.weights_digest(path.read_bytes())
    assert zoo.registered_digests()[path.name] == zoo.file_digest(path.read_bytes()).hex()


def test_a_model_exported_with_the_command_loads(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dqcodec_cli.main import cli

    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": tiny_model(seed=2).checkpoint(), "step": 7}, checkpoint)
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path / "models"))
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--name", "mine"])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "models").glob("mine-*")
    assert path.suffix == ".dqw"
    model, digest = zoo.load("mine")
    image = photo_like(24, 40)
    decoded = np.asarray(dqcodec.decompress(dqcodec.compress(image, model="mine", quality=2)))
    assert decoded.shape == image.shape


@pytest.mark.slow
def test_an_export_on_a_base_keeps_the_tensors_it_shares_with_it_exactly(tmp_path, monkeypatch):
    """A pixel likelihood trained on a shipped lossy model: exported with --base, the lossy tensors keep
    the base file's steps and values (not rounded again, by GPTQ or on grids of their own), the new ones are quantized."""
    from click.testing import CliRunner

    from dqcodec_cli.main import cli

    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path / "models"))
    lossy = tiny_model(seed=4)
    surgery.drop_pixel_model(lossy)
    base_path = zoo.export(lossy, "base", calibration=[torch.rand(1, 3, 32, 32)])
    base, _ = zoo.load("base")
    grown = base.__class__.from_checkpoint(base.checkpoint())
    surgery.adopt_pixel_model(grown, tiny_model(seed=5))
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": grown.checkpoint(), "step": 1}, checkpoint)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo_like(64, 64)).save(photos / "a.png")
    for name, extra in (("kept", ["--base", "base"]), ("rounded", [])):
        result = CliRunner().invoke(
            cli, ["export", str(checkpoint), "--name", name, "--calibration", str(photos), *extra]
        )
        assert result.exit_code == 0, result.output
    kept, rounded = (zoo.load(name)[0].state_dict() for name in ("kept", "rounded"))
    shared = base.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in shared.items())
    assert not all(torch.equal(rounded[k], v) for k, v in shared.items())  # what --base prevents
    steps = weights.stored_steps(zoo.find("kept").path.read_bytes())
    assert {k: steps[k] for k in shared} == weights.stored_steps(base_path.read_bytes())
    assert any(steps[k] for k in kept if k.startswith("pixels."))


@pytest.fixture
def two_versions(tmp_path, monkeypatch):
    """A models folder with tiny's current weights (.dqw), a legacy half-precision .pt of other
    weights, and a file written when the legacy weights were the only ones installed."""
    checkpoint = tiny_model(seed=3).checkpoint()
    checkpoint["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()
    }
    raw = tmp_path / "raw.pt"
    torch.save(checkpoint, raw)
    data = raw.read_bytes()
    legacy = tmp_path / f"tiny-{zoo.file_digest(data).hex()[:8]}.pt"
    raw.rename(legacy)
    zoo._write_digests(tmp_path, {legacy.name: zoo.file_digest(data).hex()})
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path))
    old_file = dqcodec.compress(photo_like(32, 32), model="tiny", quality=2)
    current = zoo.export(tiny_model(), "tiny", tmp_path)
    return current, legacy, old_file


def test_files_decode_with_the_weights_they_name_and_encoding_uses_the_current_ones(two_versions):
    current, legacy, old_file = two_versions
    assert [m.path for m in zoo.versions("tiny")] == [current, legacy]
    new_file = dqcodec.compress(photo_like(32, 32), model="tiny", quality=2)
    assert container.unpack(new_file)[0].weights_hash.hex()[:8] == zoo.find("tiny").weights_hash == current.stem[-8:]
    assert container.unpack(old_file)[0].weights_hash.hex()[:8] == legacy.stem[-8:]
    for data in (new_file, old_file):
        assert dqcodec.decompress(data).size == (32, 32)  # each with its own weights


def test_a_replaced_version_moves_to_previous_and_its_files_still_decode(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dqcodec_cli.main import cli

    models = tmp_path / "models"
    monkeypatch.setenv("DQCODEC_MODELS", str(models))
    image = photo_like(32, 32)
    written = []
    for seed in (6, 7):
        checkpoint = tmp_path / f"{seed}.pt"
        torch.save({"model": tiny_model(seed=seed).checkpoint(), "step": seed}, checkpoint)
        result = CliRunner().invoke(cli, ["export", str(checkpoint), "--name", "mine", "--force"])
        assert result.exit_code == 0, result.output
        written.append((dqcodec.compress(image, model="mine", quality=2), zoo.find("mine").path))
    (old_file, old_path), (new_file, new_path) = written
    assert [m.path for m in zoo.versions("mine")] == [new_path, models / "previous" / old_path.name]
    assert [m.path for m in zoo.available()] == [new_path]  # what `dqcodec models` lists
    assert not old_path.exists() and old_path.name not in zoo.registered_digests()
    for data, path in written:
        assert container.unpack(data)[0].weights_hash.hex()[:8] == path.stem[-8:]
        assert dqcodec.decompress(data).size == (32, 32)
    assert dqcodec.decompress(old_file).tobytes() != dqcodec.decompress(new_file).tobytes()  # each with its own weights


def test_a_file_naming_weights_that_are_not_installed_is_one_clear_model_error(two_versions):
    data = dqcodec.compress(photo_like(16, 16), model="tiny", quality=1)
    header, streams = container.unpack(data)
    forged = container.pack(container.Header(**{**header.__dict__, "weights_hash": bytes(range(8))}), streams)
    with pytest.raises(dqcodec.ModelError, match="0001020304050607 of model 'tiny' are not installed") as error:
        dqcodec.decompress(forged)
    assert "\n" not in str(error.value)


def test_a_dqw_whose_name_does_not_match_its_weights_is_refused(tmp_path, monkeypatch):
    path = zoo.export(tiny_model(), "tiny", tmp_path)
    wrong = path.with_name("tiny-00000000.dqw")
    path.rename(wrong)
    digests = zoo.registered_digests(tmp_path)
    zoo._write_digests(tmp_path, {wrong.name: digests.pop(path.name)})
    monkeypatch.setenv("DQCODEC_MODELS", str(tmp_path))
    with pytest.raises(dqcodec.ModelError, match="not those its name gives"):
        zoo.load("tiny")


# ---- the shipped models ------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_shipped_model_is_a_dqw_that_loads_with_the_digest_its_name_gives():
    names = dict.fromkeys(m.name for m in zoo.available())
    assert {"dq-hier", "bmshj2018-factorized-1", "bmshj2018-hyperprior-3"} <= set(names)
    for name in names:
        current = zoo.find(name)
        assert current.path.suffix == ".dqw", name
        _, digest = zoo.load(name)
        assert digest.hex()[:8] == current.weights_hash


@pytest.mark.slow
@pytest.mark.shipped
def test_the_golden_files_name_dq_hiers_legacy_weights_and_still_decode():
    """The golden files of format version 3 name dq-hier's legacy weights; those of residual qualities and of
    format version 4, dq-2's or dq-3's."""
    expected = json.loads((GOLDEN / "golden.json").read_text())
    models = {}
    for path in sorted(GOLDEN.glob("*.dq")):
        header, _ = container.unpack(path.read_bytes())
        models[path.name] = header.model
        found = zoo.find(header.model, header.weights_hash)
        assert found.legacy if header.model == "dq-hier" else "residual" in path.name or path.name.startswith("v4-"), (
            path.name
        )
    assert sorted(set(models.values())) == ["dq-2", "dq-3", "dq-hier"] and len(models) == len(expected)
    path = GOLDEN / "q1-rgb-67x45.dq"
    decoded = np.asarray(dqcodec.decompress(path.read_bytes())).astype(int)
    reference = np.asarray(__import__("PIL.Image").Image.open(path.with_suffix(".png"))).astype(int)
    assert np.abs(decoded - reference).max() <= 1 and path.name in expected


@pytest.mark.slow
@pytest.mark.shipped
def test_the_shipped_dq_hier_decodes_to_the_same_weights_without_simd():
    path = zoo.find("dq-hier").path
    code = "import sys; from dqcodec import weights; print(weights.digest(*weights.read(open(sys.argv[1], 'rb').read())[:2]).hex())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip()[:8] == zoo.find("dq-hier").weights_hash


# ---- the format, the export and the registry's families ----------------------------------------


def test_the_format_module_imports_neither_the_export_nor_the_registry():
    code = "import sys; import dqcodec.weights; print(sorted(m for m in ('dqcodec.export', 'dqcodec.gptq', 'dqcodec.registry', 'dqcodec.model') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_each_family_gives_the_steps_of_its_weights_files():
    from dqcodec import baselines, export, registry

    model = tiny_model()
    assert registry.step_policy(model) is registry.DQ_STEPS
    steps = export.shipped_steps(model)
    for name, tensor in model.state_dict().items():
        assert steps[name] == registry.DQ_STEPS.step(name, tensor), name
    policy = registry.DQ_STEPS
    assert (
        policy.alpha("synthesis.3.weight", 1 << 20) == 1 / 16 and policy.alpha("synthesis.3.weight", 100) == policy.fine
    )
    assert policy.alpha("something.else", 1 << 20) == policy.default == 1 / 4
    assert (
        baselines.STEPS.alpha("g_s.2.weight", 1 << 20) == 1 / 2
        and baselines.STEPS.alpha("g_s.0.weight", 1 << 20) == 1 / 8
    )
    assert registry.FAMILIES["bmshj2018-factorized"].step_policy is baselines.STEPS
    assert policy.step("flat", torch.full((5,), 0.5)) is None and policy.step("ints", torch.arange(5)) is None


def test_a_baseline_is_found_by_its_class_and_keeps_its_architecture_and_size():
    import copy
    import pickle

    from dqcodec import baselines, registry

    model = registry.build("bmshj2018-hyperprior", size=2)
    assert registry.family_of(model) == "bmshj2018-hyperprior" and not registry.is_dq(model)
    assert "arch" not in model.__dict__ and model.size == 2  # its class's attribute, and one its constructor sets
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(copied) is type(model) and registry.family_of(copied) == "bmshj2018-hyperprior"
    state = registry.checkpoint_of(model)
    assert (state["arch"], state["size"]) == ("bmshj2018-hyperprior", 2)
    loaded = registry.from_checkpoint(state)
    assert type(loaded) is baselines.model_class("bmshj2018-hyperprior") and loaded.size == 2
    parameters = dict(loaded.named_parameters())  # its coder's tables are rebuilt (update)
    assert all(torch.equal(parameters[k], v) for k, v in model.named_parameters())
    foreign = baselines.compressai_module("compressai.zoo").bmshj2018_factorized(quality=1)  # not built here
    with pytest.raises(dqcodec.ModelError, match="FactorizedPrior"):
        registry.family_of(foreign)
    with pytest.raises(ValueError, match="sizes 1 to 8"):
        baselines.build("bmshj2018-factorized", 9)


def test_a_baseline_is_built_with_the_channels_and_weights_of_compressais_zoo():
    from dqcodec import baselines

    zoo_model = baselines.compressai_module("compressai.zoo")
    for arch, function in (
        ("bmshj2018-factorized", "bmshj2018_factorized"),
        ("bmshj2018-hyperprior", "bmshj2018_hyperprior"),
    ):
        torch.manual_seed(1)
        ours = baselines.build(arch, 3).state_dict()
        torch.manual_seed(1)
        theirs = getattr(zoo_model, function)(quality=3, pretrained=False).state_dict()
        assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours), arch


def test_building_a_dq_model_does_not_import_compressai():
    code = "import sys; from dqcodec import registry; registry.family_of(registry.build('dq-hier', channels=8)); print('compressai' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
