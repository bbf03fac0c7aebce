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


# -- recalibrate_batch_norm ---------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="ferzoo_tests")
class _CountsTrainingCalls(keras.layers.Layer):
    """Identity with a non-trainable counter that training-mode calls increase (like rule-updated centres)."""

    def build(self, shape):
        self.calls = self.add_weight(name="calls", shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.calls.assign_add(1.0)
        return x


def _bn_net(kind):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    bn = kind(name="bn")(_CountsTrainingCalls(name="counter")(conv))
    frozen = keras.layers.BatchNormalization(name="frozen")
    out = frozen(keras.layers.Conv2D(3, 1, name="conv2")(bn))
    frozen.trainable = False
    return keras.Model(inputs, out)


@pytest.mark.parametrize("kind", [FusedBatchNormalization, keras.layers.BatchNormalization])
def test_recalibrate_batch_norm_sets_the_average_of_the_batch_statistics(kind):
    from ferzoo.layers import recalibrate_batch_norm

    model = _bn_net(kind)
    bn, frozen = model.get_layer("bn"), model.get_layer("frozen")
    bn.moving_mean.assign(np.full(4, 50.0, "float32"))  # statistics a short training left far off
    bn.moving_variance.assign(np.full(4, 1e-3, "float32"))
    frozen_before = [np.array(frozen.moving_mean), np.array(frozen.moving_variance)]
    counter_before = float(model.get_layer("counter").calls.numpy())
    x = np.random.default_rng(4).normal(3.0, 2.0, (40, 6, 6, 2)).astype("float32")

    assert recalibrate_batch_norm(model, x, batch_size=16) == 40  # batches of 16, 16 and 8

    acts = np.asarray(keras.Model(model.input, model.get_layer("conv").output)(x))
    batches = [acts[0:16], acts[16:32], acts[32:40]]
    mean = np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0)  # each batch weighs the same
    variance = np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(bn.moving_mean, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, variance, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.99  # put back
    np.testing.assert_array_equal(frozen.moving_mean, frozen_before[0])  # a frozen batch norm keeps its own
    np.testing.assert_array_equal(frozen.moving_variance, frozen_before[1])
    assert float(model.get_layer("counter").calls.numpy()) == counter_before  # other state restored


def test_recalibrate_batch_norm_reads_datasets_and_stops_at_max_batches():
    from ferzoo.layers import recalibrate_batch_norm

    model = _bn_net(FusedBatchNormalization)
    x = np.random.default_rng(5).normal(0.0, 1.0, (24, 6, 6, 2)).astype("float32")
    labelled = tf.data.Dataset.from_tensor_slices((x, np.zeros(24, "int32"))).batch(8)
    assert recalibrate_batch_norm(model, labelled, max_batches=2) == 16
    acts = np.asarray(keras.Model(model.input, model.get_layer("conv").output)(x[:16]))
    expected = np.mean([acts[:8].mean(axis=(0, 1, 2)), acts[8:].mean(axis=(0, 1, 2))], axis=0)
    np.testing.assert_allclose(model.get_layer("bn").moving_mean, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no images"):
        recalibrate_batch_norm(model, x[:0])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        recalibrate_batch_norm(model, x, batch_size=0)
