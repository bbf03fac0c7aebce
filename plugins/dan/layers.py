"""DAN's layers: the spatial and channel attention units of one head (MAN) and the attention fusion (AFN).

Shapes are channels_last. Sub-layer names mirror the official module names (``conv1x1`` = ``sa.conv1x1``,
``attention_0`` = ``ca.attention.0``, ...) so the weight converter can address them.
"""

from __future__ import annotations

import keras
from keras import ops

from ferzoo.backbones.resnet import BN_EPSILON, BN_MOMENTUM
from ferzoo.layers import FusedBatchNormalization, inference_constants

PACKAGE = "ferzoo_dan"


def head_conv_initializer():
    """The official head init for convs: kaiming normal, fan_out, ReLU gain, untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def head_dense_initializer():
    """The official head init for linear layers: N(0, 0.001^2)."""
    return keras.initializers.RandomNormal(0.0, 0.001)


def _bn(name):
    return FusedBatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialAttention(keras.layers.Layer):
    """Spatial attention unit H_j: ``s = x * m`` with ``m = sum_c ReLU(BN(conv3x3 y) + BN(conv1x3 y) +
    BN(conv3x1 y))`` and ``y = BN(conv1x1 x)``. ``m`` is (B, H, W, 1), >= 0, unbounded (no sigmoid).
    The three branch convs map back to the input width C; padding is symmetric, as in PyTorch."""

    BRANCHES = (("3x3", (3, 3), (1, 1)), ("1x3", (1, 3), (0, 1)), ("3x1", (3, 1), (1, 0)))

    def __init__(self, reduced_channels: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.reduced_channels = int(reduced_channels)
        self.conv1x1 = keras.layers.Conv2D(self.reduced_channels, 1, kernel_initializer=head_conv_initializer(),
                                           name="conv1x1")
        self.conv1x1_bn = _bn("conv1x1_bn")
        self.pads = {key: keras.layers.ZeroPadding2D(((p[0], p[0]), (p[1], p[1])), name=f"conv_{key}_pad")
                     for key, _, p in self.BRANCHES}
        self.bns = {key: _bn(f"conv_{key}_bn") for key, _, _ in self.BRANCHES}
        self.convs = {}

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.conv1x1.build(input_shape)
        self.conv1x1_bn.build((*input_shape[:-1], self.reduced_channels))
        for key, kernel, _ in self.BRANCHES:
            conv = keras.layers.Conv2D(channels, kernel, padding="valid", kernel_initializer=head_conv_initializer(),
                                       name=f"conv_{key}")
            conv.build((input_shape[0], None, None, self.reduced_channels))
            self.bns[key].build((*input_shape[:-1], channels))
            self.convs[key] = conv
        self.built = True

    def attention_map(self, x, training=None):
        """The map m (B, H, W, 1) for features x (B, H, W, C)."""
        folded = None if training else inference_constants(self)
        if folded is not None:
            return self._folded_map(x, folded)
        y = self.conv1x1_bn(self.conv1x1(x), training=training)
        z = None
        for key, _, _ in self.BRANCHES:
            branch = self.bns[key](self.convs[key](self.pads[key](y)), training=training)
            z = branch if z is None else z + branch
        return ops.sum(ops.relu(z), axis=-1, keepdims=True)

    def call(self, x, training=None):
        return x * self.attention_map(x, training=training)

    def inference_fold(self):
        """The unit's inference maths as two convolutions (numpy ``(kernel_1x1, bias_1x1, kernel_3x3, bias_3x3)``):
        each batch norm folded into the conv before it (``k * s``, ``b * s + beta - mean * s`` with ``s = gamma /
        sqrt(var + eps)``), and the 1x3 and 3x1 kernels, zero-padded to 3x3, added to the 3x3 one (each branch
        pads its input symmetrically by its kernel's half-size, so all three read the same window). The same map
        up to float rounding, with 2 of 4 convolutions; ``ferzoo.export.frozen_predictor`` uses it (see
        ``ferzoo.layers.inference_constants``)."""
        import numpy as np

        def affine(bn):
            gamma, beta, mean, var = (np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in
                                      (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
            scale = gamma / np.sqrt(var + bn.epsilon)
            return scale, beta - mean * scale

        def weights(conv):
            return (np.asarray(keras.ops.convert_to_numpy(conv.kernel), np.float64),
                    np.asarray(keras.ops.convert_to_numpy(conv.bias), np.float64))

        kernel, bias = weights(self.conv1x1)
        scale, shift = affine(self.conv1x1_bn)
        k1, b1 = kernel * scale, bias * scale + shift
        k3, b3 = 0.0, 0.0
        for key, _, pad in self.BRANCHES:
            kernel, bias = weights(self.convs[key])
            scale, shift = affine(self.bns[key])
            k3 = k3 + np.pad(kernel * scale, ((1 - pad[0], 1 - pad[0]), (1 - pad[1], 1 - pad[1]), (0, 0), (0, 0)))
            b3 = b3 + bias * scale + shift
        return tuple(np.asarray(v, np.float32) for v in (k1, b1, k3, b3))

    def _folded_map(self, x, folded):
        import tensorflow as tf

        k1, b1, k3, b3 = (tf.constant(v, dtype=x.dtype) for v in folded)
        y = tf.nn.bias_add(tf.nn.conv2d(x, k1, 1, "VALID"), b1)
        z = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(y, k3, 1, "SAME"), b3))
        return ops.sum(z, axis=-1, keepdims=True)

    def sublayer(self, name: str):
        """Sub-layer by name: ``conv1x1``, ``conv1x1_bn``, ``conv_3x3``, ``conv_3x3_bn``, ``conv_1x3``, ..."""
        if name == "conv1x1":
            return self.conv1x1
        if name == "conv1x1_bn":
            return self.conv1x1_bn
        for key, _, _ in self.BRANCHES:
            if name == f"conv_{key}":
                return self.convs[key]
            if name == f"conv_{key}_bn":
                return self.bns[key]
        raise KeyError(f"{self.name}: no sub-layer {name!r}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "reduced_channels": self.reduced_channels}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelAttention(keras.layers.Layer):
    """Channel attention unit H'_j on a feature map s (B, H, W, C): ``g = GAP(s)``, gate
    ``e = sigmoid(Dense_C(ReLU(BN(Dense_r(g)))))`` in (0, 1), output ``a = g * e`` (B, C), 0 <= a <= g."""

    def __init__(self, hidden_units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.attention_0 = keras.layers.Dense(self.hidden_units, kernel_initializer=head_dense_initializer(),
                                              name="attention_0")
        self.attention_1 = _bn("attention_1")
        self.attention_3 = None

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.attention_0.build((input_shape[0], channels))
        self.attention_1.build((input_shape[0], self.hidden_units))
        self.attention_3 = keras.layers.Dense(channels, kernel_initializer=head_dense_initializer(),
                                              name="attention_3")
        self.attention_3.build((input_shape[0], self.hidden_units))
        self.built = True

    def gate(self, pooled, training=None):
        h = ops.relu(self.attention_1(self.attention_0(pooled), training=training))
        return ops.sigmoid(self.attention_3(h))

    def call(self, s, training=None):
        pooled = ops.mean(s, axis=(1, 2))
        return pooled * self.gate(pooled, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionFusion(keras.layers.Layer):
    """Stack K head vectors (each (B, L)) into A (B, K, L) and, for K > 1, take log_softmax over the heads
    (paper eq. 5); K = 1 passes the head through unchanged (official code). Returns V."""

    def __init__(self, log_softmax: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.log_softmax = bool(log_softmax)

    def call(self, heads):
        heads = list(heads) if isinstance(heads, (list, tuple)) else [heads]
        stacked = ops.stack(heads, axis=1)
        if len(heads) > 1 and self.log_softmax:
            stacked = ops.log_softmax(stacked, axis=1)
        return stacked

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)) \
            else [input_shape]
        return (shapes[0][0], len(shapes), shapes[0][-1])

    def get_config(self):
        return {**super().get_config(), "log_softmax": self.log_softmax}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeadSum(keras.layers.Layer):
    """f = sum over heads of V (B, K, L) -> (B, L)."""

    def call(self, v):
        return ops.sum(v, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
