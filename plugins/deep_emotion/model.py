"""Deep-Emotion builder (Minaee et al. 2021, spec sections 2-3).

``build_deep_emotion(x, num_classes, **config)`` receives the core's normalised input (pixels / 255, so
[0, 1]) and returns ``{"logits", "features", "warped", "theta"}``:

* ``logits``   (B, num_classes), fc2 output; the core adds the softmax ``probabilities``.
* ``features`` (B, 50), the fc1 activations.
* ``warped``   what the spatial transformer produced: the 9x9x10 feature map (``stn_on="features"``) or the
  48x48x1 image (``stn_on="input"``); absent with ``stn_on="none"``.
* ``theta``    (B, 2, 3) affine parameters from the localisation net; absent with ``stn_on="none"``.
"""

from __future__ import annotations

import keras

from .layers import AffineGridSampler, BoundedTheta, localisation_net

STN_MODES = ("features", "input", "none")
DROPOUT_TYPES = ("elementwise", "spatial")



def build_deep_emotion(x, num_classes, *, stn_on="features", dropout=0.5, dropout_type="elementwise",
                       fc_dropout=0.0, batch_norm=False, fc1_activation="relu", fc_l2=0.001, filters=10, hidden=50,
                       init_std=0.05, kernel_initializer=None, loc_filters=(8, 10), loc_kernels=(3, 3), loc_hidden=32,
                       identity_init=True, theta_limit=None):
    if stn_on not in STN_MODES:
        raise ValueError(f"deep_emotion: config stn_on={stn_on!r} is not one of {list(STN_MODES)}")
    if dropout_type not in DROPOUT_TYPES:
        raise ValueError(f"deep_emotion: config dropout_type={dropout_type!r} is not one of {list(DROPOUT_TYPES)}")
    for key, value in (("dropout", dropout), ("fc_dropout", fc_dropout)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"deep_emotion: config {key}={value!r} must be in [0, 1)")
    if batch_norm not in (False, True, "all"):
        raise ValueError(f"deep_emotion: config batch_norm={batch_norm!r} is not one of [false, true, 'all']")
    if theta_limit is not None and not float(theta_limit) > 0:
        raise ValueError(f"deep_emotion: config theta_limit={theta_limit!r} must be null (unbounded) or > 0")
    if float(fc_l2) < 0:
        raise ValueError(f"deep_emotion: config fc_l2={fc_l2!r} must be >= 0")

    def init():  # a fresh initialiser per layer: one shared instance would give same-shaped layers equal kernels
        if kernel_initializer is None:
            return keras.initializers.RandomNormal(0.0, float(init_std))
        return keras.initializers.get(kernel_initializer)

    def conv():
        return dict(kernel_size=3, padding="valid", kernel_initializer=init(), bias_initializer="zeros")

    reg = keras.regularizers.L2(float(fc_l2)) if float(fc_l2) > 0 else None
    image = x

    theta = None
    if stn_on != "none":
        theta = localisation_net(image, filters=tuple(loc_filters), kernels=tuple(loc_kernels), hidden=loc_hidden,
                                 init=init, identity_init=bool(identity_init), prefix="loc")
        if theta_limit is not None:
            theta = BoundedTheta(float(theta_limit), name="loc_bound")(theta)
    outputs = {}
    if stn_on == "input":
        x = AffineGridSampler(name="stn")([image, theta])
        outputs["warped"] = x

    every_bn = batch_norm == "all"

    def conv_block(x, name, relu):
        if not every_bn:  # the paper's layout (and batch_norm=True: one BatchNorm after conv4, below)
            return keras.layers.Conv2D(int(filters), activation="relu" if relu else None, name=name, **conv())(x)
        x = keras.layers.Conv2D(int(filters), name=name, **conv())(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x

    x = conv_block(x, "c1", relu=True)
    x = conv_block(x, "c2", relu=False)
    x = keras.layers.MaxPooling2D(2, name="p2")(x)
    x = keras.layers.ReLU(name="p2_relu")(x)
    x = conv_block(x, "c3", relu=True)
    x = conv_block(x, "c4", relu=False)
    if batch_norm is True:
        x = keras.layers.BatchNormalization(name="c4_bn")(x)
    x = keras.layers.MaxPooling2D(2, name="p4")(x)
    x = keras.layers.ReLU(name="p4_relu")(x)
    if float(dropout) > 0:
        drop = keras.layers.Dropout if dropout_type == "elementwise" else keras.layers.SpatialDropout2D
        x = drop(float(dropout), name="dropout")(x)
    if stn_on == "features":
        x = AffineGridSampler(name="stn")([x, theta])
        outputs["warped"] = x

    x = keras.layers.Flatten(name="flatten")(x)
    features = keras.layers.Dense(int(hidden), activation=fc1_activation, kernel_initializer=init(),
                                  bias_initializer="zeros", kernel_regularizer=reg, name="fc1")(x)
    h = features
    if float(fc_dropout) > 0:
        h = keras.layers.Dropout(float(fc_dropout), name="fc_dropout")(h)
    logits = keras.layers.Dense(int(num_classes), kernel_initializer=init(), bias_initializer="zeros",
                                kernel_regularizer=reg, name="fc2")(h)
    outputs["logits"] = logits
    outputs["features"] = features
    if theta is not None:
        outputs["theta"] = keras.layers.Reshape((2, 3), name="theta")(theta)
    return outputs
