"""ferzoo.layers.FusedBatchNormalization: Keras BatchNormalization's maths through TensorFlow's fused kernel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferzoo.layers import FusedBatchNormalization


def _pair(shape, **kw):
    keras.utils.set_random_seed(0)
    ref, fused = keras.layers.BatchNormalization(**kw), FusedBatchNormalization(**kw)
    ref.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(1)
    for v_ref, v_fused in zip(ref.weights, fused.weights):
        value = rng.uniform(0.5, 1.5, v_ref.shape).astype("float32")
        v_ref.assign(value)
        v_fused.assign(value)
    return ref, fused


@pytest.mark.parametrize("center,scale", [(True, True), (False, False)])
def test_training_step_matches_keras_outputs_moving_statistics_and_gradients(center, scale):
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (6, 5, 4, 3)).astype("float32"))
    ref, fused = _pair(x.shape, momentum=0.9, epsilon=1e-5, center=center, scale=scale)
    initial_mean = np.asarray(fused.moving_mean)
    weights = tf.constant(np.random.default_rng(7).normal(0, 1, x.shape).astype("float32"))
    grads = []
    for layer in (ref, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * weights) + tf.reduce_sum(layer(x, training=True) ** 3)
        grads.append(tape.gradient(loss, [x, *layer.trainable_weights]))
    np.testing.assert_allclose(fused(x, training=False), ref(x, training=False), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean, ref.moving_mean, rtol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, ref.moving_variance, rtol=1e-5)  # biased batch variance
    assert not np.allclose(fused.moving_mean, initial_mean, atol=1e-3)  # the statistics moved
    for g_ref, g_fused in zip(*grads):
        np.testing.assert_allclose(g_fused, g_ref, rtol=1e-4, atol=1e-4 * float(np.abs(g_ref).max()))


def test_the_keras_code_path_can_be_chosen_per_layer():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(6).normal(0, 1, (2, 3, 3, 4)).astype("float32"))
    for fused_kernel, expected in ((True, True), (False, False)):
        layer = FusedBatchNormalization()
        layer.use_fused_kernel = fused_kernel
        layer.build(x.shape)
        graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(x).graph
        assert any(op.type == "FusedBatchNormV3" for op in graph.get_operations()) is expected


def test_inference_and_frozen_layers_use_the_moving_statistics():
    x = np.random.default_rng(2).normal(0, 1, (2, 3, 3, 4)).astype("float32")
    ref, fused = _pair(x.shape)
    np.testing.assert_allclose(fused(x, training=False), ref(x, training=False), rtol=1e-6, atol=1e-6)
    fused.trainable = ref.trainable = False
    before = np.asarray(fused.moving_mean)
    np.testing.assert_allclose(fused(x, training=True), ref(x, training=True), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(fused.moving_mean, before)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_compute_dtype_and_float32_statistics(policy):
    x = np.random.default_rng(3).normal(0, 1, (4, 6, 6, 8)).astype("float32")
    ref, _ = _pair(x.shape)
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = FusedBatchNormalization()
        layer.build(x.shape)
        for v_ref, v in zip(ref.weights, layer.weights):
            v.assign(v_ref)
        y = layer(tf.cast(x, layer.compute_dtype), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.dtype == layer.compute_dtype and layer.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y, "float32"), ref(x, training=True), atol=0.05)


def test_other_inputs_fall_back_to_keras_and_the_layer_serialises():
    x = np.random.default_rng(4).normal(0, 1, (5, 7)).astype("float32")
    ref, fused = _pair(x.shape)
    np.testing.assert_allclose(fused(x, training=True), ref(x, training=True), rtol=1e-6, atol=1e-6)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fused))
    assert type(clone) is FusedBatchNormalization and clone.get_config() == fused.get_config()
    assert keras.saving.get_registered_name(FusedBatchNormalization) == "ferzoo>BatchNormalization"


def test_weights_files_of_keras_batch_norm_and_the_fused_layer_are_interchangeable(tmp_path):
    def net(bn):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, bn(name="bn")(keras.layers.Conv2D(4, 3, name="conv")(inputs)))

    keras.utils.set_random_seed(5)
    plain = net(keras.layers.BatchNormalization)
    x = np.random.default_rng(5).normal(0, 1, (16, 8, 8, 3)).astype("float32")
    plain(x, training=True)  # moving statistics away from their initial values
    plain.save_weights(tmp_path / "plain.weights.h5")
    fused = net(FusedBatchNormalization)
    fused.load_weights(tmp_path / "plain.weights.h5")
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-5, atol=1e-5)
    fused(x * 2.0, training=True)
    fused.save_weights(tmp_path / "fused.weights.h5")
    plain.load_weights(tmp_path / "fused.weights.h5")
    np.testing.assert_allclose(plain(x, training=False), fused(x, training=False), rtol=1e-5, atol=1e-5)
