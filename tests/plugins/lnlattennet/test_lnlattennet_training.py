"""Training on generated data: plain compile()/fit() lowers the loss; the ferzoo.train driver runs the paper's
protocol (keep the last epoch, report the mean of the last k); the fold runner; recipes and registration as data;
the benchmark's in-process pieces."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.data import prepare


def test_fit_with_the_synthetic_recipe_lowers_the_loss():
    train = ferzoo.get_dataset("synthetic", split="train", per_class=4, seed=0)
    keras.utils.set_random_seed(0)
    model = ferzoo.build("lnlattennet", num_classes=7, recipe="synthetic")
    model.compile()  # the recipe: Adam 3e-3 x 0.95 per epoch, CE + L2 (regularisers)
    hist = model.fit(prepare(train, model.input_shape_hwc, batch_size=14, shuffle=64, seed=0, cache=True),
                     epochs=4, verbose=0).history
    assert all(np.isfinite(hist["loss"]))
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] > hist["accuracy"][0]
    np.testing.assert_allclose(hist["learning_rate"], [3e-3 * 0.95 ** e for e in range(4)], rtol=1e-5)


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_of_the_paper_method(tiny_config):
    """The method as in the paper (no BatchNorm, Adam 3e-4 from compile()) on one fixed batch."""
    images = np.stack([x for x, _ in ferzoo.get_dataset("synthetic", split="train", per_class=2).as_numpy_iterator()])
    labels = np.array([y for _, y in ferzoo.get_dataset("synthetic", split="train", per_class=2).as_numpy_iterator()])
    keras.utils.set_random_seed(1)
    model = ferzoo.build("lnlattennet", num_classes=7, dropout=0.0, **tiny_config)
    model.compile()
    x = model.preprocess(images)
    first = float(model.train_on_batch(x, labels)[0])
    for _ in range(8):
        last = float(model.train_on_batch(x, labels)[0])
    assert last < first


@pytest.mark.slow  # four epochs of the paper network, about 26 s: the default run passed 15 minutes
def test_train_driver_keeps_the_last_epoch_and_reports_the_mean_of_the_last_k(tmp_path):
    from ferzoo.train import train

    result = train("lnlattennet", dataset="synthetic", epochs=4, output=str(tmp_path / "run"), verbose=0,
                   dataset_options={"per_class": 2}, say=lambda _line: None)
    card = result["card"]
    accs = result["history"]["val_accuracy"]
    assert len(accs) == 4
    assert card["recipe_name"] == "synthetic" and card["kept"] == "last" and card["kept_epoch"] == 4
    assert card["metrics"]["mean_last_3_accuracy"] == pytest.approx(sum(accs[-3:]) / 3)  # epochs 2-4, not 1
    assert card["metrics"]["accuracy"] == pytest.approx(accs[-1], abs=1e-6)  # the last epoch's weights
    np.testing.assert_allclose(result["history"]["learning_rate"], [3e-3 * 0.95 ** e for e in range(4)], rtol=1e-6)
    assert card["config"]["unet_batch_norm"] is True and card["config"]["nonlocal_channels"] == 8


def _fake_ck48(root, subjects=4):
    """CK+48-style folders: per subject one happy and one surprise sequence of two 48 x 48 frames."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder, level in (("happy", 200), ("surprise", 60)):
        (root / "CK+48" / folder).mkdir(parents=True)
        for s in range(subjects):
            for frame in (1, 2):
                pixels = np.clip(level + rng.normal(0, 20, (48, 48)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / "CK+48" / folder / f"S{10 + s:03d}_001_{frame:08d}.png")
    return root


def test_fold_runner_passes_each_fold_and_summarises(tmp_path, monkeypatch):
    """The runner's orchestration with the driver replaced by a recorder (the real run is the slow test below)."""
    import ferzoo.train
    from ferzoo_plugins.lnlattennet.crossval import run_folds

    calls = []

    def fake_train(model, **kwargs):
        calls.append(kwargs)
        fold = kwargs["dataset_options"]["fold"]
        return {"card": {"metrics": {"mean_last_10_accuracy": 0.5 + 0.1 * fold, "accuracy": 0.6}}}

    monkeypatch.setattr(ferzoo.train, "train", fake_train)
    summary = run_folds("lnlattennet", "mmi", "D", output=tmp_path / "cv", dataset_options={"peak_frames": 3},
                        epochs=7)
    assert [c["dataset_options"] for c in calls] == [
        {"folds": 5, "peak_frames": 3, "neutral_frames": 1, "fold": k} for k in range(5)]
    assert [c["output"] for c in calls] == [str(tmp_path / "cv" / f"fold{k}") for k in range(5)]
    assert all(c["recipe"] == "mmi" and c["epochs"] == 7 and c["data_dir"] == "D" for c in calls)
    assert summary["per_fold"] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9]) and summary["mean"] == pytest.approx(0.7)
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["mean"] == pytest.approx(0.7)


@pytest.mark.slow
def test_fold_runner_trains_each_fold_and_averages_the_last_epochs(tmp_path, tiny_config):
    from ferzoo_plugins.lnlattennet.crossval import run_folds

    data = _fake_ck48(tmp_path / "ck")
    summary = run_folds("lnlattennet", "ckplus", str(data), output=tmp_path / "cv", folds=2, epochs=2,
                        dataset_options={"neutral_frames": 0}, config=tiny_config, verbose=0, batch_size=8)
    assert summary["folds"] == 2 and summary["metric"] == "mean_last_10_accuracy"
    assert summary["dataset_options"] == {"folds": 2, "contempt": False, "last_frames": 1, "neutral_frames": 0}
    per_fold = []
    for k in range(2):
        history = json.loads((tmp_path / "cv" / f"fold{k}" / "history.json").read_text())
        per_fold.append(sum(history["val_accuracy"]) / len(history["val_accuracy"]))  # 2 epochs < 10: all of them
    np.testing.assert_allclose(summary["per_fold"], per_fold, rtol=1e-6)
    assert summary["mean"] == pytest.approx(sum(per_fold) / 2)
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["mean"] == pytest.approx(summary["mean"])


def test_fold_summary_hand_case():
    from ferzoo_plugins.lnlattennet.crossval import fold_summary

    s = fold_summary([{"mean_last_10_accuracy": 0.9, "accuracy": 0.95}, {"mean_last_10_accuracy": 0.8, "accuracy": 0.7}])
    assert s["mean"] == pytest.approx(0.85) and s["std"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="mean_last_10_accuracy"):
        fold_summary([{"accuracy": 0.9}])


def test_recipes_hold_the_paper_protocol():
    table = ferzoo.model_info("lnlattennet").recipe_table()
    assert {"default", "rafdb", "sfew", "affectnet", "ckplus", "mmi", "synthetic"} <= set(table)
    from ferzoo.recipes import resolve_recipe

    targets = {"affectnet": 0.5928, "rafdb": 0.8615, "sfew": 0.578, "ckplus": 0.9818, "mmi": 0.6875}
    splits = {"affectnet": "val", "rafdb": "test", "sfew": "val", "ckplus": "test", "mmi": "test"}
    for name, target in targets.items():
        rec = resolve_recipe(table, name, "lnlattennet")
        assert rec["epochs"] == 24 and rec["batch_size"] == 32
        assert rec["optimizer"] == {"class_name": "adam", "config": {"learning_rate": 3e-4, "beta_1": 0.9,
                                                                     "beta_2": 0.999}}
        assert rec["schedule"] == {"type": "exponential", "gamma": 0.95}
        assert rec["load_size"] == [154, 154] and rec["augmentation"] == {"flip": True}
        assert rec["protocol"]["keep"] == "last" and rec["protocol"]["report_mean_last"] == 10
        assert rec["val_split"] == splits[name] and rec["paper_test_accuracy"] == target
        assert rec["config"] == {} and rec["loss_weights"] == {}
        assert rec["paper_alpha_sweep"]["0.3"] == target  # Table IV is Table V's alpha = 0.3 column
    assert resolve_recipe(table, "ckplus")["dataset_options"]["folds"] == 5
    assert resolve_recipe(table, "mmi")["dataset_options"] == {"folds": 5, "peak_frames": 1, "neutral_frames": 1}
    assert resolve_recipe(table, "rafdb")["paper_overlap_sweep"]["16"] == 0.8615


def test_registration_and_no_tensorflow_at_import():
    code = ("import sys, ferzoo; spec = ferzoo.model_info('lnlattennet'); "
            "print(spec.plugin, spec.default_input_shape, spec.default_explainer, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["lnlattennet", "(144,", "144,", "3)", "patch_weights", "False"]
    names = {p["name"]: p for p in ferzoo.list_plugins()}
    assert names["lnlattennet"]["error"] is None and "lnlattennet" in ferzoo.list_models()


@pytest.mark.slow
def test_benchmark_pieces_run_in_small_mode():
    from ferzoo_plugins.lnlattennet import benchmark

    one = benchmark.train_one("batched", 2, steps=1, warmup=1, small=True)
    assert one["peak_rss_mib"] >= one["rss_after_build_mib"] > 0 and one["images_per_second"] > 0
    assert np.isfinite(one["loss"]) and one["trainable_params"] < 200_000
    lat = benchmark.latency(batch_sizes=(2,), repeats=1, small=True)["results"]["2"]
    assert lat["batched"]["seconds"] > 0 and lat["branches"]["seconds"] > 0 and lat["max_abs_prob_diff"] < 1e-5


def test_the_cpu_recipe_is_a_narrower_lnlattennet_with_unet_batch_norm():
    from ferzoo.recipes import resolve_recipe

    rec = resolve_recipe(ferzoo.model_info("lnlattennet").recipe_table(), "cpu", "lnlattennet")
    assert rec["epochs"] == 6 and rec["batch_size"] == 32 and rec["optimizer"]["config"]["learning_rate"] == 1e-3
    assert rec["protocol"]["keep"] == "best" and rec["load_size"] == [154, 154]
    model = ferzoo.build("lnlattennet", num_classes=7, input_shape=(64, 64, 3), recipe="cpu")
    assert model.get_layer("patches").output.shape[1:] == (21, 21, 16, 16)  # Eq. 5 at 64: 21 px, 7 px overlap
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert 5e6 < model.count_params() < 0.15 * 89_654_167
