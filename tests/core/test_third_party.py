"""A third-party plugin package, built and installed like any user's, is found through its entry point."""

import os
import subprocess
import sys
import textwrap

PLUGIN = '''
import keras

from ferzoo import LossSpec, ModelSpec, hookimpl
from ferzoo.losses import AuxiliaryLoss

__version__ = "0.3.1"


@keras.saving.register_keras_serializable(package="fz_thirdparty")
class FeatureNorm(AuxiliaryLoss):
    """Mean squared norm of the embedding (a stand-in for a paper's auxiliary loss)."""
    requires = ("features",)

    def compute(self, y_true, outputs, sample_weight=None):
        return keras.ops.mean(keras.ops.sum(keras.ops.square(outputs["features"]), axis=-1))


def build(x, num_classes, width=4):
    x = keras.layers.Conv2D(width, 3, activation="relu")(x)
    f = keras.layers.GlobalAveragePooling2D()(x)
    return {"logits": keras.layers.Dense(num_classes)(f), "features": f}


def losses(num_classes, width=4):
    return [FeatureNorm(weight=0.01, name="feature_norm")]


@hookimpl
def register_models(register):
    register(ModelSpec(name="tiny3p", builder=build, losses=losses, default_input_shape=(12, 12, 1),
                       default_config={"width": 4}, description="third-party test model"))


@hookimpl
def register_losses(register):
    register(LossSpec(name="feature_norm", factory=FeatureNorm))
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "fz-thirdparty"
version = "0.3.1"

[project.entry-points.ferzoo]
tiny3p = "fz_thirdparty"
'''


def test_third_party_plugin_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "fz_thirdparty").mkdir(parents=True)
    (pkg / "fz_thirdparty" / "__init__.py").write_text(PLUGIN)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(pkg)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    script = textwrap.dedent("""
        import numpy as np
        import ferzoo
        from ferzoo.data import prepare
        plugins = {p["name"]: p for p in ferzoo.list_plugins()}
        assert plugins["tiny3p"]["error"] is None, plugins["tiny3p"]
        print("version", plugins["tiny3p"]["version"])
        print("models", ferzoo.list_models())
        print("losses", ferzoo.list_losses())
        model = ferzoo.build("tiny3p", num_classes=3)
        model.compile()
        ds = ferzoo.get_dataset("synthetic", split="train", num_classes=3, size=12, per_class=4)
        hist = model.fit(prepare(ds, model.input_shape_hwc, batch_size=12), epochs=1, steps_per_epoch=1, verbose=0)
        print("history", sorted(hist.history), np.isfinite(hist.history["loss"][0]))
    """)
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "version 0.3.1" in out
    assert "tiny3p" in out.split("models", 1)[1].splitlines()[0]
    assert "feature_norm" in out.split("losses", 1)[1].splitlines()[0]
    assert "history ['accuracy', 'feature_norm_loss', 'loss'] True" in out
