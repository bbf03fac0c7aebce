"""Recipe (spec 4, 9.10), plain Keras training, augmentation/oversampling (9.12) and the train driver."""

import json

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.data import prepare, synthetic
from ferzoo.data.augment import apply_sampler, build_augmentation
from ferzoo.labels import CANONICAL
from ferzoo.recipes import learning_rate_at


def test_recipe_is_the_papers(model):
    rec = model.recipe()
    assert rec["optimizer"]["class_name"] == "adam"
    assert rec["optimizer"]["config"]["learning_rate"] == 0.005
    assert rec["schedule"] is None and rec["coupled_weight_decay"] == 0.0
    assert rec["epochs"] == 300 and rec["batch_size"] == 128
    assert rec["monitor"] == "val_accuracy"
    assert rec["sampler"] == {"oversample": 0.5}
    assert rec["augmentation"] == {"flip": True, "rotation": 10, "zoom": 0.1, "translate": 0.1,
                                   "shear": {"radians": 0.1}}
    assert all(learning_rate_at(rec["schedule"], 0.005, e) == 0.005 for e in (0, 10, 299))
    for name, target in (("fer2013", 0.7002), ("ferg", 0.993), ("jaffe", 0.928), ("ckplus", 0.98)):
        r = model.recipe(name)
        assert r["paper_test_accuracy"] == target
        assert r["optimizer"] == rec["optimizer"] and r["epochs"] == 300  # same hyper-parameters everywhere
    cpu = model.recipe("fer2013_cpu")  # the documented shortened CPU run: only lr and epochs differ
    assert cpu["optimizer"]["config"]["learning_rate"] == 0.001 and cpu["epochs"] == 45
    assert {k: v for k, v in cpu.items() if k not in ("optimizer", "epochs", "note", "paper_test_accuracy", "dataset")} \
        == {k: v for k, v in rec.items() if k not in ("optimizer", "epochs")}


def test_compile_without_arguments_uses_the_recipe():
    m = ferzoo.build("deep_emotion", recipe="fer2013")
    m.compile()
    assert isinstance(m.optimizer, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(m.optimizer.learning_rate)) == pytest.approx(0.005)
    assert m.optimizer.beta_1 == 0.9 and m.optimizer.beta_2 == 0.999
    assert m._schedule is None and m._coupled_wd == 0.0  # noqa: SLF001 - no schedule, no extra decay


def test_fit_lowers_the_loss():
    # With the paper's lr 0.005 the loss sits on a plateau near ln 7 for a seed-dependent number of steps
    # before it drops (seen on FER-2013 too, see the README); seed 1 leaves it after about 2 epochs here.
    keras.utils.set_random_seed(1)
    m = ferzoo.build("deep_emotion")
    m.compile()
    train = prepare(synthetic(split="train", per_class=16), (48, 48, 1), batch_size=16, shuffle=200, seed=0)
    before = m.keras_evaluate(train, verbose=0, return_dict=True)["loss"]
    hist = m.fit(train, epochs=5, verbose=0)
    after = m.keras_evaluate(train, verbose=0, return_dict=True)["loss"]
    assert np.all(np.isfinite(hist.history["loss"]))
    assert after < before - 0.5, (before, after)
    theta = m(np.zeros((1, 48, 48, 1), np.float32) + 128)["theta"].numpy()
    assert not np.array_equal(theta[0], [[1, 0, 0], [0, 1, 0]])  # the transformer was trained too


def test_augmentation_and_oversampling_keep_images_valid(model):
    rec = model.recipe("fer2013")
    aug = build_augmentation(rec["augmentation"], (48, 48, 1), seed=0)
    ds = synthetic(split="train", per_class=4, num_classes=7)
    # an imbalanced train set: class 1 keeps 1 example, class 3 keeps all 4
    ds = ds.filter(lambda x, y: y != 1).concatenate(ds.filter(lambda x, y: y == 1).take(1))
    ds = ferzoo.data.with_class_names(ds, list(CANONICAL[:7]))
    sampled = apply_sampler(ds, rec["sampler"], seed=0)
    labels = np.array([int(y) for _, y in sampled])
    counts = np.bincount(labels, minlength=7)
    assert counts.min() >= 0.5 * counts.max() and counts[1] == 2
    batch = next(iter(prepare(sampled, (48, 48, 1), batch_size=64, augment=aug)))[0].numpy()
    assert batch.shape[1:] == (48, 48, 1) and batch.dtype == np.float32
    scaled = batch / 255.0  # the model's Standardize maps to [0, 1]
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0


def test_train_driver_keeps_best_val_accuracy(tmp_path):
    """``ferzoo train`` with the recipe (sampler + augmentation) on generated data: weights + card written and
    the checkpoint monitors val_accuracy."""
    from ferzoo.train import train

    out = train("deep_emotion", dataset="synthetic", epochs=2, batch_size=32, output=str(tmp_path), verbose=0,
                dataset_options={"per_class": 6})
    card = json.loads((tmp_path / "deep_emotion.json").read_text())
    assert (tmp_path / "deep_emotion.weights.h5").exists()
    assert card["recipe"]["monitor"] == "val_accuracy"
    assert card["best_epoch"] in (1, 2)
    best = max(out["history"]["val_accuracy"])
    assert out["history"]["val_accuracy"][card["best_epoch"] - 1] == best
    assert card["train_examples"] == 42  # balanced 7 x 6: oversampling adds nothing
