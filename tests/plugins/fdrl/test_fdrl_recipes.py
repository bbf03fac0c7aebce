"""FDRL's recipes as data (spec section 4): the paper's optimizer and schedule (9.13), resize-then-crop and flip
(9.14), the protocol per data set, and the synthetic quick-start recipe."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.recipes import learning_rate_at, resolve_recipe

PAPER_TARGETS = {"rafdb": 0.8947, "sfew": 0.6216, "ckplus": 0.9954, "mmi": 0.8523, "oulu_casia": 0.8826}


def _recipe(name):
    return resolve_recipe(ferzoo.model_info("fdrl").recipe_table(), name, "fdrl")


def test_the_rafdb_recipe_is_the_papers():
    rec = _recipe("rafdb")
    assert rec["optimizer"] == {"class_name": "adam", "config": {"learning_rate": 1e-4, "beta_1": 0.5,
                                                                  "beta_2": 0.999, "epsilon": 1e-8}}
    assert rec["schedule"] == {"type": "multistep", "milestones": [10, 18, 25, 32], "gamma": 0.1}
    assert (rec["epochs"], rec["batch_size"], rec["coupled_weight_decay"], rec["label_smoothing"]) == (40, 64, 0.0, 0.0)
    assert rec["augmentation"] == {"flip": True} and rec["load_size"] == [256, 256]
    assert rec["val_split"] == "test" and rec["protocol"]["keep"] == "last"
    assert rec["protocol"]["drop_remainder"] is False and rec["protocol"]["tta"] is None
    assert rec["config"] == {"lambda_c": 1e-4, "lambda_b": 1.0, "lambda_d": 1e-4}


@pytest.mark.parametrize("dataset", sorted(PAPER_TARGETS))
def test_every_paper_data_set_has_its_recipe_and_target(dataset):
    rec = _recipe(dataset)
    assert rec["paper_test_accuracy"] == PAPER_TARGETS[dataset]
    assert rec["epochs"] == 40 and rec["batch_size"] == 64 and rec["load_size"] == [256, 256]
    assert rec["val_split"] == ("val" if dataset == "sfew" else "test")
    assert dataset in ferzoo.list_datasets()


def test_learning_rate_per_epoch():
    """9.13: lr(epoch 1..10) = 1e-4, (11..18) = 1e-5, (19..25) = 1e-6, (26..32) = 1e-7, (33..40) = 1e-8."""
    rec = _recipe("rafdb")
    lrs = [learning_rate_at(rec["schedule"], 1e-4, e - 1) for e in range(1, 41)]  # 0-based epochs
    want = [1e-4] * 10 + [1e-5] * 8 + [1e-6] * 7 + [1e-7] * 7 + [1e-8] * 8
    np.testing.assert_allclose(lrs, want, rtol=1e-9)


def test_compile_takes_the_recipe():
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), recipe="rafdb")
    model.compile()
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.Adam)
    assert float(opt.learning_rate) == pytest.approx(1e-4) and float(opt.beta_1) == 0.5
    assert float(opt.beta_2) == 0.999 and float(opt.epsilon) == pytest.approx(1e-8)
    assert model._schedule["milestones"] == [10, 18, 25, 32] and model._coupled_wd == 0.0


def test_resize_then_crop_and_flip():
    """9.14: training images are random 224 x 224 crops of the 256 x 256 resize, flipped horizontally with
    p = 0.5; the test crop is the deterministic centre crop."""
    import tensorflow as tf

    from ferzoo.data import prepare, with_class_names
    from ferzoo.data.augment import build_augmentation

    rec = _recipe("rafdb")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (6, 100, 100, 3)).astype(np.uint8)
    ds = with_class_names(tf.data.Dataset.from_tensor_slices((faces, np.arange(6) % 2)), ["happy", "sad"])
    shape = (224, 224, 3)
    train = [prepare(ds, shape, batch_size=6, load_size=rec["load_size"], crop="random", seed=s)
             for s in (1, 2)]
    a, b = (next(iter(t))[0].numpy() for t in train)
    assert a.shape == (6, 224, 224, 3) and not np.array_equal(a, b)
    test = [next(iter(prepare(ds, shape, batch_size=6, load_size=rec["load_size"], crop="center")))[0].numpy()
            for _ in range(2)]
    np.testing.assert_array_equal(test[0], test[1])
    big = tf.image.resize(faces.astype(np.float32), (256, 256)).numpy()
    np.testing.assert_allclose(test[0], big[:, 16:240, 16:240], atol=1e-3)
    flip = build_augmentation(rec["augmentation"], shape, seed=0)
    x = test[0]
    flipped = None
    for _ in range(4):
        y = np.asarray(flip(tf.constant(x)))
        for i in range(6):
            same, mirrored = np.array_equal(y[i], x[i]), np.allclose(y[i], x[i][:, ::-1])
            assert same or mirrored
            flipped = flipped or (mirrored and not same)
    assert flipped


def test_synthetic_recipe_is_quick():
    rec = _recipe("synthetic")
    assert rec["epochs"] <= 10 and rec["batch_size"] == 16 and rec["load_size"] is None
    assert rec["augmentation"] is None and rec["protocol"]["keep"] == "best"


def test_the_scratch_recipe_builds_the_mean_intra_w_model_with_adam_1e3_and_cosine():
    rec = _recipe("scratch")
    assert rec["optimizer"]["config"]["learning_rate"] == 1e-3 and rec["epochs"] == 10
    assert rec["schedule"] == {"type": "cosine", "epochs": 10, "min_lr": 1e-5}
    assert rec["config"]["intra_w_norm"] == "mean" and rec["protocol"]["keep"] == "best"
    assert learning_rate_at(rec["schedule"], 1e-3, 0) == pytest.approx(1e-3)
    assert learning_rate_at(rec["schedule"], 1e-3, 10) == pytest.approx(1e-5)
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), recipe="scratch")
    assert model.get_layer("intra_w").norm == "mean"
    assert ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3)).get_layer("intra_w").norm == "l1"
