import json
import subprocess
import sys

import numpy as np
from PIL import Image

from ferzoo.cli import main


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "ferzoo.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("plugins", "models", "datasets", "train", "evaluate", "explain", "predict", "export", "convert",
                "weights"):
        assert cmd in out.stdout


def test_plugins_lists_versions(registry, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "datasets" in out and "0.1.0" in out
    assert "toy_plugin" in out and "9.9" in out and "models: toy" in out
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"datasets", "toy_plugin"}


def test_unknown_model_is_a_clear_error(registry, capsys):
    assert main(["train", "nosuchmodel"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuchmodel'" in err and "toy" in err


def test_train_predict_evaluate_explain(registry, capsys, tmp_path):
    assert main(["train", "toy", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "load with ferzoo.load('toy', weights='synthetic')" in out
    img = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    assert main(["predict", str(img), "--model", "toy", "--weights", "synthetic", "--top-k", "2", "--no-detect"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(img)) and line.count(",") == 1
    assert main(["predict", "--model", "toy", "--demo", "--weights", "synthetic"]) == 0
    assert capsys.readouterr().out.startswith(str(__import__("ferzoo").demo_image(path_only=True)) + ": ")
    assert main(["evaluate", "toy", "--weights", "synthetic", "--dataset", "synthetic", "--json",
                 "--output-dir", str(tmp_path / "report")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_examples"] == 7 * 24 and (tmp_path / "report" / "report.md").is_file()
    assert main(["explain", str(img), "--model", "toy", "--weights", "synthetic", "--no-detect",
                 "--output", str(tmp_path / "maps")]) == 0
    written = capsys.readouterr().out.split()
    assert [w.rsplit("_", 1)[-1] for w in written] == ["saliency.png"]  # localises and is the toy's own
    assert all(Image.open(w).size[0] == 256 for w in written)
    assert main(["predict", str(tmp_path / "missing.png"), "--model", "toy", "--weights", "synthetic"]) == 1
    assert "missing.png: not found" in capsys.readouterr().out


def test_readme_main_command_offline(tmp_path):
    """The README's main job: the bundled photo, the embedded default weights, no network."""
    import os

    env = {**os.environ, "FERZOO_OFFLINE": "1", "FERZOO_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "ferzoo.cli", "predict", "--demo"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert "astronaut_face.png: happy" in line
    from ferzoo.weights import DEFAULT_MODEL, DEFAULT_WEIGHTS

    assert f"model: {DEFAULT_MODEL}, weights: {DEFAULT_WEIGHTS} (the default" in out.stderr
    assert not (tmp_path / "home" / "cache").exists()  # embedded weights are used in place, nothing fetched
