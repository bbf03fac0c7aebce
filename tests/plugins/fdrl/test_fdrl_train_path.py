"""The call users make: ``ferzoo train fdrl --dataset rafdb --data-dir path/to/basic`` stores a model that
``ferzoo.load("fdrl", weights="rafdb")`` returns in a fresh process; before that, the error names the command.

The training command is the user's, plus ``--epochs 1 --batch-size 4 --input-shape 32,32,3`` so that it runs in
seconds on a tiny generated RAF-DB in the release's layout."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ferzoo
from ferzoo.weights import WeightsError

from fdrl_rafdb import write_rafdb


def test_missing_weights_error_names_the_command_and_the_store_path():
    home = Path(os.environ["FERZOO_HOME"])
    with pytest.raises(WeightsError) as err:
        ferzoo.load("fdrl", weights="rafdb")
    msg = str(err.value)
    assert "model 'fdrl' has no weights tagged 'rafdb'; known tags: ['fer2013']" in msg  # the shipped FER-2013 weights
    assert "`ferzoo train fdrl --dataset rafdb --data-dir DIR` produces them" in msg
    assert "RAF-DB basic" in msg  # what DIR is
    assert str(home / "store" / "fdrl" / "rafdb" / "fdrl.weights.h5") in msg
    with pytest.raises(WeightsError, match=r"'nope' is not a data set name.*--tag nope"):
        ferzoo.load("fdrl", weights="nope")


@pytest.mark.slow  # about 25 s; tests/datasets/test_rafdb_affectnet_sfew.py trains on the RAF-DB layout by default
def test_train_on_the_rafdb_release_then_load_in_a_fresh_process(tmp_path):
    basic = write_rafdb(tmp_path / "RAF-DB")
    env = {**os.environ, "FERZOO_HOME": os.environ["FERZOO_HOME"], "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "ferzoo.cli", "train", "fdrl", "--dataset", "rafdb", "--data-dir", str(basic),
           "--epochs", "1", "--batch-size", "4", "--input-shape", "32,32,3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validating on split 'test' (recipe 'rafdb')" in proc.stderr
    assert "weights={}".format(repr("rafdb")) in proc.stdout
    stored = Path(os.environ["FERZOO_HOME"]) / "store" / "fdrl" / "rafdb" / "fdrl.weights.h5"
    assert stored.is_file()

    script = textwrap.dedent("""
        import json, numpy as np, ferzoo
        model = ferzoo.load("fdrl", weights="rafdb")
        card = model.weights_card
        probs = model.predict(np.full((100, 100, 3), 120, np.uint8), verbose=0)
        print(json.dumps({"classes": model.class_names, "shape": list(model.input_shape_hwc),
                          "eval_crop": model.eval_crop, "recipe": card["recipe_name"], "kept": card["kept"],
                          "split": card["metrics"]["split"], "n": card["metrics"]["num_examples"],
                          "aux": [l.name for l in model.aux_losses], "probs": probs.tolist()}))
    """)
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    out = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert out["classes"] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]  # RAF-DB's order
    # the recipe's 256 -> 224 resize-then-crop keeps its ratio at the 32 x 32 test input: 256 * 32 / 224 = 36.6
    assert out["shape"] == [32, 32, 3] and out["eval_crop"] == [37, 37]
    assert (out["recipe"], out["kept"], out["split"], out["n"]) == ("rafdb", "last", "test", 7)
    assert out["aux"] == ["compactness", "balance", "distribution"]
    assert len(out["probs"][0]) == 7 and abs(sum(out["probs"][0]) - 1.0) < 1e-5
