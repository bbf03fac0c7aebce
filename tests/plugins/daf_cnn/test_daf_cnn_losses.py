"""The Triplet-Centre loss and its centre rule on the spec's hand-computed cases (section 9, properties 7-12)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo_plugins.daf_cnn.losses import (TripletCentreLoss, daf_losses, tc_centre_update, tc_distances, tc_loss,
                                           tc_terms)


def _f(x):
    return float(keras.ops.convert_to_numpy(x))


def _np(x):
    return keras.ops.convert_to_numpy(x)


# The spec's example (9.9-9.10): d = 2, m = 1, e = (1, 0), y = 0, c_0 = (0, 0), c_1 = (0.5, 0), others far away.
CENTRES = np.array([[0.0, 0.0], [0.5, 0.0], [100.0, 100.0], [-100.0, 100.0]], np.float32)
E = np.array([[1.0, 0.0]], np.float32)
Y = np.array([0])


def test_distance_is_half_squared_l2():
    d = _np(tc_distances(E, CENTRES))
    np.testing.assert_allclose(d[0, :2], [0.5, 0.125])
    assert d[0, 2] == pytest.approx(0.5 * (99.0 ** 2 + 100.0 ** 2))
    np.testing.assert_allclose(_np(tc_distances(E, CENTRES, "euclidean"))[0, :2], [1.0, 0.5], rtol=1e-6)


def test_hand_example_loss_and_gradient():
    """9.9: D_p = 0.5, D_q = 0.125, loss 1.375 (sum); dL/de = c_1 - c_0 = (0.5, 0); no gradient to the centres."""
    per_sample, q = tc_terms(E, Y, CENTRES, 1.0)
    assert _np(q).tolist() == [1]
    assert _f(per_sample[0]) == 1.375
    e = tf.Variable(E)
    c = tf.Variable(CENTRES)
    with tf.GradientTape(persistent=True) as tape:
        value = tc_loss(e, Y, c, 1.0, reduction="sum")
    assert _f(value) == 1.375
    np.testing.assert_array_equal(tape.gradient(value, e).numpy(), [[0.5, 0.0]])
    assert tape.gradient(value, c) is None  # centres pass through stop_gradient


def test_mean_reduction_divides_loss_and_gradient_by_m():
    m = 4
    e = tf.Variable(np.repeat(E, m, axis=0))
    y = np.zeros(m, np.int64)
    with tf.GradientTape() as tape:
        value = tc_loss(e, y, CENTRES, 1.0)  # mean (the default)
    assert _f(value) == 1.375
    np.testing.assert_array_equal(tape.gradient(value, e).numpy(), np.tile([[0.5 / m, 0.0]], (m, 1)))
    assert _f(tc_loss(e, y, CENTRES, 1.0, reduction="sum")) == 1.375 * m


def test_loss_nonnegative_and_limits():
    """9.7: >= 0; equal centres and e_i on them -> m per sample; e_i on well-separated own centres -> 0."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        e = rng.normal(size=(16, 8)).astype(np.float32)
        c = rng.normal(size=(5, 8)).astype(np.float32)
        y = rng.integers(0, 5, 16)
        per_sample, _ = tc_terms(e, y, c, 2.0)
        assert _np(per_sample).min() >= 0.0
    same = np.tile(rng.normal(size=(1, 8)).astype(np.float32), (5, 1))
    y = rng.integers(0, 5, 12)
    assert _f(tc_loss(same[y], y, same, 11.0)) == pytest.approx(11.0)
    assert _f(tc_loss(same[y], y, same, 11.0, reduction="sum")) == pytest.approx(11.0 * 12)
    spread = (10.0 * np.eye(5, 8)).astype(np.float32)  # pairwise half squared distances 100 > m
    assert _f(tc_loss(spread[y], y, spread, 11.0)) == 0.0
    assert _f(tc_loss(spread[y], y, spread, 150.0)) == pytest.approx(50.0)  # 0 + 150 - 100


def test_negative_centre_is_never_the_own_class():
    """9.8: q_i != y_i even when the own centre is the nearest centre overall."""
    rng = np.random.default_rng(1)
    c = rng.normal(size=(7, 4)).astype(np.float32) * 5
    y = np.arange(7).repeat(3)
    e = c[y] + rng.normal(size=(21, 4)).astype(np.float32) * 0.01  # each sample sits on its own centre
    _, q = tc_terms(e, y, c, 1.0)
    q = _np(q)
    assert np.all(q != y)
    d = _np(tc_distances(e, c))
    assert np.all(d.argmin(axis=1) == y)  # the own centre is the nearest overall
    masked = np.where(np.eye(7)[y] > 0, np.inf, d)
    np.testing.assert_array_equal(q, masked.argmin(axis=1))


def test_centre_rule_hand_example():
    """9.10: alpha = 0.5 moves c_0 to (0.25, 0) and c_1 to (0.375, 0) exactly; other centres stay."""
    new = _np(tc_centre_update(E, Y, CENTRES, 1.0, 0.5))
    np.testing.assert_array_equal(new[0], [0.25, 0.0])
    np.testing.assert_array_equal(new[1], [0.375, 0.0])
    np.testing.assert_array_equal(new[2:], CENTRES[2:])


def test_centre_rule_denominators_are_one_plus_count():
    two = np.repeat(E, 2, axis=0)
    new = _np(tc_centre_update(two, np.zeros(2), CENTRES, 1.0, 0.5))
    # Delta_0 = 2 (1, 0) / 3; Delta_1 = -2 (0.5, 0) / 3
    np.testing.assert_allclose(new[0], [1.0 / 3.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(new[1], [0.5 - 1.0 / 6.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(new[2:], CENTRES[2:])


def test_inactive_samples_move_nothing():
    """A sample with Lt = 0 leaves every centre unchanged, also next to an active one; weight 0 = absent."""
    far = np.array([[100.0, 100.2]], np.float32)  # on c_2, far from every other centre: Lt = 0
    assert _f(tc_terms(far, [2], CENTRES, 1.0)[0][0]) == 0.0
    np.testing.assert_array_equal(_np(tc_centre_update(far, [2], CENTRES, 1.0, 0.5)), CENTRES)
    both = _np(tc_centre_update(np.vstack([E, far]), [0, 2], CENTRES, 1.0, 0.5))
    np.testing.assert_array_equal(both, _np(tc_centre_update(E, Y, CENTRES, 1.0, 0.5)))
    weighted = _np(tc_centre_update(np.vstack([E, E]), [0, 0], CENTRES, 1.0, 0.5, sample_weight=[1.0, 0.0]))
    np.testing.assert_array_equal(weighted, _np(tc_centre_update(E, Y, CENTRES, 1.0, 0.5)))


def test_loss_sample_weight_is_a_weighted_mean():
    e = np.vstack([E, [[100.0, 100.2]]]).astype(np.float32)
    y = [0, 2]
    assert _f(tc_loss(e, y, CENTRES, 1.0)) == pytest.approx(1.375 / 2)
    assert _f(tc_loss(e, y, CENTRES, 1.0, sample_weight=[1.0, 0.0])) == pytest.approx(1.375)


def test_loss_layer_update_returns_the_rule():
    loss = TripletCentreLoss(num_classes=4, embedding_dim=2, margin=1.0, alpha=0.5, name="tc")
    loss.centres.assign(CENTRES)
    assert _f(loss.compute(Y, {"embedding": E})) == 1.375
    pairs = list(loss.update(Y, {"embedding": E}).items())
    assert len(pairs) == 1 and pairs[0][0] is loss.centres
    np.testing.assert_array_equal(_np(pairs[0][1])[:2], [[0.25, 0.0], [0.375, 0.0]])
    np.testing.assert_array_equal(loss.centres.numpy(), CENTRES)  # update() only returns the new value


def test_optimizer_centres_are_trainable_and_get_gradients():
    loss = TripletCentreLoss(num_classes=4, embedding_dim=2, margin=1.0, centre_update="optimizer")
    assert loss.centres.trainable and loss.update(Y, {"embedding": E}) is None
    loss.centres.assign(CENTRES)
    with tf.GradientTape() as tape:
        value = loss.compute(Y, {"embedding": E})
    grad = tape.gradient(value, loss.centres).numpy()
    # dL/dc_0 = -(e - c_0) = (-1, 0); dL/dc_1 = +(e - c_1) = (0.5, 0)
    np.testing.assert_allclose(grad[:2], [[-1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_array_equal(grad[2:], 0.0)


def test_centre_initialisation():
    """9.12: (7, 512), N(0, 0.01^2), non-trainable."""
    keras.utils.set_random_seed(3)
    (loss,) = daf_losses(7)
    c = loss.centres.numpy()
    assert c.shape == (7, 512) and not loss.centres.trainable
    assert abs(c.mean()) < 0.001 and c.std() == pytest.approx(0.01, rel=0.05)
    assert loss.weight == pytest.approx(0.007) and loss.margin == 11.0 and loss.alpha == 0.5
    seeded = [TripletCentreLoss(7, 16, seed=5).centres.numpy() for _ in range(2)]
    np.testing.assert_array_equal(seeded[0], seeded[1])
    assert daf_losses(7, tc=False) == []


def test_loss_config_round_trip():
    loss = TripletCentreLoss(5, 32, margin=13.0, alpha=0.3, reduction="sum", distance="euclidean", weight=0.013,
                             name="tc")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is TripletCentreLoss and clone.get_config() == loss.get_config()
    assert ferzoo.get_loss("daf_tc", num_classes=3, embedding_dim=4).centres.shape == (3, 4)
    with pytest.raises(ValueError, match="reduction must be one of"):
        TripletCentreLoss(reduction="max")
    with pytest.raises(ValueError, match="distance must be one of"):
        tc_distances(E, CENTRES, "cosine")


def test_total_loss_is_ce_plus_lambda_tc(compact, faces48):
    """9.11: the model's loss is CE + lambda * TC; lambda = 0 gives the CE-only gradients (NOtcl)."""
    y = np.arange(8) % 7
    compact.compile(recipe="synthetic")  # no label smoothing
    out = compact(faces48, training=False)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, out["logits"])
    tc = tc_loss(out["embedding"], y, compact.aux_losses[0].centres, 11.0)
    assert _f(tc) > 0.0
    total = compact.compute_loss(faces48, y, out, training=False)
    assert _f(total) == pytest.approx(_f(ce) + 0.007 * _f(tc), rel=1e-6)
    compact.compile()  # the compact CPU recipe: label smoothing 0.1 on the CE term only
    smoothed = keras.ops.mean(keras.losses.categorical_crossentropy(
        np.eye(7, dtype="float32")[y], out["logits"], from_logits=True, label_smoothing=0.1))
    total = compact.compute_loss(faces48, y, out, training=False)
    assert _f(total) == pytest.approx(_f(smoothed) + 0.007 * _f(tc), rel=1e-6)
    assert _f(smoothed) != pytest.approx(_f(ce), rel=1e-6)

    keras.utils.set_random_seed(4)
    zero = ferzoo.build("daf_cnn_compact", num_classes=7, tc_weight=0.0)
    zero.compile()
    plain = ferzoo.build("daf_cnn_compact", num_classes=7, tc=False)
    plain.compile()
    plain.set_weights(zero.get_weights()[:len(plain.get_weights())])
    for a, b in zip(plain.weights, zero.weights):
        assert a.path == b.path

    def grads(model):
        with tf.GradientTape() as tape:
            pred = model(faces48, training=False)
            value = model.compute_loss(faces48, y, pred, training=False)
        return value, tape.gradient(value, model.trainable_variables)

    (v0, g0), (v1, g1) = grads(zero), grads(plain)
    assert _f(v0) == pytest.approx(_f(v1), rel=1e-6)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-8)
