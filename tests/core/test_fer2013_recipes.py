"""Issue 24: every built-in model has a ``fer2013`` recipe that resolves, says whose it is (ferzoo's or the
paper's), names an input the model accepts, and builds and compiles at that input. The small models build in the
default run; the large ones (10-90 M parameters, 5-30 s each to build on 2 cores) are ``slow``."""

import re

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.data.augment import build_augmentation
from ferzoo.recipes import resolve_recipe

BUILT_IN = sorted(m for m in ferzoo.list_models() if ferzoo.model_info(m).plugin != "toy_plugin")
SMALL = {"deep_emotion", "daf_cnn_compact", "lnlattennet_cpu"}
#: a recipe's note opens its account with whose recipe it is: ferzoo's choice, or the paper's protocol
WHOSE = re.compile(r"^(ferzoo's recipe, not the paper's|the paper's (recipe|protocol)\b)", re.IGNORECASE)


def _fer2013(name):
    spec = ferzoo.model_info(name)
    table = spec.recipe_table()
    assert "fer2013" in table, f"{name}: no fer2013 recipe (recipes: {sorted(table)})"
    return spec, resolve_recipe(table, "fer2013", name)


def _shape(spec, rec):
    return tuple(int(v) for v in (rec.get("input_shape") or spec.default_input_shape))


def test_the_built_in_models_include_the_issue_24_set():
    assert {"dan", "fdrl", "daf_cnn", "daf_cnn_compact", "lnlattennet", "lnlattennet_cpu",
            "deep_emotion"} <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_model_has_a_fer2013_recipe_that_says_whose_it_is(name):
    spec, rec = _fer2013(name)
    note = str(rec.get("note") or "")
    assert WHOSE.match(note), f"{name}: the fer2013 recipe's note does not say whose recipe it is: {note[:120]!r}"
    if rec.get("input_shape") is not None:
        shape = rec["input_shape"]
        assert isinstance(shape, list) and len(shape) == 3, (name, shape)
        spec.check(7, tuple(int(v) for v in shape))  # raises, naming the allowed sizes, for one it does not accept
        assert 48 <= shape[0] <= 64 and shape[0] == shape[1], f"{name}: FER-2013 trains at 48-64 px, got {shape}"
    if rec.get("load_size"):
        h, w, _ = _shape(spec, rec)
        assert rec["load_size"][0] >= h and rec["load_size"][1] >= w, (name, rec["load_size"])
    if "ferzoo's recipe" in note:  # ferzoo's CPU recipes: a schedule that ends with the run, the best epoch kept
        assert rec["protocol"]["keep"] == "best"
        if rec.get("schedule") and rec["schedule"]["type"] == "cosine":
            assert rec["schedule"]["epochs"] == rec["epochs"], name


def test_a_misspelt_key_in_a_fer2013_recipe_is_refused():
    table = dict(ferzoo.model_info("lnlattennet_cpu").recipe_table())
    table["fer2013"] = {**table["fer2013"], "input_shap": [64, 64, 3]}
    with pytest.raises(ValueError, match="input_shap"):
        resolve_recipe(table, "fer2013", "lnlattennet_cpu")


def test_build_takes_the_recipes_input_unless_one_is_given():
    assert _fer2013("daf_cnn")[1]["input_shape"] == [48, 48, 1]  # the paper's input is 96 x 96
    assert ferzoo.build("daf_cnn", recipe="fer2013").input_shape_hwc == (48, 48, 1)
    assert ferzoo.build("daf_cnn", recipe="fer2013", input_shape=(96, 96, 1)).input_shape_hwc == (96, 96, 1)
    assert ferzoo.build("daf_cnn").input_shape_hwc == (96, 96, 1)


def _build_and_compile(name):
    spec, rec = _fer2013(name)
    shape = _shape(spec, rec)
    keras.utils.set_random_seed(0)
    kwargs = {"backbone_weights": None} if "backbone_weights" in (spec.init_config or ()) else {}
    model = ferzoo.build(name, num_classes=7, recipe="fer2013", **kwargs)  # no input_shape: the recipe's
    assert model.input_shape_hwc == shape and model.recipe_name == "fer2013"
    for key, value in (rec.get("config") or {}).items():  # the recipe's config reached the model
        assert model.build_config[key] == value, (name, key)
    model.compile()  # the recipe's optimizer, schedule, label smoothing and aux-loss weights
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert lr == pytest.approx(rec["optimizer"]["config"]["learning_rate"])
    assert type(model.optimizer).__name__.lower() == rec["optimizer"]["class_name"].lower()
    for loss in model.aux_losses:
        if loss.name in (rec.get("loss_weights") or {}):
            assert model.aux_loss_weight(loss) == pytest.approx(rec["loss_weights"][loss.name])
    if rec.get("augmentation"):  # the augmentation builds for this input and keeps the batch shape
        augment = build_augmentation(rec["augmentation"], shape, seed=0)
        batch = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
        assert keras.ops.convert_to_numpy(augment(batch)).shape == batch.shape
    return model


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in SMALL else [pytest.mark.slow]) for n in BUILT_IN])
def test_every_fer2013_recipe_builds_and_compiles_at_its_input(name):
    _build_and_compile(name)
