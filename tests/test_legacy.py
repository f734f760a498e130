"""Legacy .pt checkpoints read without torch (dqcodec/legacy.py): the same arrays as torch.load, and a
pickle that names anything else, or a tensor that reaches past its storage, is refused without running."""

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dqcodec import legacy, zoo
from dqcodec.errors import ModelError
from dqcodec.testing import kernels

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.shipped
def test_dq_hiers_legacy_weights_read_without_torch_to_what_torch_loads(tmp_path):
    path = zoo.models_dir() / "dq-hier-eb371a5f.pt"
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from dqcodec import legacy\n"
        "checkpoint = legacy.read(open(sys.argv[1], 'rb').read())\n"
        "np.savez(sys.argv[2], **checkpoint['state_dict'])\n"
    )
    done = kernels.without_torch(code, path, tmp_path / "arrays.npz")
    assert done.returncode == 0, done.stderr[-2000:]
    arrays = np.load(tmp_path / "arrays.npz")
    expected = torch.load(path, map_location="cpu", weights_only=True)
    assert sorted(arrays.files) == sorted(expected["state_dict"])
    for name, tensor in expected["state_dict"].items():
        assert arrays[name].dtype == tensor.numpy().dtype and np.array_equal(arrays[name], tensor.numpy()), name
    checkpoint = legacy.read(path.read_bytes())
    assert {k: v for k, v in checkpoint.items() if k != "state_dict"} == {
        k: v for k, v in expected.items() if k != "state_dict"
    }


def test_a_checkpoint_naming_other_code_is_refused_and_nothing_runs(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    buffer = io.BytesIO()
    torch.save({"state_dict": Payload()}, buffer)
    with pytest.raises(ModelError, match="system"):
        legacy.read(buffer.getvalue())
    assert not (tmp_path / "pwned").exists()


class _Storage:
    """Pickles as a persistent reference to archive/data/0, as torch.save writes one."""


class _Tensor:
    def __init__(self, size):
        self.size = size

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (_Storage(), 0, self.size, (1,), False, collections.OrderedDict()))


def _checkpoint_with_one_tensor(size: tuple, storage_bytes: bytes) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return (
                ("storage", torch.HalfStorage, "0", "cpu", len(storage_bytes) // 2)
                if isinstance(obj, _Storage)
                else None
            )

    pickled = io.BytesIO()
    Pickler(pickled, protocol=2).dump({"state_dict": collections.OrderedDict(w=_Tensor(size))})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", pickled.getvalue())
        z.writestr("archive/data/0", storage_bytes)
    return archive.getvalue()


def test_a_tensor_within_its_storage_reads_and_one_past_it_is_refused():
    values = np.arange(4, dtype="<f2")
    read = legacy.read(_checkpoint_with_one_tensor((4,), values.tobytes()))
    assert np.array_equal(read["state_dict"]["w"], values) and read["state_dict"]["w"].dtype == np.float16
    with pytest.raises(ModelError, match="past its storage"):
        legacy.read(_checkpoint_with_one_tensor((1000,), values.tobytes()))


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 not a zip", b"\x80\x02}q\x00."])
def test_bytes_that_are_no_checkpoint_are_one_model_error(data):
    with pytest.raises(ModelError):
        legacy.read(data)
