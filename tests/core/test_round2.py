"""Core round 2: rule-updated centres, recipe config and protocols, resize-then-crop, fine-tuning, resume,
local tags, backbone init files, CLI option checks."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo import weights as W
from ferzoo.train import train, transfer_weights

HERE = Path(__file__).resolve().parent


def _batch(n=6, seed=0, size=16):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, size, size, 1)).astype(np.float32), np.array([0, 1, 1, 2, 0, 1][:n], np.int32)


def _centres(model):
    return keras.ops.convert_to_numpy(model.aux_losses[0].centres).copy()


# -- 1. centres updated by a rule -------------------------------------------------------------------------
def test_centre_loss_update_on_a_hand_computed_case():
    from ferzoo.losses import centre_loss_update

    c = np.zeros((3, 1), np.float32)
    x = np.array([[2.0], [4.0], [6.0]], np.float32)
    new = keras.ops.convert_to_numpy(centre_loss_update(c, x, np.array([0, 1, 1]), 0.5))
    # class 0: delta = (0 - 2) / 2 = -1 -> 0.5; class 1: delta = (0 - 4 + 0 - 6) / 3 -> 0.5 * 10 / 3; class 2 absent
    np.testing.assert_allclose(new[:, 0], [0.5, 5.0 / 3.0, 0.0], rtol=1e-6)  # FDRL spec case 11 for class 0


def test_one_training_step_moves_centres_by_the_rule_and_evaluation_does_not(registry):
    from ferzoo.losses import centre_loss_update

    model = ferzoo.build("toy_rule", num_classes=3)
    model.compile()
    x, y = _batch()
    before = _centres(model)
    # the rule's amount, from the features of the forward pass that the step makes (before its weight update)
    feats = keras.ops.convert_to_numpy(model(x, training=True)["features"])
    expected = keras.ops.convert_to_numpy(centre_loss_update(before, feats, y, 0.5))
    model.train_on_batch(x, y)
    np.testing.assert_allclose(_centres(model), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(_centres(model), before)
    moved = _centres(model)
    model.keras_evaluate(x, y, verbose=0)  # Keras' test_step
    model.evaluate(x, y=y, verbose=0)  # ferzoo's report
    np.testing.assert_array_equal(_centres(model), moved)
    # the rule-updated centres get no gradient and are not trainable weights
    assert all(v is not model.aux_losses[0].centres for v in model.trainable_variables)


def test_validation_pass_of_fit_leaves_centres_unchanged(registry):
    model = ferzoo.build("toy_rule", num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: only the rule moves the centres
    x, y = _batch()
    model.fit(x, y, batch_size=6, epochs=1, verbose=0)
    after_train = _centres(model)
    model.fit(x[:1], y[:1], batch_size=1, epochs=1, verbose=0, validation_data=(x, y))
    one_step = _centres(model)
    # the second fit made exactly one training step; its validation pass over 6 images moved nothing more
    fresh = ferzoo.build("toy_rule", num_classes=3)
    fresh.set_weights(model.get_weights())
    fresh.aux_losses[0].centres.assign(after_train)
    fresh.compile(optimizer=keras.optimizers.SGD(0.0))
    fresh.fit(x[:1], y[:1], batch_size=1, epochs=1, verbose=0)
    np.testing.assert_allclose(one_step, _centres(fresh), rtol=1e-6, atol=1e-7)


# -- 7. several replicas -------------------------------------------------------------------------------------
REPLICA_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    import keras, ferzoo
    from toy_plugin import ToyPlugin
    ferzoo.register_plugin(ToyPlugin(), name="toy_plugin")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 16, 16, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    out = {}
    for name, strategy in (("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
                           ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = ferzoo.build(sys.argv[2], num_classes=3)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model._coupled_wd = 0.01
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        hist = model.fit(ds, epochs=1, verbose=0, shuffle=False)
        out[name] = {"loss": float(hist.history["loss"][0]),
                     "weights": [np.asarray(w).tolist() for w in model.get_weights()]}
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.parametrize("model_name", ["toy", "toy_rule"])
def test_two_replicas_match_one_device_on_the_same_global_batch(tmp_path, model_name):
    script = tmp_path / "replicas.py"
    script.write_text(REPLICA_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(HERE), model_name], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FERZOO_LOAD_PLUGINS": ""})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT"):])
    assert out["one"]["loss"] == pytest.approx(out["two"]["loss"], rel=1e-5)
    for a, b in zip(out["one"]["weights"], out["two"]["weights"]):  # centres included (trained or rule-updated)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


# -- 2. recipes set config; no silent fallback -----------------------------------------------------------------
def test_recipe_config_applies_under_the_callers_config(registry):
    assert ferzoo.build("toy_rule", num_classes=3, recipe="synthetic").build_config["width"] == 6
    assert ferzoo.build("toy_rule", num_classes=3, recipe="synthetic", width=5).build_config["width"] == 5
    assert ferzoo.build("toy_rule", num_classes=3).build_config["width"] == 8


def test_a_data_set_without_recipe_says_which_recipe_it_uses(registry, tmp_path):
    lines = []
    train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=32, output=str(tmp_path / "r"),
          say=lines.append)
    assert any("no recipe for data set 'synthetic'" in l and "'default'" in l and "stepped" in l for l in lines)


def test_recipe_protocol_val_split_and_keep_last(registry, tmp_path):
    lines = []
    result = train("toy_rule", dataset="synthetic", epochs=3, verbose=0, limit=48, output=str(tmp_path / "r"),
                   say=lines.append)
    card = result["card"]
    assert card["metrics"]["split"] == "test" and any("validating on split 'test'" in l for l in lines)
    assert card["kept"] == "last" and card["kept_epoch"] == 3 and card["config"]["width"] == 6
    accs = result["history"]["val_accuracy"]
    assert card["metrics"]["mean_last_2_accuracy"] == pytest.approx(np.mean(accs[-2:]))
    assert any("epochs: 3" not in l for l in lines) and not any("epochs:" in l for l in lines)  # given, not printed
    assert any("batch size: 16 (recipe 'synthetic'" in l for l in lines)  # a recipe default is printed
    seconds = result["history"]["epoch_seconds"]  # each epoch's wall time is kept with its metrics
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert sum(seconds) == pytest.approx(card["train_seconds"], abs=0.2)
    assert json.loads((tmp_path / "r" / "history.json").read_text())["epoch_seconds"] == seconds


def test_each_epoch_prints_the_runs_count_once_and_its_metrics_line(registry, tmp_path, capsys):
    """The driver runs one fit call per epoch: the run's "epoch i/N" is printed, not Keras's "Epoch i/i" beside it,
    and each epoch's line still ends with the learning rate the schedule set."""
    lines = []
    train("toy_rule", dataset="synthetic", epochs=3, verbose=2, limit=32, output=str(tmp_path / "r"),
          say=lines.append)
    out = capsys.readouterr().out
    assert [l for l in lines if l.startswith("epoch ")] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "Epoch " not in out
    metric_lines = [l for l in out.splitlines() if "val_accuracy" in l]
    assert len(metric_lines) == 3 and all("learning_rate" in l for l in metric_lines)


def test_reduce_on_plateau_reloads_the_best_weights(registry, tmp_path):
    lines = []
    result = train("toy_rule", dataset="synthetic", recipe="plateau", epochs=4, verbose=0, limit=32,
                   output=str(tmp_path / "r"), say=lines.append, val_split="val")
    # min_delta 1e9: no epoch after the first counts as an improvement; patience 0 halves the rate each time
    np.testing.assert_allclose(result["history"]["learning_rate"], [0.05, 0.05, 0.025, 0.0125], rtol=1e-6)
    assert sum("on a plateau; learning rate x0.5, best weights (epoch 1) reloaded" in l for l in lines) == 3


def test_resize_then_crop_semantics():
    from ferzoo.data import resize_then_crop

    img = np.arange(100, dtype=np.float32).reshape(10, 10, 1)
    centre = resize_then_crop((6, 6, 1), (10, 10), "center")(img).numpy()[..., 0]
    np.testing.assert_array_equal(centre, img[2:8, 2:8, 0])
    crops = {tuple(resize_then_crop((6, 6, 1), (10, 10), "random")(img).numpy()[0, :, 0].tolist()) for _ in range(20)}
    assert len(crops) > 1 and all(len(c) == 6 for c in crops)
    with pytest.raises(ValueError, match="smaller than the input"):
        resize_then_crop((12, 12, 1), (10, 10))


def test_load_size_recipe_trains_on_crops_and_predicts_with_the_centre_crop(registry, tmp_path):
    result = train("toy_rule", dataset="synthetic", recipe="cropped", epochs=1, batch_size=16, verbose=0, limit=32,
                   output=str(tmp_path / "r"))
    assert result["card"]["eval_crop"] == [20, 20]
    model = ferzoo.load("toy_rule", weights=result["weights"])
    assert model.eval_crop == [20, 20]
    photo = np.random.default_rng(0).uniform(0, 255, (40, 40)).astype(np.float32)
    assert model.preprocess(photo).shape == (1, 16, 16, 1)


def test_bad_recipe_protocol_is_named(registry):
    from ferzoo.recipes import resolve_recipe

    with pytest.raises(ValueError, match="protocol keep must be 'best' or 'last'"):
        resolve_recipe({"default": {"protocol": {"keep": "middle"}}})
    with pytest.raises(ValueError, match="unknown recipe protocol keys \\['kep'\\]"):
        resolve_recipe({"default": {"protocol": {"kep": "last"}}})
    with pytest.raises(ValueError, match="load_size must be \\[height, width\\]"):
        resolve_recipe({"default": {"load_size": [154]}})


# -- numeric options -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "toy", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["train", "toy", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["train", "toy", "--batch-size", "-1"], "argument --batch-size: must be an integer >= 1, got -1"),
    (["train", "toy", "--limit", "x"], "argument --limit: must be an integer >= 1, got 'x'"),
])
def test_numeric_options_are_checked(argv, message, capsys):
    from ferzoo.cli import main

    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_train_function_checks_numbers_too(registry):
    for kwargs, message in (({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
                            ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1")):
        with pytest.raises(ValueError, match=message):
            train("toy", dataset="synthetic", verbose=0, **kwargs)


# -- local tags never shadow shipped ones ---------------------------------------------------------------------
def test_local_run_of_a_shipped_tag_is_stored_under_its_own_tag(monkeypatch):
    from ferzoo import train as T

    tag, note = T.default_tag("deep_emotion", "fer2013")
    assert tag == "fer2013-local" and "shipped" in note
    assert T.default_tag("deep_emotion", "jaffe") == ("jaffe", None)
    with pytest.raises(ValueError, match="--tag 'fer2013'.*shipped weights"):
        train("deep_emotion", dataset="synthetic", tag="fer2013", epochs=1, verbose=0)


# -- 6. fine-tuning ------------------------------------------------------------------------------------------
def test_init_from_transfers_matching_layers_and_lists_the_rest(registry, tmp_path):
    src = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=32, output=str(tmp_path / "a"))
    lines = []
    result = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=32, output=str(tmp_path / "b"),
                   init_from=src["weights"], dataset_options={"num_classes": 5}, say=lines.append)
    info = result["card"]["init_from"]
    assert "conv1" in info["transferred"] and "fc" in info["not_transferred"]
    assert any("not transferred: " in l and "fc (" in l for l in lines)
    target = ferzoo.build("toy", num_classes=7)
    report = transfer_weights(src["model"], target)
    np.testing.assert_array_equal(target.get_layer("conv1").get_weights()[0], src["model"].get_layer("conv1").get_weights()[0])
    assert report["not_transferred"] == {}


# -- resume ------------------------------------------------------------------------------------------------------
RESUME_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import keras, ferzoo
    from toy_plugin import ToyPlugin
    ferzoo.register_plugin(ToyPlugin(), name="toy_plugin")
    from ferzoo.train import train

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(float(sys.argv[4]))

    import ferzoo.model as M
    original = M.FERModel.fit
    def fit(self, *a, callbacks=None, **k):
        return original(self, *a, callbacks=list(callbacks or []) + [Slow()], **k)
    M.FERModel.fit = fit
    train("toy_rule", dataset="synthetic", recipe="plateau", epochs=int(sys.argv[3]), batch_size=16, verbose=0,
          output=sys.argv[2], val_split="val", resume=len(sys.argv) > 5,
          say=lambda line: print("SAY", line, flush=True))
    print("DONE", flush=True)
""")


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "FERZOO_LOAD_PLUGINS": "datasets"}
    proc = subprocess.Popen([sys.executable, str(script), str(HERE), str(out), "4", "0.05"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pointer = out / "checkpoint" / "latest.json"
    deadline = time.time() + 240
    while time.time() < deadline and not (pointer.exists() and json.loads(pointer.read_text())["epoch"] >= 2):
        time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.3)  # mid-epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(pointer.read_text())
    assert 2 <= state["epoch"] < 4
    assert not (out / "toy_rule.weights.h5").exists()
    saved = np.load(out / "checkpoint" / state["folder"] / "optimizer.npz")
    assert len(saved.files) > 0
    # a new run into the same folder refuses to overwrite the checkpoint
    fresh = subprocess.run([sys.executable, str(script), str(HERE), str(out), "4", "0"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert "holds the checkpoint of an unfinished run" in fresh.stdout + fresh.stderr
    done = subprocess.run([sys.executable, str(script), str(HERE), str(out), "4", "0", "resume"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert "DONE" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming from epoch {state['epoch']} of 4" in done.stdout
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 4  # the epochs before the kill are kept, the rest were run once
    assert history["learning_rate"][: state["epoch"]] == state["history"]["learning_rate"]
    assert history["epoch_seconds"][: state["epoch"]] == state["history"]["epoch_seconds"]  # kept across the kill
    assert len(history["epoch_seconds"]) == 4
    card = W.read_card(out / "toy_rule.weights.h5")
    assert card["epochs_run"] == 4 and not (out / "checkpoint").exists()


def test_checkpoint_restores_optimizer_centres_and_data_order(registry, tmp_path):
    """Continuing from a checkpoint gives the weights an uninterrupted run gives (same data order per epoch)."""
    a = train("toy_rule", dataset="synthetic", recipe="plateau", epochs=2, batch_size=16, verbose=0, limit=48,
              output=str(tmp_path / "a"), val_split="val")
    from ferzoo import train as T

    original = T._Run.clear
    T._Run.clear = lambda self: None  # keep the checkpoint of a 1-epoch run to continue it
    try:
        T.train("toy_rule", dataset="synthetic", recipe="plateau", epochs=1, batch_size=16, verbose=0, limit=48,
                output=str(tmp_path / "b"), val_split="val")
    finally:
        T._Run.clear = original
    b = T.train("toy_rule", dataset="synthetic", recipe="plateau", epochs=2, verbose=0, limit=48,
                output=str(tmp_path / "b"), val_split="val", resume=True)
    for wa, wb in zip(a["model"].get_weights(), b["model"].get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_centres(a["model"]), _centres(b["model"]), rtol=1e-4, atol=1e-5)


def _kept_one_epoch_checkpoint(tmp_path, monkeypatch, **options):
    """Train the toy model 1 epoch into ``tmp_path / "r"`` and keep its checkpoint (a finished run clears it):
    the trained model and the checkpoint's epoch folder."""
    from ferzoo import train as T

    monkeypatch.setattr(T._Run, "clear", lambda self: None)
    first = T.train("toy", dataset="synthetic", epochs=1, batch_size=16, verbose=0, limit=32,
                    output=str(tmp_path / "r"), val_split="val", **options)
    monkeypatch.undo()
    pointer = json.loads((tmp_path / "r" / "checkpoint" / "latest.json").read_text())
    return first["model"], tmp_path / "r" / "checkpoint" / pointer["folder"]


def test_resuming_an_adam_run_loads_its_optimizer_without_a_warning(registry, tmp_path, monkeypatch):
    """Adam has slot variables: the optimizer is built before the checkpoint's weights file loads, so Keras does
    not print "Skipping variable loading for optimizer" (the state is restored either way)."""
    from ferzoo import train as T

    _kept_one_epoch_checkpoint(tmp_path, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = T.train("toy", dataset="synthetic", epochs=2, batch_size=16, verbose=0, limit=32,
                      output=str(tmp_path / "r"), val_split="val", resume=True)
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    assert int(out["model"].optimizer.iterations.numpy()) == 4  # 2 epochs x 2 batches: the count was restored


# -- --epochs and a cosine schedule -------------------------------------------------------------------------------
def test_a_cosine_schedule_spanning_the_recipe_follows_epochs(registry, tmp_path):
    """The toy 'cosine' recipe anneals 0.01 -> 0.001 over its 4 epochs; --epochs 2 anneals over 2 (ending at
    min_lr's side of the curve, not half-way down it), says so, and the card records the schedule it ran."""
    lines = []
    out = train("toy", dataset="synthetic", recipe="cosine", epochs=2, batch_size=16, verbose=0, limit=32,
                output=str(tmp_path / "r"), val_split="val", say=lines.append)
    assert out["history"]["learning_rate"] == pytest.approx([0.01, 0.0055])  # 0.001 + 0.5 * 0.009 * (1 + cos(pi/2))
    assert out["card"]["recipe"]["schedule"]["epochs"] == 2
    assert any("cosine over 2 epochs" in line and "--epochs" in line for line in lines), lines


def test_resuming_a_cosine_run_with_other_epochs_is_refused_before_training(registry, tmp_path, monkeypatch):
    from ferzoo import train as T

    _kept_one_epoch_checkpoint(tmp_path, monkeypatch, recipe="cosine")
    for other in (3, 4):  # 4: the recipe's own length is another length too
        with pytest.raises(ValueError, match=rf"--epochs {other}: the checkpoint's run has 1 epochs"):
            T.train("toy", dataset="synthetic", recipe="cosine", epochs=other, verbose=0, limit=32,
                    output=str(tmp_path / "r"), val_split="val", resume=True)
    lines = []  # without --epochs, the run ends at the checkpoint's length
    out = T.train("toy", dataset="synthetic", recipe="cosine", verbose=0, limit=32, output=str(tmp_path / "r"),
                  val_split="val", resume=True, say=lines.append)
    assert len(out["history"]["loss"]) == 1 and "epochs: 1 (the checkpoint's run)" in lines


def test_a_checkpoint_keeps_the_model_and_the_optimizer_state_once_each(registry, tmp_path, monkeypatch):
    """Keras's save_weights of a compiled model also writes its optimizer's state; the checkpoint's model file holds
    the model's variables only (the optimizer's are in optimizer.npz), so Adam's moments are not stored twice."""
    model, folder = _kept_one_epoch_checkpoint(tmp_path, monkeypatch)
    assert sorted(p.name for p in folder.iterdir()) == ["best.npz", "model.npz", "optimizer.npz", "state.json"]
    with np.load(folder / "model.npz") as data:
        assert len(data.files) == len(model.weights)
        assert sum(data[k].size for k in data.files) == sum(int(np.prod(w.shape)) for w in model.weights)


def test_a_checkpoint_written_before_model_npz_still_resumes(registry, tmp_path, monkeypatch):
    """Older checkpoints hold model.weights.h5 (with the optimizer's state inside): a run started before the change
    resumes from it, without Keras's optimizer warning, and with its optimizer's step count."""
    from ferzoo import train as T

    model, folder = _kept_one_epoch_checkpoint(tmp_path, monkeypatch)
    with np.load(folder / "model.npz") as data:
        model.set_weights([data[k] for k in data.files])
    model.save_weights(str(folder / "model.weights.h5"))  # compiled: the optimizer's state goes in too, as before
    (folder / "model.npz").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = T.train("toy", dataset="synthetic", epochs=2, batch_size=16, verbose=0, limit=32,
                      output=str(tmp_path / "r"), val_split="val", resume=True)
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    assert int(out["model"].optimizer.iterations.numpy()) == 4


# -- weights and card: one atomic unit ---------------------------------------------------------------------
def test_interrupted_save_leaves_a_consistent_pair(registry, tmp_path, monkeypatch):
    model = ferzoo.build("toy", num_classes=3)
    path = W.save(model, tmp_path / "toy.weights.h5", dataset="first")
    other = ferzoo.build("toy", num_classes=4)

    def killed(*a, **k):
        raise KeyboardInterrupt  # the process dies after the weights file was renamed, before the JSON card

    monkeypatch.setattr(W, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        W.save(other, path, dataset="second")
    monkeypatch.undo()
    card = W.read_card(path)
    assert card["dataset"] == "second" and card["num_classes"] == 4
    assert ferzoo.load("toy", weights=path).num_classes == 4


# -- 5. backbone init files never reach a card ----------------------------------------------------------------
@pytest.mark.torch
def test_trained_model_loads_without_its_backbone_file(tmp_path):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(HERE.parent / "plugins" / "dan"))
    from dan_torch_reference import ResNet18

    from ferzoo.backbones.pretrained import backbone_dir, convert_resnet18

    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": ResNet18().state_dict()}, path)
    out = convert_resnet18(path, tag="msceleb")
    assert out.parent == backbone_dir("resnet18", "msceleb")
    model = ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3), backbone_weights="msceleb")
    saved = W.save(model, tmp_path / "dan" / "dan.weights.h5")
    assert "backbone_weights" not in W.read_card(saved)["config"]
    out.unlink()
    again = ferzoo.load("dan", weights=saved)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# -- model.predict takes what the README shows -------------------------------------------------------------------
def test_predict_accepts_a_raw_photo(registry):
    model = ferzoo.build("toy", num_classes=3)
    photo = np.random.default_rng(0).uniform(0, 255, (37, 53, 3)).astype(np.uint8)
    probs = model.predict(photo, verbose=0)
    assert probs.shape == (1, 3) and np.allclose(probs.sum(), 1, atol=1e-5)
    assert model.predict([photo, photo[:20]], verbose=0).shape == (2, 3)


# -- mixed precision choices and the reader-level shuffle of the train split ------------------------------------

def test_mixed_precision_choices_are_named_and_auto_is_printed():
    from ferzoo.train import precision_policy

    assert precision_policy(None) == precision_policy(False) == precision_policy("float32") == "float32"
    assert precision_policy("bfloat16") == precision_policy("mixed_bfloat16") == "mixed_bfloat16"
    assert precision_policy("float16") == "mixed_float16"
    lines = []
    assert precision_policy(True, lines.append) == "mixed_bfloat16"  # this machine has no GPU
    assert len(lines) == 1 and "mixed_bfloat16" in lines[0] and "no GPU" in lines[0]
    with pytest.raises(ValueError, match=r"--mixed-precision: 'half' is not one of auto, bfloat16, float16"):
        precision_policy("half")


def test_bfloat16_training_records_the_policy_and_restores_the_global_one(registry, tmp_path):
    before = keras.mixed_precision.global_policy().name
    out = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=64, val_split="none",
                mixed_precision="bfloat16", output=str(tmp_path / "bf16"), say=lambda _l: None)
    assert out["card"]["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before
    reloaded = ferzoo.load("toy", weights=out["weights"])  # float32 inference from bfloat16-trained weights
    x = np.random.default_rng(0).uniform(0, 255, (2, *reloaded.input_shape_hwc)).astype("float32")
    assert np.all(np.isfinite(reloaded.predict(x, verbose=0)))


def _class_sorted_fer2013(root: Path, per_class: int) -> None:
    from fakes import pattern, save  # tests/datasets/fakes.py: fake data sets in the real layouts

    for c, folder in enumerate(["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]):
        for i in range(per_class):
            save(root / "train" / folder / f"{i:04d}.png", pattern(c, seed=i))


def test_the_train_split_is_read_in_shuffled_file_order(tmp_path):
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))
    from ferzoo.train import _shuffled_train_split

    _class_sorted_fer2013(tmp_path, per_class=6)
    in_order = [int(y) for _, y in ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train")]
    changes = lambda seq: sum(a != b for a, b in zip(seq, seq[1:]))  # noqa: E731
    assert changes(in_order) == 6  # the reader lists the class folders one after the other
    ds, shuffled = _shuffled_train_split("fer2013", str(tmp_path), {}, seed=3)
    labels = [int(y) for _, y in ds]
    assert shuffled and sorted(labels) == sorted(in_order) and changes(labels) > 20
    # every class shows up in the first third of the epoch (a class-ordered read would show two or three)
    assert len(set(labels[:14])) >= 5


def test_a_reader_without_shuffle_is_reported_when_the_buffer_is_too_small(registry, tmp_path, monkeypatch):
    import ferzoo.train as T

    monkeypatch.setattr(T, "SHUFFLE_BUFFER", 16)
    lines = []
    train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=64, val_split="none",
          output=str(tmp_path / "r"), say=lines.append)
    assert any("takes no shuffle option" in l and "64 train examples" in l and "16-image" in l for l in lines)


# -- test-time flip averaging -----------------------------------------------------------------------------------

def test_flip_tta_averages_the_image_and_its_mirror(registry):
    model = ferzoo.build("toy_rule", num_classes=7)
    x = np.random.default_rng(1).uniform(0, 255, (3, *model.input_shape_hwc)).astype("float32")
    plain = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the toy model is not mirror-symmetric
    model.tta = "flip"
    np.testing.assert_allclose(model.predict(x, verbose=0), (plain + mirrored) / 2, atol=1e-5)
    model.tta = "none"
    np.testing.assert_allclose(model.predict(x, verbose=0), plain, atol=1e-6)
    with pytest.raises(ValueError, match=r"tta must be one of none, flip, tencrop; got 'fivecrop'"):
        model.tta = "fivecrop"


def test_tencrop_tta_averages_the_ten_crops_of_the_enlarged_image(registry):
    import tensorflow as tf

    model = ferzoo.build("toy_rule", num_classes=7)
    h, w, c = model.input_shape_hwc
    x = np.random.default_rng(2).uniform(0, 255, (3, h, w, c)).astype("float32")
    big = tf.image.resize(x, (round(h * 13 / 12), round(w * 13 / 12))).numpy()
    H, W = big.shape[1:3]
    crops = [big[:, oy:oy + h, ox:ox + w] for oy, ox in
             [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]]
    crops += [cr[:, :, ::-1] for cr in crops]
    expected = np.mean([model.predict(cr, verbose=0) for cr in crops], axis=0)
    assert not np.allclose(expected, model.predict(x, verbose=0), atol=1e-4)
    model.tta = "tencrop"
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)
    one_by_one = np.concatenate([model.predict(x[i:i + 1], verbose=0) for i in range(3)])
    np.testing.assert_allclose(one_by_one, expected, atol=1e-5)  # no mixing across the batch
    report = model.evaluate(ferzoo.get_dataset("synthetic", split="test"), verbose=0)
    assert report["tta"] == "tencrop"


def test_recipe_tta_is_reported_beside_the_single_pass_and_travels_in_the_card(registry, tmp_path):
    out = train("toy_rule", dataset="synthetic", recipe="flipped", epochs=1, batch_size=16, verbose=0,
                val_split="test", output=str(tmp_path / "f"), say=lambda _l: None)
    metrics = out["card"]["metrics"]
    assert out["card"]["tta"] == "flip" and metrics["tta"] == "flip"
    assert 0 <= metrics["single_pass_accuracy"] <= 1
    loaded = ferzoo.load("toy_rule", weights=out["weights"])
    assert loaded.tta == "flip"
    ds = ferzoo.get_dataset("synthetic", split="test")
    flip = loaded.evaluate(ds, verbose=0)
    single = loaded.evaluate(ds, verbose=0, tta=None)
    assert flip["tta"] == "flip" and single["tta"] is None and loaded.tta == "flip"
    assert flip["accuracy"] == pytest.approx(metrics["accuracy"])
    assert single["accuracy"] == pytest.approx(metrics["single_pass_accuracy"])


def test_evaluate_cli_takes_tta_and_prints_the_cards_choice(registry, tmp_path, capsys):
    from ferzoo import cli

    out = train("toy_rule", dataset="synthetic", recipe="flipped", epochs=1, batch_size=16, verbose=0,
                val_split="test", output=str(tmp_path / "f"), say=lambda _l: None)
    assert cli.main(["evaluate", "toy_rule", "--weights", out["weights"], "--dataset", "synthetic",
                     "--split", "test", "--json"]) == 0
    captured = capsys.readouterr()
    assert "test-time augmentation 'flip' (the weights' card" in captured.err
    assert json.loads(captured.out)["tta"] == "flip"
    assert cli.main(["evaluate", "toy_rule", "--weights", out["weights"], "--dataset", "synthetic",
                     "--split", "test", "--json", "--tta", "none"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tta"] is None and "test-time augmentation" not in captured.err


def test_load_size_keeps_its_ratio_at_another_input_size(registry, tmp_path):
    lines = []
    out = train("toy_rule", dataset="synthetic", recipe="cropped", epochs=1, batch_size=16, verbose=0,
                val_split="none", input_shape=(32, 32, 1), output=str(tmp_path / "c"), say=lines.append)
    # the toy recipe crops 16 x 16 from 20 x 20; at 32 x 32 that is a crop from 40 x 40
    assert any("resizes to [20, 20] for a 16x16 input; at 32x32 it resizes to [40, 40]" in l for l in lines)
    assert out["card"]["eval_crop"] == [40, 40]


def test_a_schedule_without_its_required_key_is_an_error_that_names_it():
    from ferzoo.recipes import validate_schedule

    with pytest.raises(ValueError, match=r"model 'm': recipe schedule 'cosine' needs epochs \(got \{'type': 'cosine'"):
        validate_schedule({"type": "cosine", "min_lr": 1e-5}, "m")
    with pytest.raises(ValueError, match=r"recipe schedule 'multistep' needs milestones"):
        validate_schedule({"type": "multistep", "gamma": 0.1}, "m")
    with pytest.raises(ValueError, match=r"recipe schedule type 'linear' is not one of"):
        validate_schedule({"type": "linear"}, "m")
    validate_schedule({"type": "cosine", "epochs": 3}, "m")
    validate_schedule({"type": "constant"}, "m")
