"""Weights storage formats (int8 per output channel, float16) and the ``ferzoo weights ...`` subcommands."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import ferzoo
from ferzoo import weights as W
from ferzoo.cli import main


def _toy(seed=0, **kw):
    import keras

    keras.utils.set_random_seed(seed)
    return ferzoo.build("toy", num_classes=7, **kw)


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as fh:
        fh.visititems(lambda n, o: out.__setitem__(n, (o.dtype, o.shape)) if isinstance(o, h5py.Dataset) else None)
    return out


def _kernels(model):
    return {v.path: np.asarray(v) for v in model.weights if len(v.shape) >= 2}


# -- the int8 format ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3, 4, 16), (300, 7), (5, 1, 2, 3, 9)])
def test_quantize_round_trip_is_within_half_a_scale_per_element(shape):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0, shape[-1])).astype(np.float32)
    w[..., 0] = 0.0  # a channel of zeros
    w.reshape(-1, shape[-1])[0, 1] = 40.0  # an outlier sets channel 1's scale
    q, scale = W.quantize_per_channel(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.dtype == np.float32 and scale.shape == (shape[-1],)
    assert np.abs(q.astype(int)).max() <= 127
    assert scale[0] == 0 and np.all(q[..., 0] == 0)
    np.testing.assert_allclose(scale[1:], np.abs(w).reshape(-1, shape[-1]).max(0)[1:] / 127, rtol=1e-6)
    back = W.dequantize_per_channel(q, scale)
    assert back.dtype == np.float32
    err = np.abs(back.astype(np.float64) - w)
    assert np.all(err <= scale.astype(np.float64) / 2 * (1 + 1e-5) + 1e-12)
    assert err[..., 1:].max() > 0.1 * scale[1:].min()  # really quantized, not stored exactly
    peaks = np.abs(q.reshape(-1, shape[-1])).max(0)
    assert np.all(peaks[1:] == 127)  # each channel's largest weight uses the full range


def test_int8_file_layout_and_a_model_loaded_from_it(tmp_path, registry):
    import keras

    model = ferzoo.build("deep_emotion")  # 76,777 parameters, mostly in two dense kernels
    full = W.save(model, tmp_path / "full" / "deep_emotion.weights.h5", dataset="synthetic")
    small = W.save(model, tmp_path / "q" / "deep_emotion.weights.h5", dataset="synthetic", storage_dtype=W.INT8)
    card = W.read_card(small)
    assert card["storage_dtype"] == W.INT8 and W.read_card(full)["storage_dtype"] == "float32"
    assert W.storage_of(small) == W.INT8 and W.storage_of(full) == "float32"
    assert small.stat().st_size < 0.35 * full.stat().st_size
    layout = _datasets(small)
    quantized = {n[len(W.INT8_GROUP) + 1:-2] for n in layout if n.endswith("/q")}
    originals = _datasets(full)
    assert quantized == {n for n, (dt, shape) in originals.items() if len(shape) >= 2}
    for name in quantized:
        assert layout[f"{W.INT8_GROUP}/{name}/q"] == (np.dtype("int8"), originals[name][1])
        assert layout[f"{W.INT8_GROUP}/{name}/scale"] == (np.dtype("float32"), originals[name][1][-1:])
        assert name not in layout  # moved out of Keras' layout
    vectors = [n for n, (_dt, shape) in originals.items() if len(shape) == 1]
    assert vectors and all(layout[n] == (np.dtype("float32"), originals[n][1]) for n in vectors)

    loaded = ferzoo.load("deep_emotion", weights=str(small))
    assert all(v.dtype == "float32" for v in loaded.weights)
    before, after = _kernels(model), _kernels(loaded)
    with h5py.File(small) as fh:
        for name in quantized:
            scale = fh[f"{W.INT8_GROUP}/{name}/scale"][()]
            match = [p for p in before if before[p].shape == fh[f"{W.INT8_GROUP}/{name}/q"].shape]
            assert any(np.all(np.abs(after[p] - before[p]) <= scale / 2 * (1 + 1e-5) + 1e-12) for p in match)
    x = np.random.default_rng(0).uniform(0, 255, (32, 48, 48, 1)).astype("float32")

    def logits(m):
        return np.asarray(m.output_model("logits")({"image": x}))

    l_full, l_int8 = logits(model), logits(loaded)
    spread = l_full.std()
    assert np.abs(l_full - l_int8).max() < 0.15 * spread  # the untrained net's logits are small: compare relatively
    assert np.mean(l_full.argmax(-1) == l_int8.argmax(-1)) >= 0.9
    # Keras alone refuses the file instead of loading int8 codes as weights
    with pytest.raises(Exception):
        ferzoo.build("deep_emotion").load_weights(str(small))
    # another float32 model really differs: the comparison above is not vacuous
    keras.utils.set_random_seed(7)
    assert np.abs(logits(ferzoo.build("deep_emotion")) - l_full).max() > 1.0 * spread


def test_damaged_or_mismatched_int8_files_are_errors_naming_the_file(tmp_path, registry):
    path = W.save(_toy(), tmp_path / "toy.weights.h5", dataset="synthetic", storage_dtype=W.INT8)
    good = path.read_bytes()
    name = f"{W.INT8_GROUP}/layers/conv2d_1/vars/0/scale"
    with h5py.File(path, "a") as fh:  # a scale of the wrong length
        del fh[name]
        fh[name] = np.ones(5, np.float32)
    with pytest.raises(W.WeightsError) as err:
        W.load_file(None, path, verify=False)
    msg = str(err.value)
    assert str(path) in msg and "conv2d_1/vars/0" in msg and "expected (8,)" in msg
    with pytest.raises(W.WeightsError, match="sha256 mismatch"):  # with the card's check: caught first
        W.load_file(None, path)
    with h5py.File(path, "a") as fh:  # the scale missing
        del fh[name]
    with pytest.raises(W.WeightsError, match=r"toy\.weights\.h5.*has no scale dataset"):
        W.load_file(None, path, verify=False)
    path.write_bytes(b"not an HDF5 file at all" * 10)
    with pytest.raises(W.WeightsError, match=r"cannot load toy\.weights\.h5 into 'toy'"):
        W.load_file(None, path, verify=False)
    path.write_bytes(good)  # intact, but for another width of the network
    with pytest.raises(W.WeightsError) as err:
        W.load_file(None, path, width=6)
    assert "toy.weights.h5" in str(err.value) and "cannot load" in str(err.value)
    assert W.load_file(None, path).count_params() > 0  # the intact file loads


# -- ferzoo weights ... ------------------------------------------------------------------------------------------
def _trained_run(tmp_path):
    from ferzoo.train import train

    out = train("toy", dataset="synthetic", epochs=2, batch_size=16, verbose=0, val_split="none",
                output=str(tmp_path / "run"), say=lambda _l: None, input_shape=(16, 16, 1))
    return Path(out["weights"])


def test_weights_pack_measures_and_ships_the_measured_file(tmp_path, registry, capsys, monkeypatch):
    run = _trained_run(tmp_path)
    into = tmp_path / "plugin" / "weights"
    monkeypatch.setattr("sys.argv", ["ferzoo", "weights", "pack", str(run), "--dataset", "synthetic"])
    assert main(["weights", "pack", str(run), "--model", "toy", "--dataset", "synthetic", "--dataset-option",
                 "size=16", "per_class=6", "--into", str(into), "--tag", "synth"]) == 0
    out = into / "toy_synth.weights.h5"
    assert str(out) in capsys.readouterr().out
    card = W.read_card(out)
    packing = card["packing"]
    f32 = packing["accuracy"]["float32"]
    i8 = packing["accuracy"][W.INT8]
    assert set(f32) == set(i8) == {"single", "flip", "tencrop"}
    drop = 100 * (f32["single"] - i8["single"])
    assert packing["protocol"] == "single" and packing["int8_drop_points"] == pytest.approx(drop, abs=1e-3)
    assert card["storage_dtype"] == packing["chosen"] == (W.INT8 if drop < 0.3 else "float16")
    assert W.storage_of(out) == card["storage_dtype"]
    assert card["sha256"] == W.sha256_of(out) and card["size"] == out.stat().st_size
    assert packing["sizes"]["float32"] == run.stat().st_size and set(packing["protocols"]) == set(f32)
    assert card["converted_from"] == {"file": run.name, "sha256": W.sha256_of(run)}
    assert card["metrics"]["command"].startswith("ferzoo weights pack") and card["metrics"]["split"] == "val"
    assert card["command"] == W.read_card(run)["command"]  # the training command stays
    # the card's metrics are a measurement of the shipped file itself
    model = ferzoo.load("toy", weights=str(out))
    ds = ferzoo.get_dataset("synthetic", split="val", size=16, per_class=6)
    report = model.evaluate(ds, verbose=0, tta="tencrop")
    assert card["metrics"]["tencrop_accuracy"] == report["accuracy"]
    assert card["metrics"]["num_examples"] == 42
    # and the card is a valid registry entry
    target = tmp_path / "zoo_registry.json"
    target.write_text(W.registry_path().read_text())
    assert main(["weights", "add", str(out), "--tag", "synth", "--url", "https://example.org/toy.weights.h5",
                 "--license", "MIT", "--dataset-terms", "generated", "--registry", str(target)]) == 0
    assert json.loads(target.read_text())["models"]["toy"]["weights"]["synth"]["storage_dtype"] == card["storage_dtype"]


def test_pack_ships_float16_when_int8_loses_too_much(tmp_path, registry):
    run = _trained_run(tmp_path)
    # a card from before the framing was written (the model's own text, the paper's faces): pack states the
    # training data set's framing instead
    stale = W.read_card(run)
    stale["input_spec"]["face_alignment"] = "the paper's aligned crops"
    W.write_json_atomic(W.card_path_for(run), stale)
    out = W.pack(run, tmp_path / "ship", tag="t", dataset="synthetic", dataset_options={"size": 16, "per_class": 4},
                 max_drop=0.0, say=lambda _l: None)
    card = W.read_card(out)
    assert card["input_spec"]["face_alignment"] == "the images of the 'synthetic' data set, as its reader gives them"
    drop = card["packing"]["int8_drop_points"]
    assert card["storage_dtype"] == (W.INT8 if drop < 0 else "float16")
    if card["storage_dtype"] == "float16":
        assert set(card["packing"]["accuracy"]) == {"float32", W.INT8, "float16"}
        assert card["metrics"]["single_pass_accuracy"] == card["packing"]["accuracy"]["float16"]["single"]
        assert {dt for dt, _ in _datasets(out).values()} == {np.dtype("float16")}


def test_pack_tta_sets_the_card_and_the_protocol_the_int8_rule_is_judged_on(tmp_path, registry):
    run = _trained_run(tmp_path)
    assert W.read_card(run).get("tta") is None  # the toy run names no test-time augmentation
    out = W.pack(run, tmp_path / "ship", tag="t", dataset="synthetic", dataset_options={"size": 16, "per_class": 4},
                 tta="flip", say=lambda _l: None)
    card = W.read_card(out)
    packing = card["packing"]
    assert card["tta"] == card["metrics"]["tta"] == "flip" and packing["protocol"] == "flip"
    source = packing["accuracy"]["float32"]
    assert packing["int8_drop_points"] == pytest.approx(100 * (source["flip"] - packing["accuracy"][W.INT8]["flip"]),
                                                        abs=1e-3)
    assert card["metrics"]["accuracy"] == card["metrics"]["flip_accuracy"]
    assert ferzoo.load("toy", weights=str(out)).tta == "flip"
    # and the other way: a card's augmentation replaced by one pass
    back = W.pack(out, tmp_path / "ship2", tag="t", dataset="synthetic", dataset_options={"size": 16, "per_class": 4},
                  tta=None, say=lambda _l: None)
    assert W.read_card(back)["tta"] is None and W.read_card(back)["packing"]["protocol"] == "single"


def test_pack_usage_errors_come_before_any_model_loads(tmp_path, registry, capsys, monkeypatch):
    run = _trained_run(tmp_path)
    monkeypatch.setattr(W, "load_file", lambda *a, **k: pytest.fail("a model was loaded"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        ([str(tmp_path / "missing.weights.h5"), "--into", str(tmp_path), "--tag", "t"], "RUN_WEIGHTS"),
        ([str(run), "--into", str(afile), "--tag", "t"], "--into"),
        ([str(run), "--into", str(afile / "sub"), "--tag", "t"], f"--into {afile / 'sub'}: {afile} is a file"),
        ([str(run), "--into", str(tmp_path / "o"), "--tag", "t", "--dataset-option", "size"], "--dataset-option"),
        ([str(run), "--into", str(tmp_path / "o"), "--tag", "a/b"], "--tag"),
        ([str(run), "--into", str(tmp_path / "o"), "--tag", "t", "--model", "deep_emotion"], "--model"),
        ([str(run), "--into", str(tmp_path / "o"), "--tag", "t", "--max-drop", "-1"], "--max-drop"),
        ([str(run), "--into", str(tmp_path / "o"), "--tag", "t", "--split", "nope"], "--split"),
    ]
    for args, needle in cases:
        assert main(["weights", "pack", *args, "--dataset", "synthetic"]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error: " in err[0] and needle in err[0], (args, err)
    with pytest.raises(SystemExit) as stop:  # argparse's choices, in ferzoo's one-line form
        main(["weights", "pack", str(run), "--into", str(tmp_path / "o"), "--tag", "t", "--tta", "mirror",
              "--dataset", "synthetic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "--tta" in err[0] and "'flip'" in err[0], err
    assert not (tmp_path / "o").exists()


def test_weights_half_and_listing_through_the_cli(tmp_path, registry, capsys):
    run = _trained_run(tmp_path)
    dst = tmp_path / "half" / "toy.weights.h5"
    assert main(["weights", "half", str(run), "--output", str(dst), "--tta", "flip"]) == 0
    assert "float16 arrays" in capsys.readouterr().out
    assert W.storage_of(dst) == "float16" and W.read_card(dst)["tta"] == "flip"
    assert main(["weights", "half", str(tmp_path / "nope.weights.h5"), "--output", str(dst)]) == 2
    assert "nope.weights.h5" in capsys.readouterr().err
    assert main(["weights"]) == 0
    assert "daf_cnn_compact.fer2013" in capsys.readouterr().out
    assert not hasattr(W, "_main")  # `python -m ferzoo.weights` is gone: one command line
