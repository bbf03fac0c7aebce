"""Usage errors of the ``ferzoo`` command: every option and path is checked before TensorFlow is imported (so
before any model loads or any epoch runs); the answer is one line ``ferzoo: error: ...`` that names the option,
exit code 2, no traceback, and nothing is left behind.

Each case runs the real command in a fresh folder with a stand-in ``tensorflow`` package first on the path: it
records its import and fails, so a check that came after TensorFlow would show as a marker file (and as a wrong
message). ``test_the_stand_in_catches_a_tensorflow_import`` shows that it does.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: (argv, what the one line must contain); the paths are relative to the case's fresh folder, which holds
#: ``afile`` (a file) and nothing else; /proc takes no new files or folders
CASES = [
    # the model and its weights (the registry and the cards, not the model)
    (["predict", "--model", "resnet_fer", "--demo"], "--model: unknown model 'resnet_fer'. Known models: "),
    (["explain", "--model", "deep_emotoin", "--demo", "--output", "maps"],
     "--model: unknown model 'deep_emotoin'. Did you mean 'deep_emotion'?"),
    (["train", "deep_emotoin"], "unknown model 'deep_emotoin'. Did you mean 'deep_emotion'?"),
    (["predict", "--model", "dan", "--demo"], "--weights: model 'dan' needs weights"),
    (["predict", "--demo", "--weights", "nope"], "--weights: model 'daf_cnn_compact' has no weights tagged 'nope'"),
    (["explain", "--demo", "--weights", "gone.weights.h5", "--output", "maps"],
     "--weights: weights file gone.weights.h5 does not exist"),
    (["evaluate", "deep_emotion", "--weights", "nope", "--dataset", "synthetic"],
     "--weights: model 'deep_emotion' has no weights tagged 'nope'"),
    (["export", "deep_emotion", "--weights", "nope", "--output", "sm"], "--weights: model 'deep_emotion' has no"),
    (["train", "deep_emotion", "--init-from", "gone.weights.h5"], "--init-from: weights file gone.weights.h5"),
    # the inputs of predict / explain
    (["predict"], "PATH: give photos, folders or videos to predict, or --demo"),
    (["explain", "--output", "maps"], "PATH: give photos, folders or videos to explain, or --demo"),
    (["predict", "deep_emotion"], "'deep_emotion' is a model name, not a file: use --model deep_emotion"),
    (["predict", "--demo", "--top-k", "9"], "--top-k: must be at most 7, the number of classes of daf_cnn_compact"),
    (["predict", "--demo", "--every", "0"], "argument --every: must be an integer >= 1, got 0"),
    (["predict", "--demo", "--min-confidence", "1.5"], "argument --min-confidence: must be a number from 0 to 1, got 1.5"),
    (["predict", "--demo", "--no-detect", "--min-confidence", "0.5"],
     "--min-confidence: an option of face detection; --no-detect classifies each image as it is"),
    (["explain", "--demo", "--no-detect", "--face-margin", "0.2", "--output", "maps"],
     "--face-margin: an option of face detection; --no-detect classifies each image as it is"),
    (["serve", "--min-confidence", "high"], "argument --min-confidence: must be a number from 0 to 1, got 'high'"),
    # where results go
    (["predict", "--demo", "--output", "/proc/x/out.json"], "--output /proc/x/out.json: cannot create"),
    (["predict", "--demo", "--output", "out.txt"], "--output out.txt: give a file ending in .json or .csv"),
    (["predict", "--demo", "--annotate", "/proc/nope"], "--annotate /proc/nope: cannot create files or folders in /proc"),
    (["predict", "--demo", "--annotate", "afile"], "--annotate afile: afile is a file, not a folder"),
    (["explain", "--demo", "--output", "/proc/x"], "--output /proc/x: cannot create files or folders in /proc"),
    (["explain", "--demo", "--output", "afile/maps"], "--output afile/maps: afile is a file, not a folder"),
    (["train", "deep_emotion", "--output", "afile"], "--output afile: is a file; give a folder"),
    (["train", "deep_emotion", "--output", "/proc/x"], "--output /proc/x: cannot create files or folders in /proc"),
    (["train", "deep_emotion", "--output", "my.weights.h5"],
     "--output my.weights.h5: names a file, but train writes a folder; give a folder"),
    (["evaluate", "deep_emotion", "--weights", "fer2013", "--dataset", "synthetic", "--output-dir", "afile"],
     "--output-dir afile: afile is a file, not a folder"),
    (["export", "deep_emotion", "--weights", "fer2013", "--output", "afile"], "--output afile: afile is a file"),
    (["export", "deep_emotion", "--weights", "fer2013", "--quantize", "int8", "--output", "sm"],
     "--quantize int8: quantization applies to TFLite only"),
    # data, recipe and training options
    (["train", "deep_emotion", "--dataset", "fer2013", "--data-dir", "/nonexistent"],
     "--data-dir /nonexistent: no such file or folder"),
    (["benchmark", "--dataset", "fer2013", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such file"),
    (["train", "deep_emotion", "--dataset", "fer2031"], "--dataset: unknown data set 'fer2031'. Did you mean 'fer2013'?"),
    (["evaluate", "deep_emotion", "--weights", "fer2013", "--dataset", "synthetic", "--split", "dev"],
     "--split: data set 'synthetic' has no split 'dev'; its splits: train, val, test"),
    (["train", "deep_emotion", "--val-split", "dev"], "--val-split: data set 'synthetic' has no split 'dev'"),
    (["train", "deep_emotion", "--recipe", "nope"], "--recipe: model 'deep_emotion': no recipe 'nope'; known: "),
    (["train", "deep_emotion", "--mixed-precision", "half"], "--mixed-precision: 'half' is not one of auto, "),
    (["train", "deep_emotion", "--input-shape", "96x96"], "--input-shape: expects H,W,C (e.g. 96,96,3), got '96x96'"),
    (["train", "deep_emotion", "--input-shape", "4,4,1"], "--input-shape: model 'deep_emotion': input_shape=(4, 4, 1)"),
    (["train", "deep_emotion", "--config", "dropout"], "--config: expects KEY=VALUE, got 'dropout'"),
    (["train", "deep_emotion", "--dataset-option", "=1"], "--dataset-option: expects KEY=VALUE, got '=1'"),
    (["train", "deep_emotion", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["convert", "dan", "gone.pth", "--tag", "t"], "CHECKPOINT gone.pth: no such file"),
    ([], "the following arguments are required: command"),
]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A ``tensorflow`` package that writes a marker file and fails when imported."""
    root = tmp_path_factory.mktemp("stand_in")
    (root / "tensorflow").mkdir()
    (root / "tensorflow" / "__init__.py").write_text(
        "import os\n"
        "open(os.environ['FERZOO_TEST_TF_MARKER'], 'w').close()\n"
        "raise ImportError('the usage-error test: TensorFlow was imported')\n")
    return root


def ferzoo_command() -> list[str]:
    script = shutil.which("ferzoo", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "ferzoo.cli"]


def run_ferzoo(argv, cwd: Path, stand_in: Path, marker: Path):
    env = {**os.environ, "FERZOO_OFFLINE": "1", "FERZOO_HOME": str(cwd / "home"), "FERZOO_TEST_TF_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(stand_in), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    out = subprocess.run(ferzoo_command() + list(argv), cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    return out, time.perf_counter() - start


def tree(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a) or "(nothing)" for a, _ in CASES])
def test_a_usage_error_is_one_line_exit_2_before_tensorflow(argv, message, tmp_path, stand_in):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "afile").write_text("not a folder\n")
    marker = tmp_path / "tensorflow_imported"
    before = tree(cwd)
    out, seconds = run_ferzoo(argv, cwd, stand_in, marker)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("ferzoo: error: "), out.stderr[-2000:]
    assert message in lines[0]
    assert not out.stdout
    assert not marker.exists(), "TensorFlow was imported before the usage error"
    assert tree(cwd) == before  # no half-made folder, no probe left, no FERZOO_HOME created
    assert seconds < 60  # an import of ferzoo and the registry; nothing loads


def test_the_stand_in_catches_a_tensorflow_import(tmp_path, stand_in):
    """A command whose options are right goes on to import TensorFlow: the stand-in sees it."""
    marker = tmp_path / "tensorflow_imported"
    out, _ = run_ferzoo(["predict", "--demo", "--top-k", "7"], tmp_path, stand_in, marker)
    assert marker.exists() and out.returncode != 0
    assert "the usage-error test: TensorFlow was imported" in out.stderr
