"""Deep-Emotion architecture, initialisation, regulariser and serialisation (spec sections 2-4, 9.1-9.9)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo import weights as weights_mod

FEATURE_LAYERS = ("c1", "c2", "c3", "c4", "fc1", "fc2")
LOC_LAYERS = ("loc_conv1", "loc_conv2", "loc_fc1", "loc_fc2")


def _sub(model, *names):
    return keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])


# -- 9.1 / 9.2 shapes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stn_on", ["features", "input"])
def test_outputs_and_softmax(stn_on, images):
    m = ferzoo.build("deep_emotion", num_classes=7, stn_on=stn_on)
    out = m(images, training=False)
    assert tuple(out["logits"].shape) == (8, 7)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-6)
    assert tuple(out["theta"].shape) == (8, 2, 3)
    assert tuple(out["features"].shape) == (8, 50)
    warped = (8, 9, 9, 10) if stn_on == "features" else (8, 48, 48, 1)
    assert tuple(out["warped"].shape) == warped


def test_no_stn_option_is_a_plain_cnn(images):
    m = ferzoo.build("deep_emotion", stn_on="none")
    out = m(images)
    assert "theta" not in out and "warped" not in out
    assert m.count_params() == 43_737


def test_intermediate_shapes(model, images):
    p2, p4, flat, loc, loc_flat, theta = _sub(model, "p2_relu", "p4_relu", "flatten", "loc_relu2", "loc_flatten",
                                              "loc_fc2")(images)
    assert tuple(p2.shape) == (8, 22, 22, 10)
    assert tuple(p4.shape) == (8, 9, 9, 10)
    assert tuple(flat.shape) == (8, 810)
    assert tuple(loc.shape) == (8, 10, 10, 10)
    assert tuple(loc_flat.shape) == (8, 1000)
    assert tuple(theta.shape) == (8, 6)


def test_relu_follows_pool_and_conv2_is_linear(model, images):
    c2, p2, r2 = _sub(model, "c2", "p2", "p2_relu")(images)
    assert float(tf.reduce_min(c2)) < 0  # no activation on c2
    np.testing.assert_array_equal(p2.numpy(), tf.nn.max_pool2d(c2, 2, 2, "VALID").numpy())
    np.testing.assert_array_equal(r2.numpy(), np.maximum(p2.numpy(), 0))


# -- 9.3 parameter count ----------------------------------------------------------------------------------------

def test_parameter_count(model):
    assert model.count_params() == 76_777
    assert sum(model.get_layer(n).count_params() for n in FEATURE_LAYERS) == 43_737
    assert sum(model.get_layer(n).count_params() for n in LOC_LAYERS) == 33_040
    assert model.describe()["trainable_params"] == 76_777


def test_only_48x48x1_is_accepted():
    with pytest.raises(ValueError, match=r"input_shape=\(64, 64, 1\) is not supported; allowed: \[\(48, 48, 1\)\]"):
        ferzoo.build("deep_emotion", input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match=r"\(48, 48, 3\)"):
        ferzoo.build("deep_emotion", input_shape=(48, 48, 3))


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="stn_on='image'"):
        ferzoo.build("deep_emotion", stn_on="image")
    with pytest.raises(ValueError, match="unknown config keys"):
        ferzoo.build("deep_emotion", stn="features")
    with pytest.raises(ValueError, match="dropout=1.5"):
        ferzoo.build("deep_emotion", dropout=1.5)


def test_registered_defaults_match_the_builder():
    import inspect

    from ferzoo_plugins.deep_emotion import DEFAULT_CONFIG
    from ferzoo_plugins.deep_emotion.model import build_deep_emotion

    assert ferzoo.model_info("deep_emotion").default_config == DEFAULT_CONFIG

    sig = inspect.signature(build_deep_emotion).parameters
    for key, value in DEFAULT_CONFIG.items():
        default = sig[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, key


def test_kernel_initializer_alternative():
    keras.utils.set_random_seed(0)
    m = ferzoo.build("deep_emotion", kernel_initializer="he_normal")
    std = m.get_layer("c2").kernel.numpy().std()
    assert abs(std - np.sqrt(2 / 90)) < 0.02  # He: sqrt(2 / fan_in) = 0.149 for 3x3x10 inputs, not 0.05
    assert not np.array_equal(m.get_layer("c3").kernel.numpy(), m.get_layer("c4").kernel.numpy())
    np.testing.assert_array_equal(m.get_layer("loc_fc2").bias.numpy(), [1, 0, 0, 0, 1, 0])
    assert not np.any(m.get_layer("loc_fc2").kernel.numpy())


def test_optional_batch_norm_and_loc_kernels():
    m = ferzoo.build("deep_emotion", batch_norm=True, loc_kernels=[7, 5])
    assert m.get_layer("c4_bn") is not None
    # omarsayed7's localisation: 48 -7+1 = 42 -> 21 -> -5+1 = 17 -> 8; flatten 8*8*10 = 640
    assert tuple(m.get_layer("loc_flatten").output.shape) == (None, 640)


def test_batch_norm_after_every_conv():
    plain = ferzoo.build("deep_emotion")
    every = ferzoo.build("deep_emotion", batch_norm="all")
    names = [layer.name for layer in every.layers]
    for conv in ("c1", "c2", "c3", "c4"):
        # each feature convolution feeds its own BatchNorm (before the ReLU where the paper has one)
        assert every.get_layer(f"{conv}_bn").input._keras_history.operation.name == conv
        assert every.get_layer(conv).activation.__name__ == "linear"
    assert "c4_bn" in names and sum(name.endswith("_bn") for name in names) == 4
    assert every.count_params() - plain.count_params() == 4 * 4 * 10  # gamma, beta, mean, variance per filter
    with pytest.raises(ValueError, match="batch_norm='every'"):
        ferzoo.build("deep_emotion", batch_norm="every")


def test_theta_limit_bounds_the_transform_and_keeps_the_identity():
    import keras

    m = ferzoo.build("deep_emotion", theta_limit=0.5)
    batch = np.random.default_rng(4).uniform(0, 255, (3, 48, 48, 1)).astype("float32")
    identity = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (3, 1, 1))
    np.testing.assert_allclose(m(batch, training=False)["theta"].numpy(), identity, atol=1e-6)  # I -> I
    # a localisation output far from the identity (a translation of 58, as an unbounded run drifted to) stays
    # within the limit of it, and the slope at the identity is 1
    fc2 = m.get_layer("loc_fc2")
    kernel, _ = fc2.get_weights()
    fc2.set_weights([kernel, np.array([10.5, -2.5, 2.6, 8.1, 1.6, 58.7], np.float32)])
    theta = m(batch, training=False)["theta"].numpy().reshape(3, 6)
    deviation = np.abs(theta - [1, 0, 0, 0, 1, 0])
    assert np.all(deviation <= 0.5 + 1e-6) and np.all(deviation > 0.4)  # 0.6 off -> 0.5 * tanh(1.2) = 0.417
    layer = m.get_layer("loc_bound")
    assert float(layer(keras.ops.convert_to_tensor([[1.01, 0, 0, 0, 1, 0]]))[0, 0]) == pytest.approx(1.01, abs=1e-4)
    assert ferzoo.build("deep_emotion").count_params() == m.count_params()  # no weights of its own
    with pytest.raises(ValueError, match="theta_limit=0"):
        ferzoo.build("deep_emotion", theta_limit=0)


# -- 9.4 identity at initialisation -----------------------------------------------------------------------------

@pytest.mark.parametrize("stn_on", ["features", "input"])
def test_identity_theta_and_identity_warp_at_init(stn_on):
    m = ferzoo.build("deep_emotion", stn_on=stn_on)
    batch = np.random.default_rng(3).uniform(0, 255, (5, 48, 48, 1)).astype("float32")
    out = m(batch, training=False)
    expected = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (5, 1, 1))
    np.testing.assert_array_equal(out["theta"].numpy(), expected)
    before = m.get_layer("stn").input[0]
    unwarped = keras.Model(m.inputs[0], before)(batch, training=False).numpy()
    assert np.max(np.abs(out["warped"].numpy() - unwarped)) < 1e-5


# -- 9.6 differentiability --------------------------------------------------------------------------------------

def _grads(m, x, y):
    with tf.GradientTape() as tape:
        out = m(x, training=True)
        loss = m.compute_loss(x=x, y=y, y_pred=out, training=True)
    return loss, dict(zip([v.path for v in m.trainable_variables], tape.gradient(loss, m.trainable_variables)))


def test_gradients_finite_and_localisation_learns():
    keras.utils.set_random_seed(0)
    m = ferzoo.build("deep_emotion")
    m.compile()
    x = np.random.default_rng(1).uniform(0, 255, (16, 48, 48, 1)).astype("float32")
    y = np.arange(16) % 7
    loss, grads = _grads(m, x, y)
    assert np.isfinite(float(loss))
    for path, g in grads.items():
        assert g is not None, path
        assert np.all(np.isfinite(g.numpy())), path
    norm = {p: float(tf.reduce_sum(tf.abs(g))) for p, g in grads.items()}
    assert norm["loc_fc2/kernel"] > 0 and norm["loc_fc2/bias"] > 0
    for name in ("loc_conv1", "loc_conv2", "loc_fc1"):  # behind the zero kernel of loc_fc2
        assert norm[f"{name}/kernel"] == 0 and norm[f"{name}/bias"] == 0
    for name in FEATURE_LAYERS:
        assert norm[f"{name}/kernel"] > 0, name
    m.train_on_batch(x, y)  # one Adam step makes loc_fc2's kernel non-zero
    _, grads = _grads(m, x, y)
    for name in LOC_LAYERS:
        assert float(tf.reduce_sum(tf.abs(grads[f"{name}/kernel"]))) > 0, name


# -- 9.7 regulariser and loss values ----------------------------------------------------------------------------

def test_regulariser_terms(model):
    w1 = model.get_layer("fc1").kernel.numpy()
    w2 = model.get_layer("fc2").kernel.numpy()
    terms = sorted(float(t) for t in model.losses)
    assert len(terms) == 2
    expected = sorted([0.001 * float(np.sum(w1.astype(np.float64) ** 2)), 0.001 * float(np.sum(w2.astype(np.float64) ** 2))])
    np.testing.assert_allclose(terms, expected, rtol=1e-5)
    for name in ("c1", "c2", "c3", "c4", "loc_conv1", "loc_conv2", "loc_fc1", "loc_fc2"):
        assert model.get_layer(name).kernel_regularizer is None, name
    assert model.get_layer("fc1").bias_regularizer is None and model.get_layer("fc2").bias_regularizer is None


def test_loss_value_hand_computed():
    """Logits fixed by fc2 (zero kernel, bias [0, ln 3, 0, ...]) -> softmax (1, 3, 1, 1, 1, 1, 1) / 9.
    Labels [0, 1] -> CE = (ln 9 + ln 3) / 2 = 1.5 ln 3; fc1 kernel = 0.01 everywhere -> 0.001 * 40500 * 1e-4."""
    m = ferzoo.build("deep_emotion")
    m.compile()
    fc1, fc2 = m.get_layer("fc1"), m.get_layer("fc2")
    fc1.kernel.assign(np.full((810, 50), 0.01, np.float32))
    fc2.kernel.assign(np.zeros((50, 7), np.float32))
    fc2.bias.assign(np.array([0, np.log(3.0), 0, 0, 0, 0, 0], np.float32))
    x = np.random.default_rng(2).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    y = np.array([0, 1])
    out = m(x, training=True)
    total = float(m.compute_loss(x=x, y=y, y_pred=out, training=True))
    assert total == pytest.approx(1.5 * np.log(3.0) + 0.00405, abs=1e-5)
    m.get_layer("fc1").kernel.assign(np.zeros((810, 50), np.float32))
    total = float(m.compute_loss(x=x, y=y, y_pred=m(x, training=False), training=False))
    assert total == pytest.approx(1.5 * np.log(3.0), abs=1e-5)


# -- 9.8 initialisation -----------------------------------------------------------------------------------------

def test_initialisation(model):
    k = model.get_layer("fc1").kernel.numpy()
    assert k.size == 40_500
    assert abs(k.mean()) <= 0.002
    assert abs(k.std() - 0.05) <= 0.002
    for name in FEATURE_LAYERS + LOC_LAYERS[:-1]:
        assert not np.any(model.get_layer(name).bias.numpy()), name
    for name in ("c1", "c2", "c3", "c4", "fc2", "loc_conv1", "loc_conv2", "loc_fc1"):
        assert abs(model.get_layer(name).kernel.numpy().std() - 0.05) < 0.02, name
    assert not np.any(model.get_layer("loc_fc2").kernel.numpy())
    np.testing.assert_array_equal(model.get_layer("loc_fc2").bias.numpy(), [1, 0, 0, 0, 1, 0])
    # same-shaped layers draw their own kernels (a shared initialiser instance would repeat them)
    c2, c3, c4 = (model.get_layer(n).kernel.numpy() for n in ("c2", "c3", "c4"))
    assert not np.array_equal(c2, c3) and not np.array_equal(c3, c4)


# -- 9.9 dropout, batch independence ----------------------------------------------------------------------------

def test_dropout_only_when_training(model, images):
    a = model(images, training=False)["logits"].numpy()
    b = model(images, training=False)["logits"].numpy()
    np.testing.assert_array_equal(a, b)
    c = model(images, training=True)["logits"].numpy()
    d = model(images, training=True)["logits"].numpy()
    assert not np.allclose(c, d)


def test_batch_1_and_32_give_the_same_outputs(model):
    x = np.random.default_rng(5).uniform(0, 255, (32, 48, 48, 1)).astype("float32")
    full = model.predict(x, batch_size=32, verbose=0)
    single = np.concatenate([model.predict(x[i:i + 1], batch_size=1, verbose=0) for i in range(32)])
    np.testing.assert_allclose(single, full, atol=1e-6)
    warped_full = model(x, training=False)["warped"].numpy()
    warped_one = model(x[7:8], training=False)["warped"].numpy()
    np.testing.assert_allclose(warped_one[0], warped_full[7], atol=1e-6)


# -- serialisation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [{}, {"stn_on": "input", "batch_norm": True}])
def test_weights_only_round_trip(tmp_path, config):
    keras.utils.set_random_seed(7)
    m = ferzoo.build("deep_emotion", **config)
    # move theta away from identity so the sampler's contribution is checked too
    m.get_layer("loc_fc2").kernel.assign(np.random.default_rng(0).normal(0, 0.01, (32, 6)).astype("float32"))
    x = np.random.default_rng(6).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    ref = m(x, training=False)
    path = weights_mod.save(m, tmp_path / "de.weights.h5", dataset="synthetic")
    card = json.loads((tmp_path / "de.json").read_text())
    assert card["model"] == "deep_emotion" and card["config"]["stn_on"] == config.get("stn_on", "features")
    m2 = weights_mod.load_file("deep_emotion", path)
    out = m2(x, training=False)
    for key in ("logits", "probabilities", "theta", "warped"):
        np.testing.assert_array_equal(out[key].numpy(), ref[key].numpy(), err_msg=key)
    m3 = type(m).from_config(m.get_config())
    m3.load_weights(str(path))
    np.testing.assert_array_equal(m3(x, training=False)["logits"].numpy(), ref["logits"].numpy())


def test_custom_objects_serialise():
    from ferzoo_plugins.deep_emotion.layers import AffineGridSampler, IdentityAffine

    layer = AffineGridSampler(name="s")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, AffineGridSampler) and clone.name == "s"
    assert clone.get_config() == layer.get_config()
    init = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(IdentityAffine()))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(init((6,))), [1, 0, 0, 0, 1, 0])
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        init((7,))
