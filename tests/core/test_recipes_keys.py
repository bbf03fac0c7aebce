"""Recipes never drop a key: every recipe key is known (or refused, named); ``dataset_options`` and ``init_from``
are applied by ``ferzoo train``; reduce-on-plateau drops after ``patience`` epochs; Deep-Emotion's JAFFE and CK+
splits; the authors' published weights named in a missing tag's error."""

import os
import sys

import numpy as np
import pytest

import ferzoo
from ferzoo import ModelSpec, hookimpl
from ferzoo.recipes import DEFAULT_RECIPE, INFO_KEYS, PLATEAU_KEYS, plateau_step, resolve_recipe
from ferzoo.train import resolve_job, train
from ferzoo.weights import WeightsError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "datasets"))
from fakes import face, save  # noqa: E402


# -- every key known, every table resolves ----------------------------------------------------------------------
def test_every_recipe_of_every_registered_model_resolves():
    seen = 0
    for model in ferzoo.list_models():
        table = ferzoo.model_info(model).recipe_table()
        assert "default" in table, model
        for name in table:
            rec = resolve_recipe(table, name, model)
            assert set(rec) <= set(DEFAULT_RECIPE) | set(INFO_KEYS) | {"dataset"}, (model, name)
            assert isinstance(rec["dataset_options"], dict)
            seen += 1
    assert seen >= 30  # six built-in models with several recipes each


@pytest.mark.parametrize("entry,recipe", [("default", None), ("sfew", "sfew")])
def test_an_unknown_recipe_key_is_refused_naming_it_the_model_and_the_recipe(entry, recipe):
    table = {"default": {"epochs": 3}, "sfew": {"batch_size": 8}}
    table[entry] = {**table[entry], "init_form": "fer2013"}  # a misspelt init_from must not be carried along
    with pytest.raises(ValueError) as info:
        resolve_recipe(table, recipe, "daf_cnn")
    msg = str(info.value)
    assert f"model 'daf_cnn': recipe '{entry}' has unknown key 'init_form'" in msg
    assert "known keys:" in msg and "init_from" in msg and "dataset_options" in msg and "paper_test_accuracy" in msg
    # the key resolution adds itself is not a key a recipe may carry
    with pytest.raises(ValueError, match="unknown key 'dataset'"):
        resolve_recipe({"default": {}, "x": {"dataset": "y"}}, "x")
    with pytest.raises(ValueError, match="dataset_options' must be a mapping"):
        resolve_recipe({"default": {"dataset_options": ["fold=1"]}})
    with pytest.raises(ValueError, match="init_from' must be a weight tag"):
        resolve_recipe({"default": {"init_from": 3}})


@pytest.mark.parametrize("entry,needle", [
    # a learning rate beside class_name, not in config: Keras would have trained at its default 1e-3
    ({"optimizer": {"class_name": "adam", "learning_rate": 0.01}},
     "recipe optimizer has unknown key 'learning_rate'; it reads class_name and config"),
    ({"optimizer": ["adam"]}, "recipe optimizer must be a name or"),
    ({"optimizer": {"class_name": "sgd", "config": 0.1}}, "recipe optimizer config must be a mapping"),
    ({"schedule": {"type": "cosine", "epochs": 10, "warmup_epochs": 2}},
     "recipe schedule 'cosine' has unknown key 'warmup_epochs'; it reads type and epochs, min_lr"),
    ({"schedule": {"type": "step", "step_epochs": 5, "min_lr": 1e-4}},  # only cosine has a floor
     "recipe schedule 'step' has unknown key 'min_lr'; it reads type and step_epochs, gamma"),
    ({"schedule": {"type": "constant", "gamma": 0.5}}, "schedule 'constant' has unknown key 'gamma'"),
    ({"sampler": {"oversample": 0.5, "seed": 3}}, "recipe sampler must be null, \"balanced\" or"),
    ({"sampler": {"oversample": 0}}, "{'oversample': 0}"),
    ({"sampler": "balance"}, "got 'balance'"),
])
def test_keys_inside_optimizer_schedule_and_sampler_are_checked_too(entry, needle):
    with pytest.raises(ValueError) as info:
        resolve_recipe({"default": entry}, None, "toy")
    assert str(info.value).startswith("model 'toy': ") and needle in str(info.value)


def test_what_optimizer_schedule_and_sampler_do_read_still_resolves():
    rec = resolve_recipe({"default": {"optimizer": "sgd", "sampler": {"oversample": 0.5}}, "x": {
        "optimizer": {"class_name": "sgd", "config": {"learning_rate": 0.1, "momentum": 0.9}},
        "schedule": {"type": "multistep", "milestones": [3, 6], "gamma": 0.5}, "sampler": "balanced"}}, "x")
    assert rec["optimizer"]["config"]["momentum"] == 0.9 and rec["sampler"] == "balanced"
    # config alone is merged into the default optimizer's (Adam) entry
    only_config = resolve_recipe({"default": {"optimizer": {"config": {"learning_rate": 0.01}}}})["optimizer"]
    assert only_config == {"class_name": "adam", "config": {"learning_rate": 0.01}}
    assert rec["schedule"] == {"type": "multistep", "milestones": [3, 6], "gamma": 0.5}
    # a recipe naming another schedule type replaces the default's (its keys are not inherited)
    table = {"default": {"schedule": {"type": "cosine", "epochs": 10, "min_lr": 1e-5}},
             "x": {"schedule": {"type": "step", "step_epochs": 4}}}
    assert resolve_recipe(table, "x")["schedule"] == {"type": "step", "step_epochs": 4}


def test_build_refuses_a_recipe_with_an_unknown_key(registry):
    registry.register(_KeysPlugin(), name="keys_plugin")
    with pytest.raises(ValueError, match="model 'keys_toy': recipe 'typo' has unknown key 'epoch'"):
        ferzoo.build("keys_toy", recipe="typo")


# -- reduce on plateau --------------------------------------------------------------------------------------------
def _drops(patience, values, monitor="val_accuracy", min_delta=0.0):
    """The 1-based epochs after which the rate drops, replaying ``values`` of the monitor."""
    plateau = {**PLATEAU_KEYS, "monitor": monitor, "patience": patience, "min_delta": min_delta}
    best, wait, out = None, 0, []
    for epoch, value in enumerate(values, 1):
        best, wait, drop = plateau_step(plateau, value, best, wait)
        if drop:
            out.append(epoch)
    return out


def test_plateau_drops_after_patience_epochs_without_improvement():
    # patience 2: epochs 3 and 4 do not improve -> drop after 4; 6, 7 -> after 7; 8, 9 -> after 9
    assert _drops(2, [0.5, 0.6, 0.6, 0.59, 0.7, 0.7, 0.7, 0.7, 0.7]) == [4, 7, 9]
    # patience 13 (DAF-CNN's): 13 flat epochs after the first -> drop after epoch 14, then after 27
    assert _drops(13, [0.1] * 31) == [14, 27]
    assert _drops(13, [0.1] * 13) == []
    # an improvement resets the count
    assert _drops(2, [0.5, 0.4, 0.6, 0.5, 0.5]) == [5]
    # a loss improves downwards, by more than min_delta
    assert _drops(2, [1.0, 0.95, 0.949, 0.948, 0.5], monitor="val_loss", min_delta=0.01) == [4]
    # patience 0: every epoch without improvement drops it; an unmeasured epoch does not improve
    assert _drops(0, [0.5, 0.4, 0.6, None]) == [2, 4]


def test_the_driver_drops_the_rate_after_patience_epochs(registry, tmp_path):
    registry.register(_KeysPlugin(), name="keys_plugin")
    lines = []
    out = train("keys_toy", dataset="synthetic", recipe="plateau2", epochs=4, verbose=0, limit=24,
                output=str(tmp_path / "r"), say=lines.append)
    # min_delta 1e9: only epoch 1 improves; epochs 2 and 3 do not -> the rate halves for epoch 4
    np.testing.assert_allclose(out["history"]["learning_rate"], [0.05, 0.05, 0.05, 0.025], rtol=1e-6)
    assert sum("on a plateau" in line for line in lines) == 1 and any(line.startswith("epoch 3:") for line in lines)


# -- the driver applies dataset_options and init_from --------------------------------------------------------------
class _KeysPlugin:
    @hookimpl
    def register_models(self, register):
        from toy_plugin import build_toy, toy_losses

        register(ModelSpec(
            name="keys_toy", builder=build_toy, losses=toy_losses, default_input_shape=(16, 16, 1), channels=(1,),
            min_size=8, default_config={"width": 4, "dropout": 0.0}, mean=(0.5,), std=(0.25,),
            recipes={"default": {"optimizer": {"class_name": "sgd", "config": {"learning_rate": 0.05}},
                                 "epochs": 1, "batch_size": 8, "val_split": "val",
                                 "dataset_options": {"num_classes": 3, "per_class": 4, "size": 16},
                                 "augmentation": {"flip": True, "rotation": 10}},
                     "finetune": {"init_from": "base"},
                     "contrast": {"augmentation": {"contrast": 0.2}},
                     "contrast_only": {"augmentation": {"contrast": 0.2, "flip": None, "rotation": None}},
                     "missing": {"init_from": "nope"},
                     "plateau2": {"protocol": {"reduce_on_plateau": {"monitor": "val_loss", "factor": 0.5,
                                                                     "patience": 2, "min_delta": 1e9}}},
                     "published": {"published_weights": {"file": "keys.pth", "where": "example.org/keys",
                                                         "convert": "ferzoo convert keys_toy keys.pth"}},
                     "typo": {"epoch": 3}},
            description="toy model for the recipe-key tests"))


def test_train_applies_the_recipes_dataset_options_and_init_from(registry):
    registry.register(_KeysPlugin(), name="keys_plugin")
    lines = []
    base = train("keys_toy", dataset="synthetic", tag="base", verbose=0, say=lines.append,
                 dataset_options={"per_class": 5})  # the caller's option overrides the recipe's, key by key
    card = base["card"]
    assert card["class_names"] == ["angry", "disgust", "fear"]  # num_classes 3 came from the recipe
    assert card["train_examples"] == 15 and card["dataset_options"] == {"num_classes": 3, "per_class": 5, "size": 16}
    assert any("data set options: {'num_classes': 3, 'size': 16} (recipe 'default'" in line
               and "per_class from --dataset-option" in line for line in lines)
    assert "init_from" not in card

    lines.clear()
    tuned = train("keys_toy", dataset="synthetic", recipe="finetune", output=None, tag="tuned", verbose=0,
                  say=lines.append)
    assert tuned["card"]["init_from"]["source"] == "base"
    assert {"conv1", "conv2", "embed", "fc"} <= set(tuned["card"]["init_from"]["transferred"])
    assert any("initial weights: 'base' (recipe 'finetune'" in line and "--init-from none" in line for line in lines)

    scratch = train("keys_toy", dataset="synthetic", recipe="finetune", tag="scratch", verbose=0, init_from="none",
                    say=lines.append)
    assert "init_from" not in scratch["card"]


def test_a_recipes_init_from_that_cannot_be_had_fails_before_any_data_is_read(registry):
    registry.register(_KeysPlugin(), name="keys_plugin")
    with pytest.raises(ValueError) as info:  # a data folder that does not exist is never reached
        train("keys_toy", dataset="fer2013", data_dir="/nonexistent", recipe="missing", verbose=0,
              say=lambda _line: None)
    msg = str(info.value)
    assert "recipe 'missing' of model 'keys_toy' starts from weights 'nope' (its init_from)" in msg
    assert "no weights tagged 'nope'" in msg and "--init-from none" in msg


def test_ferzoo_train_daf_cnn_on_sfew_starts_from_the_recipes_weights(tmp_path, capsys):
    """The case of issue 24: a plain `ferzoo train daf_cnn --dataset sfew` trained from scratch in silence."""
    from ferzoo.cli import main

    assert main(["train", "daf_cnn", "--dataset", "sfew", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "initial weights: 'fer2013-notcl' (recipe 'sfew'" in err
    assert "data set options: {'class_order': 'canonical'} (recipe 'sfew'" in err
    assert "error: recipe 'sfew' of model 'daf_cnn' starts from weights 'fer2013-notcl'" in err
    assert "Traceback" not in err


def _job(model, dataset, **kwargs):
    args = dict(epochs=None, batch_size=None, tag=None, output=None, recipe=None, val_split=None, seed=0,
                limit=None, verbose=0, config=None, dataset_options=None, command="test", input_shape=None,
                init_from=None, resume=False, say=lambda _line: None)
    return resolve_job(model, dataset, "D", **{**args, **kwargs})


def test_resolve_job_takes_the_recipes_reader_options():
    job = _job("lnlattennet", "ckplus")
    assert job.dataset_options == {"folds": 5, "contempt": False, "last_frames": 1, "neutral_frames": 1}
    job = _job("lnlattennet", "ckplus", dataset_options={"folds": 10, "fold": 3})
    assert job.dataset_options == {"folds": 10, "fold": 3, "contempt": False, "last_frames": 1, "neutral_frames": 1}
    assert _job("deep_emotion", "jaffe").dataset_options["test_per_class"] == 10
    assert _job("lnlattennet", "fer2013").dataset_options == {}


# -- Deep-Emotion's splits on data in the readers' layouts ---------------------------------------------------------
JAFFE_COUNTS = {"AN": 30, "DI": 29, "FE": 32, "HA": 31, "NE": 30, "SA": 31, "SU": 30}  # 213 images
JAFFE_SUBJECTS = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]


def _write_jaffe(root):
    from PIL import Image

    k = 0
    for code, n in JAFFE_COUNTS.items():
        for i in range(n):
            k += 1
            im = Image.fromarray(np.full((8, 8), k % 256, np.uint8), "P")
            im.putpalette([v for g in range(256) for v in (g,) * 3])
            path = root / "jaffe" / f"{JAFFE_SUBJECTS[i % 10]}.{code}{i // 10 + 1}.{k}.tiff"
            path.parent.mkdir(parents=True, exist_ok=True)
            im.save(path, format="TIFF")


def test_deep_emotion_jaffe_recipe_gives_the_papers_120_23_70_split(tmp_path):
    _write_jaffe(tmp_path)
    opts = resolve_recipe(ferzoo.model_info("deep_emotion").recipe_table(), "jaffe", "deep_emotion")["dataset_options"]
    parts = {s: ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), split=s, **opts) for s in ("train", "val", "test")}
    assert [len(parts[s].labels) for s in ("train", "val", "test")] == [120, 23, 70]
    assert np.bincount(parts["test"].labels).tolist() == [10] * 7  # 10 per emotion in test
    files = [set(parts[s].files) for s in ("train", "val", "test")]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    again = ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), split="test", **opts)
    assert again.files == parts["test"].files  # seeded: the same split every time
    # the reader's own default stays the subject-independent 10-fold
    assert len(set(ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), split="test").subjects)) == 1


# CK+: the 327 labelled sequences (anger 45, contempt 18, disgust 59, fear 25, happy 69, sadness 28, surprise 83)
CK_SEQUENCES = {1: 45, 2: 18, 3: 59, 4: 25, 5: 69, 6: 28, 7: 83}


def _write_ckplus(root):
    tiny = face("neutral", (8, 8), 1, 0)
    k = 0
    for emotion, n in CK_SEQUENCES.items():
        for _ in range(n):
            subj, seq = f"S{500 + k % 123:03d}", f"{k // 123 + 1:03d}"
            k += 1
            for fr in (1, 2, 3):
                save(root / "cohn-kanade-images" / subj / seq / f"{subj}_{seq}_{fr:08d}.png", tiny)
            d = root / "Emotion" / subj / seq
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{subj}_{seq}_{3:08d}_emotion.txt").write_text(f"   {emotion:.7e}\n")


def test_deep_emotion_ckplus_recipe_gives_the_papers_593_images_split_420_60_113(tmp_path):
    _write_ckplus(tmp_path)
    opts = resolve_recipe(ferzoo.model_info("deep_emotion").recipe_table(), "ckplus", "deep_emotion")["dataset_options"]
    parts = {s: ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split=s, **opts) for s in ("train", "val", "test")}
    assert [len(parts[s].labels) for s in ("train", "val", "test")] == [420, 60, 113]
    names = parts["train"].class_names
    assert names == ["neutral", "angry", "disgust", "fear", "happy", "sad", "surprise"]  # no contempt
    labels = np.concatenate([parts[s].labels for s in ("train", "val", "test")])
    assert np.bincount(labels).tolist() == [284, 45, 59, 25, 69, 28, 83]  # 309 peak frames + 284 neutral
    files = [set(parts[s].files) for s in ("train", "val", "test")]
    assert len(files[0] | files[1] | files[2]) == 593
    again = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split="val", **opts)
    assert again.files == parts["val"].files
    other = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split="val", **{**opts, "split_seed": 1})
    assert other.files != parts["val"].files
    with pytest.raises(ValueError, match="neutral_limit must be an integer >= 0"):
        ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), neutral_frames=1, neutral_limit=-1)


# -- the authors' published weights in a missing tag's error ------------------------------------------------------
def test_a_tag_published_only_by_the_authors_names_the_conversion_and_the_place():
    with pytest.raises(WeightsError) as info:
        ferzoo.load("dan", weights="rafdb")
    msg = str(info.value)
    assert "`ferzoo convert dan rafdb_epoch21_acc0.897_bacc0.8275.pth --tag rafdb` converts it into dan.rafdb" in msg
    assert "github.com/yaoing/DAN" in msg
    with pytest.raises(WeightsError) as info:  # no published weights for this one
        ferzoo.load("dan", weights="sfew")
    assert "authors publish" not in str(info.value)


def test_published_weights_come_from_the_plugins_recipe_not_from_core_code(registry):
    registry.register(_KeysPlugin(), name="keys_plugin")
    with pytest.raises(WeightsError, match=r"the authors publish them as keys.pth \(example.org/keys\): "
                                                         r"`ferzoo convert keys_toy keys.pth --tag published`"):
        ferzoo.load("keys_toy", weights="published")


# -- the augmentation a run uses is printed, inherited keys included ------------------------------------------------
def test_train_prints_the_merged_augmentation_before_the_first_epoch(registry, tmp_path):
    """Recipes merge key by key: a recipe naming only ``contrast`` keeps the default's flip and rotation. The
    driver says so before training; a key set to null is off."""
    registry.register(_KeysPlugin(), name="keys_plugin")
    for recipe, expected in [("contrast", "augmentation: flip, rotation 10, contrast 0.2 (recipe 'contrast'"),
                             ("contrast_only", "augmentation: contrast 0.2 (recipe 'contrast_only'")]:
        lines = []
        train("keys_toy", dataset="synthetic", recipe=recipe, verbose=0, limit=8, output=str(tmp_path / recipe),
              say=lines.append)
        assert any(line.startswith(expected) for line in lines), lines


def test_describe_augmentation_names_each_operation_with_its_setting():
    from ferzoo.data.augment import describe_augmentation

    assert describe_augmentation(None) == "none" == describe_augmentation({"flip": False, "rotation": None})
    assert describe_augmentation({"box_jitter": {"scale": [0.8, 1.2], "p": 0.5}, "flip": True}) == \
        "flip, box_jitter {scale [0.8, 1.2], p 0.5}"


def test_key_values_reads_json_where_it_is_json_and_names_a_bad_item():
    from ferzoo.recipes import key_values

    assert key_values(["epochs=3", "flip=true", "size=[64, 64]", "name=fer2013", "empty="]) == {
        "epochs": 3, "flip": True, "size": [64, 64], "name": "fer2013", "empty": ""}
    assert key_values(None) == {}
    for bad in ("dropout", "=0.5"):
        with pytest.raises(ValueError, match=f"expects KEY=VALUE, got '{bad}'"):
            key_values([bad])
