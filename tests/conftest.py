import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _ferzoo_home(tmp_path, monkeypatch):
    """Every test gets its own empty FERZOO_HOME (local store and cache)."""
    monkeypatch.setenv("FERZOO_HOME", str(tmp_path / "ferzoo_home"))
    yield


@pytest.fixture
def real_fer2013_dir():
    """The real FER-2013 image folder for ``-m slow`` checks of shipped weights: ``FERZOO_FER2013_DIR``, else
    ``../shared/datasets/fer2013`` beside the checkout; the test is skipped, saying where it looked, without it.
    (Research-use data: never needed by the default run.)"""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"
    data_dir = Path(os.environ.get("FERZOO_FER2013_DIR", root))
    if not (data_dir / "val").is_dir() and not (data_dir / "PublicTest").is_dir():
        pytest.skip(f"real FER-2013 not at {data_dir} (set FERZOO_FER2013_DIR)")
    return data_dir
