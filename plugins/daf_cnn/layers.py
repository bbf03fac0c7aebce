"""DAF-CNN's 3D attention (spec section 2.1-2.2): channel attention, then spatial attention (CBAM, applied once).

Both layers return the *attention map*, not the refined features, so the model graph shows the two products
``M' = A_c * X`` and ``M = A_s * M'`` as plain ``Multiply`` layers (standard TFLite ops; Grad-CAM++ finds ``M``
as the last 4-D layer) and the maps can be model outputs (the ``spatial_attention`` explainer reads ``A_s``).

* :class:`ChannelAttention`: ``A_c = sigmoid(Net(avgpool_hw X) + Net(maxpool_hw X))`` with the *shared*
  ``Net = FC2(ReLU(FC1 v))``, ``FC1 = Dense(C / r)``, ``FC2 = Dense(C)`` (linear); shape ``(B, 1, 1, C)``.
* :class:`SpatialAttention`: ``A_s = sigmoid(K * [mean_c M'; max_c M'])`` with ``K`` a ``k x k`` 'same' Conv2D,
  one filter, no bias; shape ``(B, H, W, 1)``.

Initialisers follow kobiso/CBAM-keras: he_normal kernels, zero biases.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "ferzoo_daf_cnn"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelAttention(keras.layers.Layer):
    """``X (B, H, W, C) -> A_c (B, 1, 1, C)`` in (0, 1): Eqs. 1-2 with one MLP shared by the avg and max branch."""

    def __init__(self, reduction: int = 8, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"{self.name}: reduction must be >= 1, got {reduction!r}")
        self.reduction = int(reduction)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: expected a (B, H, W, C) map with a known C, got {tuple(input_shape)}")
        channels = int(input_shape[-1])
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(f"{self.name}: {channels} channels / reduction {self.reduction} leaves no hidden unit")
        init = keras.initializers.serialize(self.kernel_initializer)
        self.fc1 = keras.layers.Dense(hidden, activation="relu", kernel_initializer=keras.initializers.get(init),
                                      bias_initializer="zeros", dtype=self.dtype_policy, name="fc1")
        self.fc2 = keras.layers.Dense(channels, kernel_initializer=keras.initializers.get(init),
                                      bias_initializer="zeros", dtype=self.dtype_policy, name="fc2")
        self.fc1.build((None, channels))
        self.fc2.build((None, hidden))
        self.built = True

    def net(self, v):
        """The shared two-layer MLP of Eq. 2 on pooled vectors ``(B, C)``."""
        return self.fc2(self.fc1(v))

    def call(self, x):
        v_avg = ops.mean(x, axis=(1, 2))
        v_max = ops.max(x, axis=(1, 2))
        a = ops.sigmoid(self.net(v_avg) + self.net(v_max))
        return ops.expand_dims(ops.expand_dims(a, 1), 1)  # (B, 1, 1, C), no dynamic-shape ops

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialAttention(keras.layers.Layer):
    """``M' (B, H, W, C) -> A_s (B, H, W, 1)`` in (0, 1): Eq. 3, channel-wise mean and max maps, a ``k x k``
    'same' convolution (one filter, no bias, no BN), sigmoid."""

    def __init__(self, kernel_size: int = 7, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if int(kernel_size) < 1:
            raise ValueError(f"{self.name}: kernel_size must be >= 1, got {kernel_size!r}")
        self.kernel_size = int(kernel_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expected a (B, H, W, C) map, got {tuple(input_shape)}")
        self.conv = keras.layers.Conv2D(1, self.kernel_size, padding="same", use_bias=False,
                                        kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                        name="conv")
        self.conv.build((None, input_shape[1], input_shape[2], 2))
        self.built = True

    @staticmethod
    def pooled(x):
        """``[m_avg; m_max]`` (B, H, W, 2): mean and max over the channel axis."""
        return ops.concatenate([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1)

    def call(self, x):
        return ops.sigmoid(self.conv(self.pooled(x)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[2], 1)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def attention_3d(x, reduction: int = 8, kernel_size: int = 7, prefix: str = "attention"):
    """The 3D attention module on a functional tensor: returns ``(M, A_c, A_s)``.

    ``M' = A_c * X`` (Eq. 4), ``M = A_s * M'`` (Eq. 5), sequential (channel first). Layer names:
    ``{prefix}_channel`` (A_c), ``{prefix}_channel_apply`` (M'), ``{prefix}_spatial`` (A_s), ``{prefix}_out`` (M).
    """
    a_c = ChannelAttention(reduction, name=f"{prefix}_channel")(x)
    refined = keras.layers.Multiply(name=f"{prefix}_channel_apply")([x, a_c])
    a_s = SpatialAttention(kernel_size, name=f"{prefix}_spatial")(refined)
    out = keras.layers.Multiply(name=f"{prefix}_out")([refined, a_s])
    return out, a_c, a_s
