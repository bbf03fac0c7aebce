"""The affine grid sampler (spec 2.3, 9.4, 9.5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferzoo_plugins.deep_emotion.layers import AffineGridSampler


def _warp(u, theta):
    u = np.asarray(u, np.float32)
    theta = np.broadcast_to(np.asarray(theta, np.float32), (u.shape[0], 6))
    return AffineGridSampler()([u, theta]).numpy()


def _reference(u, theta):
    """Direct evaluation of V[i,j,c] = sum_{n,m} U[n,m,c] max(0, 1-|u-m|) max(0, 1-|v-n|) (spec 2.3)."""
    h, w = u.shape[:2]
    a = np.asarray(theta, np.float64).reshape(2, 3)
    out = np.zeros_like(u, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            xs, ys = a @ np.array([(2 * j + 1) / w - 1, (2 * i + 1) / h - 1, 1.0])
            uu, vv = ((xs + 1) * w - 1) / 2, ((ys + 1) * h - 1) / 2
            wx = np.maximum(0, 1 - np.abs(uu - np.arange(w)))
            wy = np.maximum(0, 1 - np.abs(vv - np.arange(h)))
            out[i, j] = np.einsum("nmc,n,m->c", u, wy, wx)
    return out


@pytest.fixture
def maps():
    return np.random.default_rng(0).normal(size=(3, 8, 8, 4)).astype(np.float32)


def test_identity_on_feature_map_and_image():
    rng = np.random.default_rng(1)
    for shape in ((2, 9, 9, 10), (2, 48, 48, 1)):
        u = rng.uniform(0, 1, shape).astype(np.float32)
        assert np.max(np.abs(_warp(u, [1, 0, 0, 0, 1, 0]) - u)) < 1e-5


def test_shift_in_x_moves_content_left(maps):
    v = _warp(maps, [1, 0, 0.5, 0, 1, 0])
    assert v.shape == maps.shape
    np.testing.assert_allclose(v[:, :, :6], maps[:, :, 2:], atol=1e-5)
    np.testing.assert_array_equal(v[:, :, 6:], 0)


def test_shift_in_y_moves_content_up(maps):
    v = _warp(maps, [1, 0, 0, 0, 1, 0.5])
    np.testing.assert_allclose(v[:, :6], maps[:, 2:], atol=1e-5)
    np.testing.assert_array_equal(v[:, 6:], 0)


def test_zoom_in_around_the_centre(maps):
    v = _warp(maps, [0.5, 0, 0, 0, 0.5, 0])
    # the output covers the central 4x4 source region: corners sample (1.75, 1.75) ... (5.25, 5.25)
    np.testing.assert_allclose(v[:, 0, 0], 0.0625 * maps[:, 1, 1] + 0.1875 * maps[:, 1, 2] + 0.1875 * maps[:, 2, 1]
                               + 0.5625 * maps[:, 2, 2], atol=1e-5)
    for b in range(maps.shape[0]):
        np.testing.assert_allclose(v[b], _reference(maps[b], [0.5, 0, 0, 0, 0.5, 0]), atol=1e-5)


@pytest.mark.parametrize("theta", [[0.9, 0.2, -0.1, -0.3, 1.1, 0.25], [1.3, -0.4, 0.6, 0.2, 0.7, -0.8],
                                   [0, 1, 0, -1, 0, 0]])
def test_matches_the_bilinear_formula(maps, theta):
    v = _warp(maps, theta)
    for b in range(maps.shape[0]):
        np.testing.assert_allclose(v[b], _reference(maps[b], theta), atol=1e-5)


def test_per_sample_theta_and_2x3_input(maps):
    thetas = np.array([[1, 0, 0, 0, 1, 0], [1, 0, 0.5, 0, 1, 0], [0.5, 0, 0, 0, 0.5, 0]], np.float32)
    v6 = AffineGridSampler()([maps, thetas]).numpy()
    v23 = AffineGridSampler()([maps, thetas.reshape(3, 2, 3)]).numpy()
    np.testing.assert_array_equal(v6, v23)
    for b in range(3):
        np.testing.assert_allclose(v6[b], _reference(maps[b], thetas[b]), atol=1e-5)


def test_gradients_reach_map_and_theta(maps):
    u = tf.constant(maps)
    # generic values: no sample lands exactly on a pixel, where the bilinear weights have a kink and autodiff
    # returns a one-sided derivative that a central difference does not reproduce
    theta = tf.constant(np.tile([[0.913, 0.137, 0.0571, -0.0893, 1.047, 0.0231]], (3, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch([u, theta])
        loss = tf.reduce_sum(AffineGridSampler()([u, theta]) ** 2)
    gu, gt = tape.gradient(loss, [u, theta])
    assert float(tf.reduce_sum(tf.abs(gu))) > 0
    assert np.all(np.abs(gt.numpy()) > 0)
    # the theta gradient agrees with a central finite difference
    eps = 1e-3
    for k in range(6):
        d = np.zeros((3, 6), np.float32)
        d[:, k] = eps
        f = lambda t: float(tf.reduce_sum(AffineGridSampler()([u, t]) ** 2))  # noqa: E731
        num = (f(theta + d) - f(theta - d)) / (2 * eps)
        assert float(tf.reduce_sum(gt[:, k])) == pytest.approx(num, rel=1e-2, abs=1e-2)


def test_bad_theta_shape_is_named(maps):
    with pytest.raises(ValueError, match=r"theta must have shape \(B, 6\) or \(B, 2, 3\), got \(3, 4\)"):
        AffineGridSampler()([maps, np.zeros((3, 4), np.float32)])
    with pytest.raises(ValueError, match="map must have shape"):
        AffineGridSampler()([np.zeros((3, 8, 8), np.float32), np.zeros((3, 6), np.float32)])


def test_symbolic_use_keeps_the_shape():
    x = keras.Input((9, 9, 10))
    t = keras.Input((6,))
    assert tuple(AffineGridSampler()([x, t]).shape) == (None, 9, 9, 10)
