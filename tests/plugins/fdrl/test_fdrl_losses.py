"""FDRL's losses: spec section 9 items 6 and 8-12 on hand-computed cases, the centre rule (exact, training steps
only, no gradient), finite gradients for every trainable weight (centres included) and float16 safety."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo.train import dtype_policy
from ferzoo_plugins.fdrl.losses import (BalanceLoss, CompactnessLoss, DistributionLoss, balance_loss,
                                        class_centre_update, compactness_loss, distribution_loss,
                                        latent_centre_update)


def _np(x):
    return keras.ops.convert_to_numpy(x)


# -- 9.8 compactness --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 8])
def test_compactness_is_m_times_d_for_ones_and_zero_centres(n):
    latent = np.ones((n, 9, 128), "float32")
    assert float(compactness_loss(latent, np.zeros((9, 128), "float32"))) == pytest.approx(1152.0)
    assert float(compactness_loss(latent, np.ones((9, 128), "float32"))) == 0.0


def test_compactness_sums_over_features_and_averages_over_images():
    latent = np.array([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 4.0]]], "float32")  # N = 2, M = 2, D = 2
    centres = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    # image 1: (0 + 4) + (0 + 1) = 5; image 2: (4 + 0) + (0 + 9) = 13 -> mean 9; no 1/2 factor
    assert float(compactness_loss(latent, centres)) == pytest.approx(9.0)
    assert float(compactness_loss(latent, centres, np.array([1.0, 0.0]))) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="centres have shape"):
        compactness_loss(latent, np.zeros((3, 2), "float32"))


# -- 9.9 balance ------------------------------------------------------------------------------------------------
def test_balance_loss_hand_cases():
    assert float(balance_loss(np.array([[1.0, 0.0], [0.0, 1.0]], "float32"))) == pytest.approx(0.0)
    for n in (2, 5):  # one L1 norm per batch, whatever N
        assert float(balance_loss(np.tile([[2.0, 0.0]], (n, 1)).astype("float32"))) == pytest.approx(2.0)
    e1 = np.zeros((4, 9), "float32")
    e1[:, 0] = 1.0
    assert float(balance_loss(e1)) == pytest.approx(16 / 9, abs=1e-6)
    assert float(balance_loss(e1)) == pytest.approx(1.7778, abs=1e-4)
    # spec A3's flag: the normalised vectors ([1, 0] twice) -> |1 - 0.5| + |0 - 0.5| = 1
    assert float(balance_loss(np.array([[2.0, 0.0], [2.0, 0.0]], "float32"), normalize=True)) == pytest.approx(1.0)
    # weighted batch mean: the zero-weight image does not count
    w = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    assert float(balance_loss(w, np.array([1.0, 0.0]))) == pytest.approx(1.0)


# -- 9.10 distribution ------------------------------------------------------------------------------------------
def test_distribution_loss_hand_cases():
    centres = np.array([[1.0, 1.0], [5.0, 5.0]], "float32")
    w = np.array([[2.0, 1.0], [0.0, 1.0]], "float32")
    assert float(distribution_loss(w, np.array([0, 0]), centres)) == pytest.approx(1.0)
    assert float(distribution_loss(np.array([[1.0, 1.0], [5.0, 5.0]], "float32"), np.array([0, 1]), centres)) == 0.0
    # the label picks the centre: image 2 against mu_1 = [5, 5] -> (25 + 16) ; mean (1 + 41) / 2
    assert float(distribution_loss(w, np.array([0, 1]), centres)) == pytest.approx(21.0)


# -- 9.11 centre rule ---------------------------------------------------------------------------------------------
def test_centre_update_hand_cases():
    # one image, value 2, centre 0: delta = (0 - 2) / 2 = -1 -> 0 - 0.5 * (-1) = 0.5
    new = _np(latent_centre_update(np.full((1, 1, 1), 2.0, "float32"), np.zeros((1, 1), "float32"), 0.5))
    np.testing.assert_allclose(new, [[0.5]])
    # three images 2, 4, 6 (every image feeds every latent centre): delta = (0 - 12) / 4 = -3 -> 1.5
    latent = np.array([2.0, 4.0, 6.0], "float32").reshape(3, 1, 1) * np.ones((3, 2, 1), "float32")
    np.testing.assert_allclose(_np(latent_centre_update(latent, np.zeros((2, 1), "float32"), 0.5)), [[1.5], [1.5]])
    # a zero-weight image contributes nothing (N = 1 again)
    new = _np(latent_centre_update(latent[:2], np.zeros((2, 1), "float32"), 0.5, np.array([1.0, 0.0])))
    np.testing.assert_allclose(new, [[0.5], [0.5]])
    # class centres: class 0 has one image (2, 2) -> 0.5; class 1 is absent and keeps its centre
    centres = np.array([[0.0, 0.0], [7.0, -3.0]], "float32")
    new = _np(class_centre_update(np.array([[2.0, 2.0]], "float32"), np.array([0]), centres, 0.5))
    np.testing.assert_allclose(new, [[0.5, 0.5], [7.0, -3.0]])


def test_loss_layers_apply_the_rule_and_give_centres_no_gradient():
    loss = CompactnessLoss(num_latent=1, latent_dim=1, rate=0.5)
    dist = DistributionLoss(num_classes=2, num_latent=1, rate=0.5)
    outputs = {"latent": tf.constant([[[2.0]]]), "intra_weights": tf.constant([[2.0]])}
    y = tf.constant([0])
    for layer in (loss, dist):
        assert not layer.centres.trainable and layer.centres.dtype == "float32"
        np.testing.assert_array_equal(_np(layer.centres), 0.0)  # zero init
        with tf.GradientTape() as tape:
            tape.watch(layer.centres.value)
            value = layer.compute(y, outputs)
        assert tape.gradient(value, layer.centres.value) is None  # stop_gradient
        (var, new), = layer.update(y, outputs)
        assert var is layer.centres
        expected = [[0.5]] if layer is loss else [[0.5], [0.0]]
        np.testing.assert_allclose(_np(new), expected)
    opt = CompactnessLoss(num_latent=1, latent_dim=1, centre_update="optimizer")
    assert opt.centres.trainable and opt.update(y, outputs) is None


def test_loss_layers_serialise():
    for layer in (CompactnessLoss(3, 4, 0.25, "optimizer", weight=0.5, name="c"), BalanceLoss(True, 2.0, name="b"),
                  DistributionLoss(5, 3, 0.1, "rule", True, 0.01, name="d")):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
        assert tuple(getattr(clone, "centres", np.zeros(0)).shape) == tuple(getattr(layer, "centres", np.zeros(0)).shape)


# -- 9.12 total loss ----------------------------------------------------------------------------------------------
def test_total_loss_is_ce_plus_weighted_terms(small):
    small.compile()
    assert [(l.name, small.aux_loss_weight(l)) for l in small.aux_losses] == [
        ("compactness", 1e-4), ("balance", 1.0), ("distribution", 1e-4)]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7)).astype("float32")
    latent = np.abs(rng.normal(size=(3, 9, 128))).astype("float32")
    w = rng.uniform(0, 128, (3, 9)).astype("float32")
    y = np.array([0, 4, 4])
    y_pred = {"logits": tf.constant(logits), "probabilities": tf.nn.softmax(logits), "latent": tf.constant(latent),
              "intra_weights": tf.constant(w)}
    total = float(small.compute_loss(y=tf.constant(y), y_pred=y_pred, training=False))
    ce = np.mean(-np.log(np.exp(logits[np.arange(3), y]) / np.exp(logits).sum(axis=1)))
    l_c = np.mean((latent ** 2).sum(axis=(1, 2)))          # centres are 0
    l_b = np.abs(w.mean(axis=0) - 1 / 9).sum()
    l_d = np.mean((w ** 2).sum(axis=1))
    assert total == pytest.approx(ce + 1e-4 * l_c + 1.0 * l_b + 1e-4 * l_d, rel=1e-5)
    # compile(aux_loss_weights=...) overrides a lambda
    small.compile(aux_loss_weights={"balance": 0.0})
    total0 = float(small.compute_loss(y=tf.constant(y), y_pred=y_pred, training=False))
    assert total0 == pytest.approx(ce + 1e-4 * l_c + 1e-4 * l_d, rel=1e-5)
    small.compile()


def test_lambdas_are_config():
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), lambda_c=0.5, lambda_b=0.0, lambda_d=2.0)
    model.compile()
    assert {l.name: model.aux_loss_weight(l) for l in model.aux_losses} == {
        "compactness": 0.5, "balance": 0.0, "distribution": 2.0}


# -- gradients ------------------------------------------------------------------------------------------------------
def _gradients(model, x, y):
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = model.compute_loss(y=y, y_pred=out, training=False)
    return loss, dict(zip([v.path for v in model.trainable_variables],
                          tape.gradient(loss, model.trainable_variables)))


def test_every_trainable_weight_gets_a_finite_gradient_centres_included(pixels):
    keras.utils.set_random_seed(1)
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), centre_update="optimizer")
    model.compile()
    loss, grads = _gradients(model, pixels, tf.constant([0, 1, 2, 3]))
    assert np.isfinite(float(loss))
    # backbone: 20 conv kernels + 20 BN (gamma, beta); head: 4 layers x (kernel, bias); 2 centre tables
    assert len(grads) == len(model.trainable_variables) == 20 + 40 + 8 + 2
    missing = [k for k, g in grads.items() if g is None]
    assert not missing
    bad = [k for k, g in grads.items() if not np.all(np.isfinite(_np(g)))]
    assert not bad
    centre_grads = {k: _np(g) for k, g in grads.items() if "centres" in k}
    assert len(centre_grads) == 2 and all(np.abs(g).max() > 0 for g in centre_grads.values())


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_identical_messages_give_finite_loss_and_gradients(policy, pixels):
    """9.6: all messages equal (here all zero: the message net zeroed), so every distance is 0; the loss and
    every gradient stay finite, also under float16 compute (the relation runs in float32)."""
    keras.utils.set_random_seed(2)
    with dtype_policy(policy):
        model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3))
        message = model.get_layer("message")
        message.kernel.assign(np.zeros(message.kernel.shape, "float32"))
        message.bias.assign(np.zeros(message.bias.shape, "float32"))
        model.compile()
        out = model(pixels, training=False)
        assert out["inter_weights"].dtype == "float32"
        assert np.all(_np(out["inter_weights"]) < 1e-5)
        loss, grads = _gradients(model, pixels, tf.constant([0, 1, 2, 3]))
    assert np.isfinite(float(loss))
    assert all(g is not None and np.all(np.isfinite(_np(g))) for g in grads.values())
    assert model.get_layer("fdn").compute_dtype == ("float16" if policy != "float32" else "float32")
