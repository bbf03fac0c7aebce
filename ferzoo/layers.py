"""Core Keras layers shared by several plugins."""

from __future__ import annotations

import contextlib

import keras


@keras.saving.register_keras_serializable(package="ferzoo")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's fused kernel (``FusedBatchNormV3``) for 4-D
    channels-last inputs: the same variables, the same training and inference maths (the moving variance is
    updated with the biased batch variance, as Keras does), one op instead of about ten.

    Why: Keras 3's TensorFlow backend normalises with ``tf.nn.batch_normalization`` (separate moments, Mul and
    Add ops), which TensorFlow's graph optimizer cannot fold into the preceding convolution; on this project's
    2-core CPU the fused kernel made DAN's training step at 224 x 224 1.26x (float32) and 1.78x (mixed bfloat16)
    as fast, batch-1 inference about the same (``benchmarks/bench_batchnorm.py``; ``BENCHMARKS.md``, CPU speed
    section). Other ranks, channels-first data, masks, renormalisation, synchronised statistics and
    non-TensorFlow backends use the parent's code.

    The class keeps Keras' name (registered as ``ferzoo>BatchNormalization``; :data:`FusedBatchNormalization` is
    an alias) because Keras 3 names a layer's group in a ``.weights.h5`` file after its class: with the same
    name, files written with Keras' layer and with this one are interchangeable, and a model that mixes both
    (a fused 4-D one, a 2-D one falling back) numbers its groups as before."""

    #: ``False`` (on the class or one layer, before the layer is first called) uses Keras' own code path
    use_fused_kernel = True

    def _fusable(self, inputs, mask) -> bool:
        return (self.use_fused_kernel and keras.backend.backend() == "tensorflow" and mask is None
                and len(inputs.shape) == 4 and self.axis in (-1, 3) and not self.renorm
                and not getattr(self, "synchronized", False))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16, tf.float16) else tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
        if training and self.trainable:
            empty = tf.zeros((0,), tf.float32)
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # the kernel's is Bessel-corrected
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon, exponential_avg_factor=1.0,
                data_format="NHWC", is_training=False)
        return tf.cast(y, self.compute_dtype)


#: the name this layer is imported under in ferzoo's models
FusedBatchNormalization = BatchNormalization


# -- constants folded for a frozen graph ------------------------------------------------------------------------
#: layer -> what its ``inference_fold()`` returned, while :func:`folded_for_inference` is active
_FOLDED = {}


def inference_constants(layer):
    """What ``layer.inference_fold()`` returned, while a frozen graph is being traced (else ``None``).

    A layer whose inference maths can be re-parameterised into fewer, equal ops (batch norms folded into the
    convolution before them, parallel branches merged) defines ``inference_fold()`` returning numpy arrays
    computed from its current weights, and uses them in ``call`` when this returns them and ``training`` is
    false. :class:`ferzoo.export.FrozenPredictor` turns this on only while it traces, so the constants are baked
    into its graph and never outlive the weights they came from; Keras' own calls, training and saved weights
    never see them."""
    return _FOLDED.get(id(layer), (None, None))[1]


def foldable_layers(model) -> list:
    """The layers of ``model`` (nested ones included) that define ``inference_fold()``."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if callable(getattr(layer, "inference_fold", None))]


@contextlib.contextmanager
def folded_for_inference(model):
    """Within the block, every layer of ``model`` with an ``inference_fold()`` method computes from its folded
    constants in inference (:func:`inference_constants`)."""
    added = []
    for layer in foldable_layers(model):
        if id(layer) not in _FOLDED:
            _FOLDED[id(layer)] = (layer, layer.inference_fold())  # the layer is kept so its id is not reused meanwhile
            added.append(id(layer))
    try:
        yield
    finally:
        for key in added:
            _FOLDED.pop(key, None)
