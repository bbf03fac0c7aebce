import numpy as np
import pytest

import ferzoo
from ferzoo.data import prepare


@pytest.fixture
def toy(registry):
    import keras

    keras.utils.set_random_seed(1)
    return ferzoo.build("toy")


@pytest.fixture
def data():
    ds = ferzoo.get_dataset("synthetic", split="train", size=16, per_class=8)
    return ds


def test_build_checks_arguments(registry):
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2"):
        ferzoo.build("toy", num_classes=1)
    with pytest.raises(ValueError, match=r"too small; height and width must be >= 8"):
        ferzoo.build("toy", input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match=r"2 input channels not supported; allowed: \[1, 3\]"):
        ferzoo.build("toy", input_shape=(16, 16, 2))
    with pytest.raises(ValueError, match=r"unknown config keys \['depth'\]; known: \['dropout', 'width'\]"):
        ferzoo.build("toy", depth=3)
    with pytest.raises(ValueError, match=r"class_names must be 3 distinct names"):
        ferzoo.build("toy", num_classes=3, class_names=["a", "a", "b"])
    with pytest.raises(ValueError, match=r"no recipe 'rafdb'; known: \['cosine', 'default', 'stepped'\]"):
        ferzoo.build("toy", recipe="rafdb")


def test_fixed_shapes_and_class_counts_list_allowed_values():
    from ferzoo.specs import ModelSpec

    spec = ModelSpec(name="m", builder="a:b", input_shapes=[(48, 48, 1)], num_classes=[7, 8])
    with pytest.raises(ValueError, match=r"num_classes=6 is not supported; allowed: \[7, 8\]"):
        spec.check(6, (48, 48, 1))
    with pytest.raises(ValueError, match=r"input_shape=\(64, 64, 1\) is not supported; allowed: \[\(48, 48, 1\)\]"):
        spec.check(7, (64, 64, 1))
    spec.check(8, (48, 48, 1))


def test_model_carries_names_and_input_spec(toy):
    assert toy.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    info = toy.describe()
    assert info["input_spec"]["height"] == 16 and info["input_spec"]["channels"] == 1
    assert info["input_spec"]["mean"] == [0.5] and info["input_spec"]["std"] == [0.25]
    out = toy(np.zeros((2, 16, 16, 1), np.float32))
    assert set(out) >= {"logits", "probabilities", "features"}
    # Standardize: raw 0..255 in; a constant image of 127.5 gives 0 after (x/255-0.5)/0.25
    std_layer = toy.get_layer("standardize")
    assert np.allclose(np.asarray(std_layer(np.full((1, 2, 2, 1), 127.5, np.float32))), 0.0)


def test_predict_returns_probabilities_and_names(toy):
    x = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 1)).astype(np.float32)
    p = toy.predict(x, verbose=0)
    assert p.shape == (5, 7)
    assert np.allclose(p.sum(-1), 1.0, atol=1e-6)
    top = toy.predict_classes(x, top_k=2)
    assert len(top) == 5 and len(top[0]) == 2
    assert top[0][0][0] == toy.class_names[int(p[0].argmax())]
    assert top[0][0][1] == pytest.approx(float(p[0].max()), abs=1e-6)
    # preprocess converts size and colour
    big_rgb = np.random.default_rng(1).uniform(0, 255, (40, 30, 3)).astype(np.uint8)
    assert toy.preprocess(big_rgb).shape == (1, 16, 16, 1)
    assert toy.preprocess([big_rgb, big_rgb[:20]]).shape == (2, 16, 16, 1)


def test_compile_without_arguments_uses_recipe(toy):
    toy.compile()
    assert type(toy.optimizer).__name__ == "Adam"
    assert float(toy.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert toy.aux_loss_weight(toy.aux_losses[0]) == pytest.approx(0.1)
    toy.compile(aux_loss_weights={"centre": 2.0})
    assert toy.aux_loss_weight(toy.aux_losses[0]) == 2.0
    with pytest.raises(ValueError, match=r"unknown aux losses \['nope'\].*\['centre'\]"):
        toy.compile(aux_loss_weights={"nope": 1.0})


def test_compute_loss_is_ce_plus_weighted_aux(toy):
    import keras

    toy.compile()
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    out = toy(x, training=False)
    total = float(toy.compute_loss(x=x, y=y, y_pred=out, training=False))
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, out["logits"]))
    feats, centres = np.asarray(out["features"]), toy.aux_losses[0].centres.numpy()
    centre = float(np.mean(np.sum((feats - centres[y]) ** 2, axis=-1)))
    assert total == pytest.approx(ce + 0.1 * centre, rel=1e-5)


def test_plain_fit_applies_aux_loss_and_trains_centres(toy, data):
    pipe = prepare(data, toy.input_shape_hwc, batch_size=16, shuffle=64, seed=0)
    toy.compile()
    before = toy.aux_losses[0].centres.numpy().copy()
    hist = toy.fit(pipe, epochs=3, verbose=0)
    assert "centre_loss" in hist.history
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert not np.allclose(before, toy.aux_losses[0].centres.numpy())
    # user-compiled with a probability-space string loss also works (and the aux loss still applies)
    toy.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = toy.fit(pipe, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0]) and "centre_loss" in hist.history


def test_recipe_schedule_is_applied_by_fit(registry, data):
    model = ferzoo.build("toy", recipe="stepped")
    model.compile()
    pipe = prepare(data, model.input_shape_hwc, batch_size=32)
    model.fit(pipe, epochs=3, verbose=0)
    # step schedule: 0.01 * 0.5 ** epoch, last epoch index 2
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.0025)


def test_coupled_weight_decay_adds_l2_of_all_trainables(registry):
    import keras

    model = ferzoo.build("toy")
    model.compile()
    x = np.zeros((2, 16, 16, 1), np.float32)
    y = np.array([0, 1])
    out = model(x)
    base = float(model.compute_loss(x=x, y=y, y_pred=out, training=True))
    model._coupled_wd = 0.01
    decayed = float(model.compute_loss(x=x, y=y, y_pred=out, training=True))
    l2 = sum(float(np.sum(np.square(v.numpy()))) for v in model.trainable_variables)
    assert decayed - base == pytest.approx(0.5 * 0.01 * l2, rel=1e-4)
    assert isinstance(model.optimizer, keras.optimizers.Optimizer)


def test_evaluate_report_and_class_order_by_name(toy, data):
    pipe = prepare(data, toy.input_shape_hwc, batch_size=16, shuffle=64, seed=0)
    toy.compile()
    toy.fit(pipe, epochs=12, verbose=0)
    report = toy.evaluate(prepare(data, toy.input_shape_hwc, batch_size=16), verbose=0)
    assert set(report) >= {"accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix", "class_names"}
    assert report["class_names"] == toy.class_names
    assert np.sum(report["confusion_matrix"]) == 56
    assert report["accuracy"] > 0.6
    # the same images with labels in reversed class order: evaluation by name gives the same numbers
    reversed_names = toy.class_names[::-1]
    rev = data.map(lambda x, y: (x, 6 - y))
    rev.class_names = reversed_names
    report_rev = toy.evaluate(rev, verbose=0)
    assert report_rev["accuracy"] == pytest.approx(report["accuracy"])
    assert report_rev["confusion_matrix"] == report["confusion_matrix"]
    # without the names, the reversed labels would score differently
    bare = toy.evaluate(rev, class_names=toy.class_names, verbose=0)
    assert bare["accuracy"] != pytest.approx(report["accuracy"])
    with pytest.raises(ValueError, match=r"\['contempt'\] of the data are not among the model's classes"):
        toy.evaluate(data, class_names=toy.class_names[:6] + ["contempt"], verbose=0)


def test_explain_saliency_and_gradcampp(toy):
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 1)).astype(np.float32)
    for method in ("saliency", "gradcam++"):
        maps = toy.explain(x, method=method)
        assert maps.shape == (3, 16, 16)
        assert maps.min() >= 0.0 and maps.max() <= 1.0 and maps.max() > 0.0
    with pytest.raises(ValueError, match=r"unknown explain method 'lime'; known: \['gradcam\+\+', 'saliency', 'smoothgrad'\]"):
        toy.explain(x, method="lime")
    with pytest.raises(ValueError, match=r"class_index must be in 0..6"):
        toy.explain(x, class_index=9)


def test_saliency_is_zero_where_the_logit_does_not_look():
    """A 'model' whose class-0 logit sums the top-left quadrant: saliency is 1 there and 0 elsewhere."""
    import tensorflow as tf

    from ferzoo.explain import gradient_saliency

    def model(x, training=False):
        s = tf.reduce_sum(x[:, :8, :8, :], axis=[1, 2, 3])
        return {"logits": tf.stack([s, tf.zeros_like(s)], axis=-1)}

    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype(np.float32)
    maps = gradient_saliency(model, x, np.array([0, 0]))
    assert np.allclose(maps[:, :8, :8], 1.0) and np.allclose(maps[:, 8:, :], 0.0) and np.allclose(maps[:, :, 8:], 0.0)
    assert np.allclose(gradient_saliency(model, x, np.array([1, 1])), 0.0)


def test_smoothgrad_averages_the_saliency_of_noisy_copies():
    """On a logit quadratic in the pixels (|grad| = 2|x|), SmoothGrad is the mean of |2(x + noise)| over the
    copies: a hand computation with the same draws; deterministic for a seed; noise 0 is plain saliency."""
    import tensorflow as tf

    from ferzoo.explain import gradient_saliency, smoothgrad

    def model(x, training=False):
        s = tf.reduce_sum(tf.square(x[:, :4, :4, :]), axis=[1, 2, 3])
        return {"logits": tf.stack([s, tf.zeros_like(s)], axis=-1)}

    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 1)).astype(np.float32)
    maps = smoothgrad(model, x, np.array([0, 0]), samples=3, noise=0.1, seed=5)
    rng = np.random.default_rng(5)
    grads = [np.abs(2 * (x + rng.normal(0.0, 25.5, size=x.shape).astype(np.float32)))[..., 0] for _ in range(3)]
    expect = np.mean(grads, axis=0)
    expect[:, 4:, :] = 0.0
    expect[:, :, 4:] = 0.0
    expect /= expect.reshape(2, -1).max(axis=1)[:, None, None]
    assert np.allclose(maps, expect, atol=1e-4)
    assert np.array_equal(maps, smoothgrad(model, x, np.array([0, 0]), samples=3, noise=0.1, seed=5))
    assert not np.allclose(maps, smoothgrad(model, x, np.array([0, 0]), samples=3, noise=0.1, seed=6))
    assert np.allclose(smoothgrad(model, x, np.array([0, 0]), samples=2, noise=0.0),
                       gradient_saliency(model, x, np.array([0, 0])), atol=1e-6)


def test_weights_only_roundtrip_and_from_config(toy, tmp_path):
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    toy.aux_losses[0].centres.assign(np.ones((7, 8), np.float32))
    path = tmp_path / "toy.weights.h5"
    toy.save_weights(str(path))
    clone = type(toy).from_config(toy.get_config())
    clone.load_weights(str(path))
    assert np.array_equal(toy.predict(x, verbose=0), clone.predict(x, verbose=0))
    assert np.array_equal(clone.aux_losses[0].centres.numpy(), np.ones((7, 8)))
    # a full .keras archive loads with the default safe_mode=True
    toy.save(tmp_path / "toy.keras")
    again = keras.saving.load_model(tmp_path / "toy.keras")
    assert np.allclose(toy.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-6)


def test_train_driver_writes_store_and_load_by_tag(registry, tmp_path):
    from ferzoo.train import train

    result = train("toy", dataset="synthetic", epochs=2, batch_size=16, verbose=0,
                   dataset_options={"size": 16, "per_class": 6})
    card = result["card"]
    assert card["model"] == "toy" and card["dataset"] == "synthetic"
    assert set(card["metrics"]) >= {"accuracy", "balanced_accuracy", "macro_f1"}
    assert card["class_names"] == result["model"].class_names
    loaded = ferzoo.load("toy", weights="synthetic")
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype(np.float32)
    assert np.allclose(loaded.predict(x, verbose=0), result["model"].predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"model 'toy' has no weights tagged 'rafdb'; known tags: \['synthetic'\]"):
        ferzoo.load("toy", weights="rafdb")


def test_train_without_validation_and_missing_split(registry, tmp_path):
    from ferzoo.train import train

    result = train("toy", dataset="synthetic", epochs=1, batch_size=32, verbose=0, val_split="none",
                   output=str(tmp_path / "run"), dataset_options={"size": 16, "per_class": 4})
    assert result["report"] is None and "metrics" not in result["card"]
    assert (tmp_path / "run" / "toy.weights.h5").exists()
    with pytest.raises(ValueError, match=r"has no split 'dev'.*\['train', 'val', 'test'\].*--val-split none"):
        train("toy", dataset="synthetic", epochs=1, val_split="dev", verbose=0)
