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


# -- batch-norm statistics recomputed after training ------------------------------------------------------------
def batch_norm_layers(model) -> list:
    """The batch-norm layers of ``model`` (nested ones included) whose moving statistics training updates: those
    with ``trainable`` set (a frozen batch norm keeps its statistics in training too)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recalibrate_batch_norm(model, images, batch_size: int = 256, max_batches: int | None = None) -> int:
    """Recompute every trainable batch norm's moving mean and variance of ``model`` from ``images`` ("precise
    batch norm"): the moving statistics become the plain average of the per-batch statistics over the data,
    instead of the exponential average (momentum 0.99) that training leaves.

    Why: after a short training with weight decay, the activations a batch norm sees keep shrinking (the decay
    pulls the kernels in, the normalisation hides it from the loss), and the moving statistics, which average
    about the last hundred steps, lag behind: the model is right in training mode and near-constant in
    inference. Measured on the compact DAF-CNN after 128 steps on generated data: 100% in training mode, 34-47%
    (one class) in inference, 100% after recalibrating (``tests/core/test_layers.py``; the explanation tests).

    ``images`` is an array of inputs (batched here by ``batch_size``) or a ``tf.data.Dataset`` of input batches
    or ``(inputs, labels[, weights])`` batches; ``max_batches`` stops early. Only the batch norms' moving
    statistics change: every other non-trainable variable (centres, counters, random-generator states) is
    restored, and each layer's ``momentum`` is put back. Returns the number of images seen."""
    import numpy as np
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"recalibrate_batch_norm: batch_size must be >= 1, got {batch_size}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"recalibrate_batch_norm: max_batches must be >= 1 or None, got {max_batches}")
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    statistics = {id(v) for layer in layers for v in (layer.moving_mean, layer.moving_variance)}
    # forward passes change no trainable weight; the other state they may move is kept and put back
    kept = [(v, np.array(v.numpy())) for v in model.non_trainable_variables if id(v) not in statistics]
    momenta = [layer.momentum for layer in layers]
    if isinstance(images, tf.data.Dataset):
        batches = (b[0] if isinstance(b, (tuple, list)) else b for b in images)
    else:
        images = np.asarray(images)
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    seen = count = 0
    try:
        for count, batch in enumerate(batches, start=1):
            for layer in layers:  # batch k gets weight 1/k: the running mean of the batch statistics
                layer.momentum = (count - 1) / count
            model(batch, training=True)  # eager, so each call reads the momentum set just above
            seen += int(tf.shape(batch)[0])
            if max_batches is not None and count >= max_batches:
                break
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for variable, value in kept:
            variable.assign(value)
    if count == 0:
        raise ValueError("recalibrate_batch_norm: no images given")
    return seen
