"""``ferzoo benchmark``: the leaderboard over (model, tag), cross-data-set class matching, failing rows."""

import csv

import numpy as np
import pytest

import ferzoo
from ferzoo import benchmark as B
from ferzoo import weights as W
from ferzoo.cli import main

NO_DISGUST = ["angry", "fear", "happy", "sad", "surprise", "neutral"]
OPTIONS = {"size": 16, "per_class": 5}


def _store(tag, seed=0, disgust_bias=None, storage="float32"):
    """A toy model's weights in the local store (FERZOO_HOME is a fresh folder per test)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = ferzoo.build("toy", num_classes=7)
    if disgust_bias is not None:  # a model that answers "disgust" for every face
        fc = model.get_layer("fc")
        kernel, bias = fc.get_weights()
        bias[ferzoo.build("toy").class_names.index("disgust")] = disgust_bias
        fc.set_weights([kernel, bias])
    path = W.save(model, W.store_dir("toy", tag) / f"toy{W.WEIGHTS_SUFFIX}", dataset="synthetic",
                  command="pytest", storage_dtype=storage)
    return model, path


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_benchmark_rows_and_a_failing_model(tmp_path, registry, capsys, monkeypatch):
    _, good = _store("synthetic", storage=W.INT8)
    _, broken = _store("broken", seed=1)
    broken.write_bytes(b"\0" * 64)  # the card stays: loading fails on the sha256 check
    out = tmp_path / "bench"
    monkeypatch.setattr("sys.argv", ["ferzoo", "benchmark", "toy.broken", "toy.synthetic"])
    rc = main(["benchmark", "toy.broken", "toy.synthetic", "--dataset", "synthetic", "--dataset-option", "size=16",
               "per_class=5", "--output", str(out), "--latency-runs", "3"])
    assert rc == 1  # one row failed; the other was still measured
    captured = capsys.readouterr()
    assert "toy.broken: failed: WeightsError" in captured.err and str(out / "results.csv") in captured.err
    rows = _rows(out / "results.csv")
    assert list(rows[0]) == list(B.COLUMNS) and [r["tag"] for r in rows] == ["broken", "synthetic"]
    bad, row = rows
    assert "sha256 mismatch" in bad["error"] and bad["accuracy"] == ""
    assert row["error"] == "" and row["examples"] == "35" and row["dropped_classes"] == ""
    assert row["params"] == "3039"  # conv 80 + conv 584 + dense 2312 + dense 63
    # MACs: conv1 14*14*8 outputs x 9, conv2 12*12*8 x 72, dense 288*8, dense 8*7
    assert row["macs"] == str(14 * 14 * 8 * 9 + 12 * 12 * 8 * 72 + 288 * 8 + 8 * 7)
    assert float(row["latency_ms"]) > 0 and row["storage"] == W.INT8 and row["tta"] == "none"
    assert row["sha256"] == W.sha256_of(good) and row["command"].startswith("ferzoo benchmark")
    # the accuracy is the int8 file's own, recomputed here
    model = ferzoo.load("toy", weights="synthetic")
    ds = ferzoo.get_dataset("synthetic", split="val", **OPTIONS)
    assert float(row["accuracy"]) == pytest.approx(model.evaluate(ds, verbose=0)["accuracy"], abs=1e-6)
    md = (out / "results.md").read_text()
    assert "| toy.synthetic | 35 |" in md and "error: WeightsError" in md and md in captured.out


def test_a_fer2013_style_model_on_data_without_disgust_drops_the_class(tmp_path, registry):
    model, _ = _store("synthetic", disgust_bias=50.0)
    model.tta = "flip"
    W.save(model, W.store_dir("toy", "flipped") / f"toy{W.WEIGHTS_SUFFIX}", dataset="synthetic", command="pytest")
    lines = []
    result = B.run(["toy.synthetic", "toy.flipped"], dataset="synthetic", output=tmp_path / "b",
                   dataset_options={**OPTIONS, "num_classes": 6, "class_names": NO_DISGUST}, latency_runs=0,
                   progress=False, say=lines.append)
    plain, flipped = result["rows"]
    assert plain["dropped_classes"] == "disgust" and plain["examples"] == 30 and not plain["error"]
    assert any("toy.synthetic: classes disgust are not in synthetic: dropped" in l for l in lines)
    # what the shared-class argmax must give, computed independently
    ds = ferzoo.get_dataset("synthetic", split="val", num_classes=6, class_names=NO_DISGUST, **OPTIONS)
    x = np.stack([im for im, _ in ds.as_numpy_iterator()]).astype("float32")
    y = np.array([lab for _, lab in ds.as_numpy_iterator()])
    loaded = ferzoo.load("toy", weights="synthetic")
    probs = loaded.predict(x, verbose=0)
    assert np.all(probs.argmax(-1) == loaded.class_names.index("disgust"))  # a plain argmax is always wrong
    keep = [loaded.class_names.index(n) for n in NO_DISGUST]
    expected = np.mean(np.asarray(NO_DISGUST)[probs[:, keep].argmax(-1)] == np.asarray(NO_DISGUST)[y])
    assert plain["accuracy"] == pytest.approx(expected) and expected > 0
    assert plain["tta"] == "none" and plain["tta_accuracy"] == "" and plain["latency_ms"] == ""
    assert flipped["tta"] == "flip" and flipped["tta_accuracy"] != "" and flipped["dropped_classes"] == "disgust"
    assert "dropped classes: disgust" in result["md"].read_text()


def test_data_classes_the_model_lacks_are_not_scored(tmp_path, registry, capsys):
    _store("synthetic")
    eight = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt"]
    result = B.run(["toy"], dataset="synthetic", output=tmp_path / "b", latency_runs=0, progress=True,
                   dataset_options={**OPTIONS, "num_classes": 8, "class_names": eight}, say=lambda _l: None)
    (row,) = result["rows"]
    assert row["tag"] == "synthetic" and row["unscored_examples"] == 5 and row["examples"] == 35
    assert "benchmark: 100%" in capsys.readouterr().err  # the progress bar


def test_ensemble_row_averages_the_members_each_with_its_card(tmp_path, registry):
    _store("synthetic", seed=0)
    second, _ = _store("other", seed=3)
    second.tta = "flip"  # the ensemble's TTA column uses each member's own card
    W.save(second, W.store_dir("toy", "flipped") / f"toy{W.WEIGHTS_SUFFIX}", dataset="synthetic", command="pytest")
    result = B.run(["toy.synthetic", "toy.flipped"], dataset="synthetic", output=tmp_path / "b",
                   dataset_options=OPTIONS, latency_runs=0, progress=False, ensemble=True, say=lambda _l: None)
    first, flipped, ens = result["rows"]
    assert ens["model"] == B.ENSEMBLE and ens["tag"] == "toy.synthetic+toy.flipped" and not ens["error"]
    assert ens["params"] == 2 * 3039 and ens["tta"] == "members' cards" and ens["examples"] == 35
    # recomputed here: the mean of the two loaded models' probabilities (the second one flip-averaged)
    ds = ferzoo.get_dataset("synthetic", split="val", **OPTIONS)
    x = np.stack([im for im, _ in ds.as_numpy_iterator()]).astype("float32")
    y = np.array([lab for _, lab in ds.as_numpy_iterator()])
    a, b = ferzoo.load("toy", weights="synthetic"), ferzoo.load("toy", weights="flipped")
    pa = a.predict(x, verbose=0)
    b.tta = None
    pb_single = b.predict(x, verbose=0)
    pb_flip = (pb_single + b.predict(x[:, :, ::-1], verbose=0)) / 2
    assert ens["accuracy"] == pytest.approx(np.mean(((pa + pb_single) / 2).argmax(-1) == y))
    assert ens["tta_accuracy"] == pytest.approx(np.mean(((pa + pb_flip) / 2).argmax(-1) == y))
    assert flipped["tta_accuracy"] == pytest.approx(np.mean(pb_flip.argmax(-1) == y))
    # the recall column: one entry per class, their mean the balanced accuracy
    recall = dict(item.split(":") for item in ens["recall"].split())
    assert list(recall) == a.class_names
    assert np.mean([float(v) for v in recall.values()]) == pytest.approx(ens["balanced_accuracy"], abs=1e-4)

    def balanced(probs):  # mean per-class recall of the argmax
        hit = probs.argmax(-1) == y
        return np.mean([hit[y == c].mean() for c in np.unique(y)])

    # beside the balanced accuracy with the cards' augmentation, the one-pass one
    assert ens["balanced_accuracy_one_pass"] == pytest.approx(balanced((pa + pb_single) / 2))
    assert flipped["balanced_accuracy_one_pass"] == pytest.approx(balanced(pb_single))
    assert flipped["balanced_accuracy"] == pytest.approx(balanced(pb_flip))
    md = result["md"].read_text()
    assert "| ensemble.toy.synthetic+toy.flipped |" in md and "Recall of each class" in md
    rows = _rows(result["csv"])
    assert rows[-1]["model"] == "ensemble" and rows[0]["recall"].startswith("angry:")


def test_record_writes_the_row_into_the_card_and_the_registry_entry(tmp_path, registry, capsys, monkeypatch):
    import json

    model, path = _store("synthetic")
    W.save(model, path, dataset="synthetic", command="pytest", recipe="synthetic", ferzoo_version="test",
           metrics={"split": "val", "accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.5})
    catalogue = tmp_path / "zoo_registry.json"
    catalogue.write_text(W.registry_path().read_text())
    monkeypatch.setattr(W, "registry_path", lambda: catalogue)
    W._zoo_registry_cached.cache_clear()
    W.add_to_registry(path, "synthetic", license="test", dataset_terms="test", registry=catalogue,
                      urls=["https://example.org/toy.weights.h5"])
    argv = ["benchmark", "toy.synthetic", "--dataset", "synthetic", "--dataset-option", "size=16", "per_class=5",
            "--output", str(tmp_path / "b"), "--latency-runs", "0", "--record", "--quiet"]
    monkeypatch.setattr("sys.argv", ["ferzoo", *argv])
    rc = main(argv)
    assert rc == 0
    err = capsys.readouterr().err
    assert f"toy.synthetic: recorded in {W.card_path_for(path)}" in err and "(toy.synthetic)" in err
    (row,) = _rows(tmp_path / "b" / "results.csv")
    card = json.loads(W.card_path_for(path).read_text())
    entry = card["benchmarks"]["synthetic.val"]
    assert entry["accuracy"] == pytest.approx(float(row["accuracy"]), abs=1e-6) and entry["tta"] == "none"
    assert entry["examples"] == 35 and entry["command"].startswith("ferzoo benchmark") and len(entry["recall"]) == 7
    assert W.sha256_of(path) == card["sha256"]  # the weights file itself is untouched
    listed = json.loads(catalogue.read_text())["models"]["toy"]["weights"]["synthetic"]["benchmarks"]
    assert listed == card["benchmarks"]
    # ferzoo weights shows the recorded row, not the training run's figure
    W._zoo_registry_cached.cache_clear()
    assert main(["weights"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("toy.synthetic "))
    assert "synthetic.val" in line and f"{100 * entry['accuracy']:.2f}%" in line and "training run" not in line


def test_items_and_usage_errors_before_any_model_loads(tmp_path, registry, capsys, monkeypatch):
    _, path = _store("synthetic")
    pairs = B.parse_items([])
    assert ("toy", "synthetic") in pairs and ("daf_cnn_compact", "fer2013") in pairs  # store + embedded
    assert B.parse_items(["toy", str(path)]) == [("toy", "synthetic"), ("toy", str(path))]
    monkeypatch.setattr(W, "load_file", lambda *a, **k: pytest.fail("a model was loaded"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [(["toi"], "MODEL[.TAG]: unknown model 'toi'"), (["toy.nope"], "no weights tagged 'nope'"),
             (["deep_emotion.nope"], "known tags: ['fer2013']"),
             (["toy", "--output", str(afile)], "--output"), (["toy", "--split", "x"], "--split"),
             # under a file: refused now, not after every model was evaluated
             (["toy", "--output", str(afile / "sub")], f"--output {afile / 'sub'}: {afile} is a file, not a folder"),
             (["toy", "--dataset-option", "size"], "--dataset-option: expects KEY=VALUE, got 'size'"),
             (["toy", "--dataset", "nope"], "--dataset: unknown data set 'nope'"),
             (["toy.synthetic", "--ensemble"], "--ensemble averages two or more weights; 1 named")]
    for args, needle in cases:
        argv = ["benchmark", *args] + ([] if "--dataset" in args else ["--dataset", "synthetic"])
        assert main(argv) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error: " in err[0] and needle in err[0], (args, err)


def test_mac_count_of_the_graph_ops():
    import keras
    import tensorflow as tf

    x = keras.Input((10, 10, 4))
    y = keras.layers.Conv2D(6, 3, groups=2, use_bias=False)(x)  # 8x8x6 outputs x 3*3*2
    y = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(y)  # 6x6x12 outputs x 9
    y = keras.layers.Dense(5)(y)  # 6*6 positions x 12 x 5
    net = keras.Model(x, y)
    graph = tf.function(lambda t: net(t)).get_concrete_function(tf.TensorSpec((1, 10, 10, 4))).graph
    assert B._graph_macs(graph) == 8 * 8 * 6 * 18 + 6 * 6 * 12 * 9 + 36 * 12 * 5
    a = tf.TensorSpec((1, 3, 4))
    graph = tf.function(lambda p, q: tf.einsum("bij,bjk->bik", p, q)).get_concrete_function(
        a, tf.TensorSpec((1, 4, 5))).graph
    assert B._graph_macs(graph) == 3 * 4 * 5


def test_median_seconds_is_the_median_of_the_timed_calls_after_the_warm_up(monkeypatch):
    calls, clock = [], iter([0.0, 1.0, 10.0, 13.0, 20.0, 20.5])  # timed calls of 1, 3 and 0.5 s
    monkeypatch.setattr(B.time, "perf_counter", lambda: next(clock))
    assert B.median_seconds(lambda: calls.append(1), runs=3, warmup=2) == 1.0
    assert len(calls) == 5  # two untimed, three timed
