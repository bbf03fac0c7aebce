"""Eq. (3)-(4): cross-entropy + lambda ||W||^2 on hand-computed cases and on the model; the recipe's optimizer and
schedule; float16 safety."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo.recipes import learning_rate_at
from ferzoo.train import dtype_policy
from ferzoo_plugins.lnlattennet import layers as L
from ferzoo_plugins.lnlattennet.losses import cross_entropy, kernel_variables, l2_penalty, model_l2, objective


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_cross_entropy_hand_case():
    # softmax([0, ln 3]) = [1/4, 3/4]; labels 1 and 0: (-ln 0.75 - ln 0.25) / 2
    logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], "float32")
    probs = _np(keras.ops.softmax(logits))
    np.testing.assert_allclose(probs, [[0.25, 0.75], [0.25, 0.75]], rtol=1e-6)
    expected = (-math.log(0.75) - math.log(0.25)) / 2  # 0.8369882
    assert float(cross_entropy(np.array([1, 0]), probs)) == pytest.approx(expected, rel=1e-6)
    assert float(objective(np.array([1, 0]), logits, [], 1e-4)) == pytest.approx(expected, rel=1e-6)


def test_l2_penalty_hand_case():
    kernels = [np.array([[1.0, 2.0]], "float32"), np.array([3.0], "float32")]
    assert float(l2_penalty(kernels, 1e-4)) == pytest.approx(1.4e-3, rel=1e-6)  # 1e-4 * (1 + 4 + 9), no 1/2
    logits = np.array([[0.0, math.log(3.0)]], "float32")
    assert float(objective(np.array([1]), logits, kernels, 1e-4, gamma=2.0)) == pytest.approx(
        -math.log(0.75) + 2 * 1.4e-3, rel=1e-6)


def test_model_l2_is_lambda_times_squared_kernels_only(tiny):
    kernels = kernel_variables(tiny)
    regularised = [v for v in tiny.trainable_variables if getattr(v, "regularizer", None) is not None]
    assert {v.path for v in regularised} == {v.path for v in kernels}
    assert any(v.path == "simplenets/conv1_1/kernel" for v in kernels)  # the per-patch kernels are covered
    assert any(v.path == "up6/kernel" for v in kernels) and any(v.path == "nonlocal_attention/query/kernel"
                                                                 for v in kernels)
    assert all(not v.path.endswith("bias") for v in regularised)
    by_hand = 1e-4 * sum(float(np.sum(np.square(v.numpy()))) for v in kernels)
    assert float(model_l2(tiny)) == pytest.approx(by_hand, rel=1e-5)
    assert float(model_l2(tiny)) > 0


def test_compute_loss_is_cross_entropy_plus_l2(tiny_config, faces):
    keras.utils.set_random_seed(2)
    model = ferzoo.build("lnlattennet", dropout=0.0, **tiny_config)
    model.compile()
    y = np.array([0, 3, 6, 2])
    pred = model(faces, training=False)
    total = float(model.compute_loss(faces, y, pred, training=True))
    ce = float(cross_entropy(y, pred["probabilities"]))
    l2 = 1e-4 * sum(float(np.sum(np.square(v.numpy()))) for v in kernel_variables(model))
    assert total == pytest.approx(ce + l2, rel=1e-5)
    plain = ferzoo.build("lnlattennet", dropout=0.0, l2=0.0, **tiny_config)
    plain.set_weights(model.get_weights())
    plain.compile()
    assert plain.losses == []
    assert float(plain.compute_loss(faces, y, plain(faces, training=False), training=True)) == pytest.approx(ce,
                                                                                                            rel=1e-5)


def test_compile_uses_the_paper_optimizer_and_schedule(tiny):
    tiny.compile()
    opt = tiny.optimizer
    assert isinstance(opt, keras.optimizers.Adam)
    assert float(opt.learning_rate.numpy()) == pytest.approx(3e-4)
    assert (opt.beta_1, opt.beta_2) == (0.9, 0.999)
    rec = tiny.recipe()
    assert rec["schedule"] == {"type": "exponential", "gamma": 0.95}
    for e in range(24):
        assert learning_rate_at(rec["schedule"], 3e-4, e) == pytest.approx(3e-4 * 0.95 ** e)
    assert learning_rate_at(rec["schedule"], 3e-4, 23) == pytest.approx(9.2e-5, rel=5e-3)
    assert tiny.aux_losses == [] and rec["coupled_weight_decay"] == 0.0  # L2 is in the graph, not coupled


def test_the_correlation_is_float32_under_float16():
    """A float16 matmul of 512 ReLU products overflows; the layer computes R in float32 under mixed_float16."""
    keras.utils.set_random_seed(3)
    f5 = np.full((1, 9, 9, 64), 100.0, "float32")
    with dtype_policy("mixed_float16"):
        layer = L.NonLocalAttention(4, 512)
        w_g, r, s = layer(f5)
        q, k, _ = layer.qkv(f5)
    assert q.dtype == "float16" and r.dtype == "float32" and w_g.dtype == "float32" and s.dtype == "float16"
    naive = tf.matmul(tf.reshape(q, (1, 16, 512)), tf.reshape(k, (1, 16, 512)), transpose_b=True)
    assert not np.isfinite(naive.numpy()).all()  # the float16 product itself overflows here
    assert np.isfinite(_np(r)).all() and np.isfinite(_np(w_g)).all() and np.isfinite(_np(s)).all()
    np.testing.assert_allclose(_np(w_g).sum(), 1.0, atol=1e-5)


def test_losses_are_finite_and_float32_under_mixed_float16(tiny_config, faces):
    keras.utils.set_random_seed(4)
    reference = ferzoo.build("lnlattennet", dropout=0.0, **tiny_config)
    with dtype_policy("mixed_float16"):
        model = ferzoo.build("lnlattennet", dropout=0.0, **tiny_config)
        model.set_weights(reference.get_weights())
        model.compile()
        y = np.array([1, 2, 3, 4])
        with tf.GradientTape() as tape:
            pred = model(faces, training=True)
            total = model.compute_loss(faces, y, pred, training=True)
        grads = tape.gradient(total, model.trainable_variables)
    assert pred["logits"].dtype == "float16" and pred["probabilities"].dtype == "float32"
    assert total.dtype == "float32" and np.isfinite(float(total))
    assert all(g is not None and np.isfinite(_np(g)).all() for g in grads)
    # the L2 term reads the float32 variables: identical to the float32 model's
    assert float(model_l2(model)) == pytest.approx(float(model_l2(reference)), rel=1e-7)
    reference.compile()
    ref_total = float(reference.compute_loss(faces, y, reference(faces, training=True), training=True))
    assert float(total) == pytest.approx(ref_total, rel=1e-2)
    np.testing.assert_allclose(_np(pred["patch_weights"]).sum(-1), 1.0, atol=1e-4)
