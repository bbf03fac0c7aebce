import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _ferzoo_home(tmp_path, monkeypatch):
    """Every test gets its own empty FERZOO_HOME (local store and cache)."""
    monkeypatch.setenv("FERZOO_HOME", str(tmp_path / "ferzoo_home"))
    yield
