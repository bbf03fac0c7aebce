"""DAN losses on hand-computed cases (spec section 9, properties 6-8), recipe schedule and sampler (9, 10)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo_plugins.dan.losses import (PY_FLOAT_EPS, AffinityLoss, PartitionLoss, affinity_loss, centre_spread,
                                       partition_loss)


def _f(x):
    return float(keras.ops.convert_to_numpy(x))


# -- affinity ---------------------------------------------------------------------------------------------------
CENTRES = np.array([[0.0, 0.0], [2.0, 0.0]], np.float32)
X = np.array([[1.0, 1.0], [2.0, 1.0]], np.float32)
Y = np.array([0, 1])


def test_affinity_hand_computed():
    assert _f(centre_spread(CENTRES)) == pytest.approx(2.0)
    assert _f(affinity_loss(X, Y, CENTRES)) == pytest.approx(0.75)
    assert _f(affinity_loss(X, Y, CENTRES, reduction="sum")) == pytest.approx(1.5)  # paper eq. 2, no 1/N
    assert _f(affinity_loss(X, Y, CENTRES, form="center")) == pytest.approx(1.5)  # centre-loss ablation: no 1/S
    three = np.vstack([CENTRES, [[0.0, 3.0]]]).astype(np.float32)
    assert _f(centre_spread(three)) == pytest.approx(13.0 / 3.0)
    assert _f(affinity_loss(X, Y, three)) == pytest.approx(0.346154, abs=1e-6)


def test_affinity_scale_invariance_and_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    c = rng.normal(size=(3, 5)).astype(np.float32)
    assert _f(affinity_loss(3.7 * x, y, 3.7 * c)) == pytest.approx(_f(affinity_loss(x, y, c)), rel=1e-5)
    assert _f(affinity_loss(c[y], y, c)) == pytest.approx(0.0, abs=1e-7)


def test_affinity_zero_features_random_centres_is_about_one():
    loss = AffinityLoss(num_classes=7)
    loss.centres.assign(np.random.default_rng(42).standard_normal((7, 512)).astype(np.float32))
    y = np.arange(16) % 7
    value = _f(loss.compute(y, {"features": np.zeros((16, 3, 3, 512), np.float32)}))  # a map: pooled inside
    assert 0.85 <= value <= 1.15


def test_affinity_gradient_pushes_unused_centre_away():
    three = np.vstack([CENTRES, [[0.0, 3.0]]]).astype(np.float32)
    far = three.copy()
    far[2, 1] = 6.0
    assert _f(affinity_loss(X, Y, far)) < _f(affinity_loss(X, Y, three))
    c = tf.Variable(three)
    with tf.GradientTape() as tape:
        value = affinity_loss(X, Y, c)
    grad = tape.gradient(value, c).numpy()
    away = three[2] - three.mean(axis=0)
    assert float(-grad[2] @ away) > 0.0  # a descent step moves the unused centre away from the centroid
    assert np.abs(grad[:2]).sum() > 0.0  # the used centres get a pull as well


def test_affinity_num_centers_option():
    model = ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3), affinity_num_centers=8)
    assert tuple(model.aux_losses[0].centres.shape) == (8, 512)
    with pytest.raises(ValueError, match="num_centers=6 < num_classes=7"):
        AffinityLoss(num_classes=7, num_centers=6)


# -- partition --------------------------------------------------------------------------------------------------
def _v(rows):
    """Heads as rows (K, L) for one sample -> (1, K, L)."""
    return np.asarray(rows, np.float32)[None]


def test_partition_hand_computed():
    assert _f(partition_loss(_v([[0, 0], [2, 2]]))) == pytest.approx(math.log(2.0), abs=1e-6)
    v = _v([[0, 0], [2, 4]])
    assert _f(partition_loss(v)) == pytest.approx(0.336472, abs=1e-6)
    assert _f(partition_loss(v, form="paper")) == pytest.approx(0.458145, abs=1e-6)
    assert _f(partition_loss(v, unbiased=False)) == pytest.approx(0.587787, abs=1e-6)
    same = np.ones((3, 4, 8), np.float32)
    assert _f(partition_loss(same)) == pytest.approx(math.log(1 + 4 / PY_FLOAT_EPS), rel=1e-6)
    assert _f(partition_loss(same)) == pytest.approx(37.4299, abs=1e-3)
    assert _f(partition_loss(np.random.rand(2, 1, 8).astype(np.float32))) == 0.0


def test_partition_invariant_to_log_softmax_and_monotone():
    a = np.random.default_rng(1).normal(size=(5, 4, 16)).astype(np.float32)
    v = keras.ops.log_softmax(a, axis=1)
    for form in ("code", "paper"):
        assert _f(partition_loss(v, form=form)) == pytest.approx(_f(partition_loss(a, form=form)), rel=1e-5)
    values = [_f(partition_loss(a * s)) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(later < earlier for earlier, later in zip(values, values[1:]))


def test_loss_layers_serialise():
    for loss in (AffinityLoss(num_classes=8, num_centers=9, form="center", reduction="sum", name="affinity"),
                 PartitionLoss(form="paper", unbiased=False, name="partition")):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="form must be one of"):
        PartitionLoss(form="median")


# -- total loss, gradients --------------------------------------------------------------------------------------
def test_total_loss_is_sum_and_gradients_are_finite(dan64, pixels):
    model = dan64
    model.compile()  # recipe: SGD, coupled weight decay 1e-4, loss weights 1 / 1
    y = np.array([0, 3, 6, 3])
    out = model(pixels, training=False)
    ce = _f(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, out["logits"]))
    af = _f(affinity_loss(out["features"], y, model.aux_losses[0].centres))
    pt = _f(partition_loss(out["heads"]))
    total = _f(model.compute_loss(x=pixels, y=y, y_pred=out, training=False))
    assert total == pytest.approx(ce + af + pt, rel=1e-5)
    l2 = sum(float(np.sum(np.square(v.numpy()))) for v in model.trainable_variables)
    with_wd = _f(model.compute_loss(x=pixels, y=y, y_pred=out, training=True))
    assert with_wd == pytest.approx(ce + af + pt + 0.5 * 1e-4 * l2, rel=1e-5)

    with tf.GradientTape() as tape:
        out = model(pixels, training=True)
        value = model.compute_loss(x=pixels, y=y, y_pred=out, training=True)
    variables = model.trainable_variables
    grads = tape.gradient(value, variables)
    names = [v.path for v in variables]
    assert any("centres" in n for n in names)
    for name, g in zip(names, grads):
        assert g is not None, f"no gradient for {name}"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(g))), f"non-finite gradient for {name}"
    centre_grad = dict(zip(names, grads))[next(n for n in names if "centres" in n)]
    assert np.abs(keras.ops.convert_to_numpy(centre_grad)).sum() > 0.0


# -- recipes, sampler -------------------------------------------------------------------------------------------
def test_recipe_learning_rates():
    from ferzoo.recipes import learning_rate_at, make_optimizer

    spec = ferzoo.model_info("dan")
    from ferzoo.recipes import resolve_recipe

    raf = resolve_recipe(spec.recipe_table(), "rafdb", "dan")
    lr0 = raf["optimizer"]["config"]["learning_rate"]
    for epoch, expected in ((1, 0.1), (10, 0.1), (11, 0.01), (21, 0.001), (40, 1e-4)):
        assert learning_rate_at(raf["schedule"], lr0, epoch - 1) == pytest.approx(expected)
    assert raf["coupled_weight_decay"] == 1e-4 and raf["batch_size"] == 256 and raf["epochs"] == 40
    for name in ("affectnet7", "affectnet8"):
        rec = resolve_recipe(spec.recipe_table(), name, "dan")
        assert learning_rate_at(rec["schedule"], 1e-4, 5 - 1) == pytest.approx(1.296e-5)
        assert rec["sampler"] == "balanced" and rec["coupled_weight_decay"] == 0.0
        opt = make_optimizer(rec)
        assert isinstance(opt, keras.optimizers.Adam) and opt.epsilon == pytest.approx(1e-8)
    assert isinstance(make_optimizer(resolve_recipe(spec.recipe_table(), "scratch", "dan")), keras.optimizers.Adam)
    opt = make_optimizer(resolve_recipe(spec.recipe_table(), "sfew", "dan"))
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == pytest.approx(0.9)


def _sampled_labels(seed=0):
    from ferzoo.data import with_class_names
    from ferzoo.data.augment import apply_sampler

    labels = np.repeat([0, 1, 2], [1000, 100, 10]).astype(np.int32)
    ds = with_class_names(tf.data.Dataset.from_tensor_slices((labels[:, None].astype(np.float32), labels)),
                          ["a", "b", "c"])
    return labels, apply_sampler(ds, "balanced", seed=seed).map(lambda x, y: y)


def test_balanced_sampler_epoch():
    """The recipe's ``sampler: balanced`` (ImbalancedDatasetSampler): one epoch = len(data) draws, classes
    about equally likely (one epoch of 1110 draws: +-0.05; the 10^5-draw check is the slow test below)."""
    labels, sampled = _sampled_labels()
    epoch = np.fromiter(sampled.as_numpy_iterator(), np.int64)
    assert len(epoch) == len(labels)
    np.testing.assert_allclose(np.bincount(epoch, minlength=3) / len(epoch), 1 / 3, atol=0.05)


@pytest.mark.slow
def test_balanced_sampler_frequencies_1e5_draws():
    labels, sampled = _sampled_labels()
    draws = np.fromiter(sampled.repeat(91).as_numpy_iterator(), np.int64)
    assert len(draws) >= 100_000
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), 1 / 3, atol=0.02)


def test_recipe_augmentation_and_erasing_in_normalised_space():
    """Property 11: augmented outputs keep shape and dtype, labels are untouched, the eval pipeline is
    deterministic, and random erasing (forced to p = 1) zeroes a rectangle of area fraction in (0.02, 0.25)
    *after* the model's ImageNet normalisation (the official value 0)."""
    from ferzoo.data import prepare, with_class_names
    from ferzoo.data.augment import build_augmentation
    from ferzoo.recipes import resolve_recipe

    rec = resolve_recipe(ferzoo.model_info("dan").recipe_table(), "rafdb", "dan")
    shape = (224, 224, 3)
    images = np.full((6, 48, 48, 1), 200, np.uint8)
    labels = np.arange(6, dtype=np.int32)
    ds = with_class_names(tf.data.Dataset.from_tensor_slices((images, labels)), [str(i) for i in range(6)])
    aug = build_augmentation(rec["augmentation"], shape, seed=0)
    for xb, yb in prepare(ds, shape, batch_size=6, augment=aug):
        assert tuple(xb.shape) == (6, 224, 224, 3) and xb.dtype == tf.float32
        np.testing.assert_array_equal(yb.numpy(), labels)
    first = [x.numpy() for x, _ in prepare(ds, shape, batch_size=3)]
    again = [x.numpy() for x, _ in prepare(ds, shape, batch_size=3)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))

    erase = build_augmentation({"random_erasing": {**rec["augmentation"]["random_erasing"], "p": 1.0}}, shape, seed=1)
    raw = np.full((8, *shape), 200.0, np.float32)
    out = erase(raw).numpy()
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    normalised = (out / 255.0 - mean) / std
    for img in normalised:
        erased = np.all(np.abs(img) < 1e-5, axis=-1)
        frac = erased.mean()
        assert 0.02 * 0.9 <= frac <= 0.25 * 1.1  # rounding of the rectangle's sides
        rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
        assert erased[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # a filled rectangle
        assert np.all(np.abs(img[~erased]) > 0.5)  # the rest is untouched
