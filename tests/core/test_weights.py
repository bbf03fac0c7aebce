"""The weight registry, cards, the local store and ``ferzoo.load`` (tags, paths, embedded files, bad input)."""

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

import ferzoo
from ferzoo import hookimpl
from ferzoo import weights as W

REPO = Path(__file__).resolve().parents[2]
LICENSE = "Apache-2.0 (tests)"
TERMS = "generated test data"


def _images(n=4, shape=(16, 16, 1), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.float32)


def _toy(num_classes=7, seed=0, **kw):
    import keras

    keras.utils.set_random_seed(seed)
    return ferzoo.build("toy", num_classes=num_classes, **kw)


def _card_fields():
    return {"dataset": "synthetic", "command": "pytest tests/core/test_weights.py",
            "metrics": {"split": "val", "accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.4,
                        "num_examples": 10}}


def _make_package(tmp_path, monkeypatch, name="fz_embedded_pkg", num_classes=7, seed=0, **kw):
    """An importable package (like an installed plugin) with a weights file inside it."""
    pkg = tmp_path / "site" / name
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = _toy(num_classes, seed, **kw)
    path = W.save(model, pkg / "weights" / "toy_demo.weights.h5", **_card_fields())
    card = W.registry_card(path, sources=[{"package": name, "path": "weights/toy_demo.weights.h5"}],
                           license=LICENSE, dataset_terms=TERMS)
    return model, path, card


class _WeightsPlugin:
    def __init__(self, entries):
        self.entries = entries

    @hookimpl
    def register_weights(self, register):
        for (model, tag), card in self.entries.items():
            register(model, tag, card)


# -- the catalogue --------------------------------------------------------------------------------------------
def test_zoo_registry_is_one_file_inside_the_package_and_matches_its_schema():
    import jsonschema

    top = REPO / "zoo_registry.json"
    assert top.exists() and os.path.samefile(top, W.registry_path())
    assert W.registry_path().parent == Path(ferzoo.__file__).resolve().parent  # shipped as package data
    schema = json.loads(W.schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads(W.registry_path().read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    assert W.zoo_registry() == data


def test_every_embedded_registry_entry_matches_its_file_and_loads_offline(registry, monkeypatch):
    """Each embedded entry of zoo_registry.json (e.g. ``deep_emotion.fer2013``): the shipped file has the
    card's sha256 and size, the card beside it agrees, and ``ferzoo.load`` works with no network."""
    monkeypatch.setenv("FERZOO_OFFLINE", "1")
    for (model, tag), card in W.entries().items():
        if card["origin"] != W.REGISTRY_FILE or model not in ferzoo.list_models():
            continue
        assert card["metrics"]["split"] and card["command"] and card["license"] and card["dataset_terms"]
        for src in card["sources"]:
            if "package" not in src:
                continue
            path = W._package_file(src)
            assert path is not None, f"{model}.{tag}: embedded file {src} is missing"
            assert W.sha256_of(path) == card["sha256"] and path.stat().st_size == card["size"]
            assert path.name == card["file"]
            side = W.read_card(path)
            assert side["class_names"] == card["class_names"] and side["model"] == model
            loaded = ferzoo.load(model, weights=tag)
            assert loaded.class_names == card["class_names"]
            h, w, c = loaded.input_shape_hwc
            probs = loaded.predict(np.random.default_rng(0).integers(0, 256, (2, h, w, c)).astype("float32"),
                                   verbose=0)
            np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
            assert W.availability(model, tag, card) == "embedded"
    assert not (W.home() / "cache").exists()


@pytest.mark.parametrize("path, value, needle", [
    (("sha256",), "abc", "sha256"),
    (("sources",), [], "sources"),
    (("sources",), [{"url": "ftp://example.invalid/x"}], "sources/0"),
    (("sources",), [{"package": "pkg", "path": "../escape.weights.h5"}], "sources/0"),
    (("metrics", "accuracy"), 1.5, "metrics/accuracy"),
    (("input_spec", "channels"), 2, "input_spec/channels"),
    (("file",), "dir/model.weights.h5", "file"),
    (("license",), None, "license"),
])
def test_schema_rejects_bad_cards(tmp_path, monkeypatch, registry, path, value, needle):
    _, _, card = _make_package(tmp_path, monkeypatch)
    data = {"format_version": 1, "models": {"toy": {"plugin": "toy_plugin", "weights": {"demo": card}}}}
    assert W.validate_registry(copy.deepcopy(data)) == data
    bad = copy.deepcopy(data)
    target = bad["models"]["toy"]["weights"]["demo"]
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(W.WeightsError) as err:
        W.validate_registry(bad, "test.json")
    assert "test.json" in str(err.value) and f"models/toy/weights/demo" in str(err.value) and needle in str(err.value)


def test_registry_rejects_a_card_filed_under_another_model(tmp_path, monkeypatch, registry):
    _, _, card = _make_package(tmp_path, monkeypatch)
    data = {"format_version": 1, "models": {"other": {"plugin": "p", "weights": {"demo": card}}}}
    with pytest.raises(W.WeightsError, match="models/other/weights/demo/model"):
        W.validate_registry(data)


# -- the local store ------------------------------------------------------------------------------------------
def test_store_tag_round_trip_and_listing(registry, capsys):
    model = _toy(5, class_names=["a", "b", "c", "d", "e"])
    W.save(model, W.store_dir("toy", "mine") / f"toy{W.WEIGHTS_SUFFIX}", **_card_fields())
    assert W.known_tags("toy") == {"mine": "local store"}
    loaded = ferzoo.load("toy", weights="mine")
    x = _images()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.class_names == ["a", "b", "c", "d", "e"]
    assert loaded.weights_card["metrics"]["accuracy"] == 0.5
    assert loaded.predict_classes(x[0], top_k=1)[0][0][0] in loaded.class_names

    from ferzoo.cli import main

    long_tag = "a-tag-longer-than-the-name-column-was"
    W.save(model, W.store_dir("toy", long_tag) / f"toy{W.WEIGHTS_SUFFIX}", **_card_fields())
    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(l for l in lines if l.startswith("toy.mine"))
    assert "local store" in line and "50.00%" in line and "training run" in line
    # the columns stay aligned whatever the longest name: each row's source starts where the header's does
    column = lines[0].index("source")
    for l in lines[1:-1]:
        assert l[column - 1] == " " and l[column] != " ", l
    assert any(l.startswith(f"toy.{long_tag} ") for l in lines)


def test_train_driver_result_loads_by_data_set_tag(registry):
    from ferzoo.train import train

    result = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=64)
    assert Path(result["weights"]) == W.store_dir("toy", "synthetic") / "toy.weights.h5"
    loaded = ferzoo.load("toy", weights="synthetic")
    x = _images()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result["model"].predict(x, verbose=0), atol=1e-6)
    assert loaded.weights_card["metrics"]["split"] == "val"


def test_path_loading_and_its_errors(tmp_path, registry):
    model = _toy(3)
    path = W.save(model, tmp_path / "w" / "toy.weights.h5", **_card_fields())
    loaded = ferzoo.load("toy", weights=path)
    x = _images()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert ferzoo.load("toy", weights=str(tmp_path / "w")).num_classes == 3  # a folder with one weights file

    with pytest.raises(FileNotFoundError, match="does not exist"):
        ferzoo.load("toy", weights=tmp_path / "missing.weights.h5")
    lone = tmp_path / "lone.weights.h5"
    lone.write_bytes(path.read_bytes())  # copied without its JSON card: the embedded card travels with it
    assert ferzoo.load("toy", weights=lone).class_names == model.class_names
    bare = tmp_path / "bare.weights.h5"
    model.save_weights(str(bare))  # a plain Keras file carries no card
    with pytest.raises(FileNotFoundError, match="no card bare.json"):
        ferzoo.load("toy", weights=bare)
    card = json.loads(W.card_path_for(path).read_text())
    card["model"] = "deep_emotion"
    W.write_json_atomic(W.card_path_for(lone), card)
    with pytest.raises(ValueError, match="for model 'deep_emotion', not 'toy'"):
        ferzoo.load("toy", weights=lone)
    with pytest.raises(W.WeightsError, match="wrong class count: asked for 7 classes, the weights have 3"):
        ferzoo.load("toy", weights=path, num_classes=7)
    with pytest.raises(W.WeightsError, match=r"input shape \(32, 32, 1\)"):
        ferzoo.load("toy", weights=path, input_shape=(32, 32, 1))


def test_unknown_tag_lists_known_tags(registry):
    W.save(_toy(), W.store_dir("toy", "alpha") / "toy.weights.h5", **_card_fields())
    with pytest.raises(W.WeightsError) as err:
        ferzoo.load("toy", weights="beta")
    msg = str(err.value)
    assert "model 'toy'" in msg and "'beta'" in msg and "known tags: ['alpha']" in msg
    assert ferzoo.load("toy").num_classes == 7  # weights=None still builds


# -- bad files ------------------------------------------------------------------------------------------------
def _store(model, tag="bad", **fields):
    path = W.save(model, W.store_dir("toy", tag) / "toy.weights.h5", **_card_fields(), **fields)
    return path, json.loads(W.card_path_for(path).read_text())


def test_hash_mismatch_is_refused(registry):
    path, _ = _store(_toy())
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(W.WeightsError) as err:
        ferzoo.load("toy", weights="bad")
    assert "sha256 mismatch" in str(err.value) and "model 'toy'" in str(err.value) and "known tags: ['bad']" in str(err.value)


def test_truncated_file_is_refused_even_when_the_card_hash_fits(registry):
    path, card = _store(_toy())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    card["sha256"] = W.sha256_of(path)  # someone re-hashed the broken file
    W.write_json_atomic(W.card_path_for(path), card)
    with pytest.raises(W.WeightsError, match=r"model 'toy', weights 'bad': cannot load toy.weights.h5.*truncated"):
        ferzoo.load("toy", weights="bad")


def test_wrong_class_count_is_named(registry):
    path, card = _store(_toy(5))
    card["class_names"] = list(ferzoo.labels.CANONICAL[:7])  # the card lies about the classes
    W.write_json_atomic(W.card_path_for(path), card)
    with pytest.raises(W.WeightsError, match="wrong class count: the file's classifier has 5 outputs, the model "
                                             "was built for 7 classes"):
        ferzoo.load("toy", weights="bad")


def test_weights_of_another_architecture_are_refused(registry):
    path, card = _store(_toy(width=16))
    card["config"] = {"width": 8, "dropout": 0.0}
    W.write_json_atomic(W.card_path_for(path), card)
    with pytest.raises(W.WeightsError, match="cannot load toy.weights.h5 into 'toy'.*shape"):
        ferzoo.load("toy", weights="bad")


# -- embedded entries through the plugin hook -----------------------------------------------------------------
def test_embedded_entry_loads_offline_from_the_package(tmp_path, monkeypatch, registry):
    model, path, card = _make_package(tmp_path, monkeypatch, num_classes=4)
    registry.register(_WeightsPlugin({("toy", "demo"): card}), name="toy_weights")
    monkeypatch.setenv("FERZOO_OFFLINE", "1")
    assert W.known_tags("toy")["demo"] == "plugin toy_weights"
    assert W.availability("toy", "demo", W.entries("toy")[("toy", "demo")]) == "embedded"
    loaded = ferzoo.load("toy", weights="demo")
    x = _images()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert loaded.class_names == list(ferzoo.labels.CANONICAL[:4])
    assert not (W.home() / "cache").exists()  # used in place, nothing copied

    # a local training result under the same tag wins (the store rule)
    W.save(_toy(4, seed=3), W.store_dir("toy", "demo") / "toy.weights.h5", **_card_fields())
    assert W.known_tags("toy")["demo"].startswith("local store (shadows plugin toy_weights)")
    assert not np.allclose(ferzoo.load("toy", weights="demo").predict(x, verbose=0), model.predict(x, verbose=0))


def test_embedded_entry_with_a_modified_file_is_refused(tmp_path, monkeypatch, registry):
    _, path, card = _make_package(tmp_path, monkeypatch)
    registry.register(_WeightsPlugin({("toy", "demo"): card}), name="toy_weights")
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(W.WeightsError) as err:
        ferzoo.load("toy", weights="demo")
    msg = str(err.value)
    assert "model 'toy', weights 'demo'" in msg and "sha256 mismatch for embedded" in msg and "known tags: ['demo']" in msg


def test_invalid_plugin_card_is_reported(tmp_path, monkeypatch, registry):
    _, _, card = _make_package(tmp_path, monkeypatch)
    del card["license"]
    registry.register(_WeightsPlugin({("toy", "demo"): card}), name="toy_weights")
    with pytest.raises(W.WeightsError, match="the card from plugin toy_weights is invalid: .*'license' is a required"):
        ferzoo.load("toy", weights="demo")


def test_missing_embedded_file_is_named(tmp_path, monkeypatch, registry):
    _, path, card = _make_package(tmp_path, monkeypatch)
    path.unlink()
    registry.register(_WeightsPlugin({("toy", "demo"): card}), name="toy_weights")
    with pytest.raises(W.WeightsError, match="embedded file 'weights/toy_demo.weights.h5' is not in package"):
        ferzoo.load("toy", weights="demo")


def test_add_command_writes_a_valid_embedded_entry(tmp_path, monkeypatch, registry):
    model, path, _ = _make_package(tmp_path, monkeypatch)
    target = tmp_path / "zoo_registry.json"
    target.write_text(W.registry_path().read_text())
    from ferzoo.cli import main

    assert main(["weights", "add", str(path), "--registry", str(target), "--tag", "demo", "--package",
                 "fz_embedded_pkg", "--license", LICENSE, "--dataset-terms", TERMS,
                 "--metrics-command", "ferzoo evaluate toy"]) == 0
    data = W.validate_registry(json.loads(target.read_text()))
    card = data["models"]["toy"]["weights"]["demo"]
    assert card["sources"] == [{"package": "fz_embedded_pkg", "path": "weights/toy_demo.weights.h5"}]
    assert card["sha256"] == W.sha256_of(path) and card["metrics"]["command"] == "ferzoo evaluate toy"
    assert "recipes" not in data["models"]["toy"]  # recipes live in the plugin only
    assert W.registry_path().read_text() != target.read_text()  # the shipped catalogue was not touched
    with pytest.raises(ValueError, match="give --package and/or --url"):
        W.add_to_registry(path, "x", license="l", dataset_terms="t", registry=target)


def test_add_warns_when_a_local_store_copy_would_shadow_the_added_file(tmp_path, monkeypatch, registry, capsys):
    """The local store is searched first: other weights there under the same name hide the file just added."""
    model, path, _ = _make_package(tmp_path, monkeypatch)
    target = tmp_path / "zoo_registry.json"
    target.write_text(W.registry_path().read_text())
    from ferzoo.cli import main

    argv = ["weights", "add", str(path), "--registry", str(target), "--tag", "demo", "--package", "fz_embedded_pkg",
            "--license", LICENSE, "--dataset-terms", TERMS]
    assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err  # nothing in the store
    shadow = W.save(ferzoo.build("toy", num_classes=3), W.store_dir("toy", "demo") / "toy.weights.h5")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"warning: the local store holds other weights under the same name ({shadow})" in err
    assert "rename that folder (e.g. to demo-run)" in err


def test_half_precision_copy_halves_the_file_and_keeps_the_predictions(registry, tmp_path):
    from ferzoo.train import train

    out = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=64, val_split="none",
                output=str(tmp_path / "full"), say=lambda _l: None)
    src = Path(out["weights"])
    dst = W.half_precision_copy(src, tmp_path / "half" / "toy.weights.h5")
    card, full_card = W.read_card(dst), W.read_card(src)
    assert card["storage_dtype"] == "float16" and full_card["storage_dtype"] == "float32"
    assert card["converted_from"] == {"file": src.name, "sha256": full_card["sha256"]}
    assert card["command"] == full_card["command"] and card["dataset"] == "synthetic"
    assert card["half_check"]["n"] == 256 and card["half_check"]["top1_agreement"] >= 0.99
    import h5py

    def arrays(path):  # dtypes and bytes of the stored arrays (a toy's file is mostly HDF5 metadata and card)
        with h5py.File(path) as fh:
            found = []
            fh.visititems(lambda _n, o: found.append((str(o.dtype), o.nbytes)) if isinstance(o, h5py.Dataset) else None)
        return {dt for dt, _ in found}, sum(n for _, n in found)

    (half_dtypes, half_bytes), (full_dtypes, full_bytes) = arrays(dst), arrays(src)
    assert half_dtypes == {"float16"} and full_dtypes == {"float32"} and 2 * half_bytes == full_bytes
    full, half = ferzoo.load("toy", weights=str(src)), ferzoo.load("toy", weights=str(dst))
    assert all(v.dtype == "float32" for v in half.weights)
    x = np.random.default_rng(0).uniform(0, 255, (8, *half.input_shape_hwc)).astype("float32")
    np.testing.assert_allclose(half.predict(x, verbose=0), full.predict(x, verbose=0), atol=5e-3)
    with pytest.raises(ValueError, match=r"--output .*toy.h5: must end in .weights.h5"):
        W.half_precision_copy(src, tmp_path / "toy.h5")


def test_set_tta_rewrites_only_the_card_and_the_weights_load_with_it(registry, tmp_path, capsys):
    from ferzoo.train import train

    out = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=64, val_split="none",
                output=str(tmp_path / "run"), say=lambda _l: None)
    path = Path(out["weights"])
    before = path.read_bytes()
    assert ferzoo.load("toy", weights=str(path)).tta is None
    from ferzoo.cli import main

    assert main(["weights", "set-tta", str(path), "--tta", "tencrop", "--note", "measured: x"]) == 0
    assert "tta 'tencrop'" in capsys.readouterr().out
    assert path.read_bytes() == before  # weights untouched, the card's sha256 still holds
    card = W.read_card(path)
    assert card["tta"] == "tencrop" and card["note"] == "measured: x" and card["sha256"] == W.sha256_of(path)
    assert ferzoo.load("toy", weights=str(path)).tta == "tencrop"
    W.set_card_tta(path, None)
    assert ferzoo.load("toy", weights=str(path)).tta is None and W.read_card(path)["note"] == "measured: x"
    with pytest.raises(ValueError, match=r"--tta: must be one of none, flip, tencrop; got 'rot90'"):
        W.set_card_tta(path, "rot90")
    path.write_bytes(before[:-8] + b"12345678")  # the file no longer matches its card
    with pytest.raises(ValueError, match="sha256 does not match its card; not rewriting"):
        W.set_card_tta(path, "flip")
    assert W.read_card(path)["tta"] is None


def test_every_shipped_card_states_its_training_data_sets_framing():
    """What ``ferzoo predict`` tells a user the weights were trained on, and the crop rule it cuts photos by, are
    the training data set's (``ferzoo train`` / ``weights pack`` write them), not the model's paper's faces."""
    from ferzoo.faces import crop_for_card, dataset_framing

    shipped = [(key, card) for key, card in W.entries().items() if card.get("dataset") in ferzoo.list_datasets()]
    assert len(shipped) >= 4
    for (name, tag), card in shipped:
        framing = dataset_framing(card["dataset"])
        assert {k: card["input_spec"].get(k) for k in framing} == framing, (name, tag)
        path, _ = W.resolve(name, tag)
        assert W.read_card(path)["input_spec"] == card["input_spec"], (name, tag)  # the card beside the file says the same
        if "face_crop" in framing:
            assert crop_for_card(card)[1] is None  # the card's own rule, no stand-in note


def test_a_trained_models_weights_file_keeps_no_optimizer_state(registry, tmp_path):
    """A compiled model's ``save_weights`` also writes its optimizer's state (Adam: twice the model); the run's
    weights file (and every storage made from it) holds the model only, and loads to the same outputs."""
    import h5py

    from ferzoo.train import train

    result = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, limit=64,
                   output=str(tmp_path / "run"))
    trained = result["model"]
    assert trained.optimizer is not None and len(trained.optimizer.variables) > 0  # there was state to drop
    for storage in W.STORAGE_DTYPES:
        path = W.save(trained, tmp_path / storage / f"toy{W.WEIGHTS_SUFFIX}", storage_dtype=storage)
        with h5py.File(path, "r") as fh:
            names = []
            fh.visit(names.append)
        assert names and not any(n == "optimizer" or n.startswith("optimizer/") for n in names), storage
    with h5py.File(result["weights"], "r") as fh:
        assert "optimizer" not in fh and "layers" in fh
    loaded = ferzoo.load("toy", weights=result["weights"])
    x = _images()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trained.predict(x, verbose=0), atol=1e-6)


def test_every_packed_card_follows_the_int8_rule_it_states():
    """``ferzoo weights pack``'s decision, as each shipped card records it: int8 per channel where the accuracy
    under the packing protocol dropped by less than the limit, else float16, with both measurements kept, and the
    file stored as chosen."""
    import re

    packed = [(key, card) for key, card in W.entries().items() if card.get("packing")]
    assert len(packed) >= 4
    for key, card in packed:
        packing = card["packing"]
        protocol, accuracy = packing["protocol"], packing["accuracy"]
        assert {"float32", W.INT8} <= set(accuracy), key
        drop = 100 * (accuracy["float32"][protocol] - accuracy[W.INT8][protocol])
        assert packing["int8_drop_points"] == pytest.approx(drop, abs=1e-3), key
        limit = float(re.search(r"by less than ([0-9.]+) points", packing["rule"]).group(1))
        assert packing["chosen"] == (W.INT8 if drop < limit else "float16") == card["storage_dtype"], key
        assert card["storage_dtype"] in accuracy, key  # the shipped storage was measured too
        assert W.storage_of(W.resolve(*key)[0]) == card["storage_dtype"], key


def test_tracked_files_stay_under_96_mib():
    """Every clone and every wheel carries the repository's files (the shipped weights above all)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    files = [root / name for name in listed.decode().split("\0") if name]
    total = sum(f.stat().st_size for f in files if f.is_file())
    assert len(files) > 100 and total < 96 * 2**20, total
