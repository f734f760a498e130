import pytest

from dqcodec import zoo

# the tiny models and test images live in dqcodec.testing (scripts and benchmarks use them too); the tests
# import them from here as before
from dqcodec.testing.models import LOWBIT_GRIDS, TINY, TINY_3, photo_like, tiny_model

__all__ = ["TINY", "TINY_3", "photo_like", "tiny_model", "tiny_models_dir", "tiny_zoo"]


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    zoo.export(tiny_model(), "tiny", folder)
    zoo.export(tiny_model(pixel_grids=LOWBIT_GRIDS), "tiny-lowbit", folder)  # lossless format 2
    return folder


@pytest.fixture
def tiny_zoo(tiny_models_dir, monkeypatch):
    """The library's model directory pointed at one tiny model named 'tiny'."""
    monkeypatch.setenv("DQCODEC_MODELS", str(tiny_models_dir))
    return "tiny"
