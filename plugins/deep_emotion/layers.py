"""Deep-Emotion building blocks: the affine spatial-transformer sampler and the localisation network.

Conventions (spec section 2.3): ``theta = (t1..t6)`` is read row-major as ``A = [[t1, t2, t3], [t4, t5, t6]]``;
row 0 gives the x (column) source coordinate and row 1 the y (row) source coordinate, in normalised
coordinates with ``align_corners=False``; bilinear interpolation with zero padding outside the map.
With ``theta = (1, 0, 0, 0, 1, 0)`` the sampler returns its input unchanged.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "ferzoo_deep_emotion"
IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class IdentityAffine(keras.initializers.Initializer):
    """Bias initialiser of the last localisation Dense: the identity affine transform ``[1, 0, 0, 0, 1, 0]``."""

    def __call__(self, shape, dtype=None):
        if tuple(shape) != (6,):
            raise ValueError(f"IdentityAffine initialises a bias of shape (6,), got shape {tuple(shape)}")
        return ops.convert_to_tensor(IDENTITY_THETA, dtype=dtype or "float32")

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AffineGridSampler(keras.layers.Layer):
    """Warp a ``(B, H, W, C)`` map by per-sample affine parameters ``theta`` of shape ``(B, 6)`` or ``(B, 2, 3)``.

    Grid generator + bilinear sampler of Jaderberg et al. (2015), written with ``keras.ops`` only (Keras 3 has
    no ``grid_sample``). The output has the input's spatial size. Differentiable with respect to the map and
    (sub-differentiably) to theta.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{self.name}: expected inputs [feature_map, theta], got shapes {input_shape}")
        fmap, theta = input_shape
        if len(fmap) != 4 or fmap[1] is None or fmap[2] is None:
            raise ValueError(f"{self.name}: the map must have shape (B, H, W, C) with static H and W, got {fmap}")
        tail = tuple(theta[1:])
        if tail not in ((6,), (2, 3)):
            raise ValueError(f"{self.name}: theta must have shape (B, 6) or (B, 2, 3), got {tuple(theta)}")
        self.built = True

    def call(self, inputs):
        fmap, theta = inputs
        # sampling coordinates and weights in float32 under any policy: float16 has no arange (Range) kernel
        # and loses a pixel's fraction at 48 px; the result is cast back to the layer's compute dtype
        dtype = "float32"
        fmap = ops.cast(fmap, dtype)
        h, w, c = int(fmap.shape[1]), int(fmap.shape[2]), int(fmap.shape[3])
        batch = ops.shape(fmap)[0]
        theta = ops.reshape(ops.cast(theta, dtype), (-1, 2, 3))

        # target grid, align_corners=False: x_t = (2j + 1) / W - 1, y_t = (2i + 1) / H - 1; row-major (i, j)
        xt = (2.0 * ops.arange(w, dtype=dtype) + 1.0) / w - 1.0
        yt = (2.0 * ops.arange(h, dtype=dtype) + 1.0) / h - 1.0
        grid_x = ops.reshape(ops.tile(xt[None, :], (h, 1)), (-1,))
        grid_y = ops.reshape(ops.tile(yt[:, None], (1, w)), (-1,))
        homog = ops.stack([grid_x, grid_y, ops.ones_like(grid_x)], axis=0)  # (3, H*W)
        src = ops.einsum("bij,jn->bin", theta, homog)  # (B, 2, H*W): normalised source (x_s, y_s)

        u = ((src[:, 0] + 1.0) * w - 1.0) / 2.0  # source column in pixels, (B, H*W)
        v = ((src[:, 1] + 1.0) * h - 1.0) / 2.0  # source row in pixels
        u0 = ops.floor(u)
        v0 = ops.floor(v)
        du = u - u0
        dv = v - v0
        flat = ops.reshape(fmap, (batch, h * w, c))

        out = None
        for col, row, weight in ((u0, v0, (1.0 - du) * (1.0 - dv)), (u0 + 1.0, v0, du * (1.0 - dv)),
                                 (u0, v0 + 1.0, (1.0 - du) * dv), (u0 + 1.0, v0 + 1.0, du * dv)):
            inside = ops.logical_and(ops.logical_and(col >= 0.0, col <= w - 1.0),
                                     ops.logical_and(row >= 0.0, row <= h - 1.0))
            weight = weight * ops.cast(inside, dtype)
            ci = ops.cast(ops.clip(col, 0.0, w - 1.0), "int32")
            ri = ops.cast(ops.clip(row, 0.0, h - 1.0), "int32")
            index = ops.broadcast_to((ri * w + ci)[:, :, None], (batch, h * w, c))
            term = ops.take_along_axis(flat, index, axis=1) * weight[:, :, None]
            out = term if out is None else out + term
        return ops.cast(ops.reshape(out, (batch, h, w, c)), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package=PACKAGE)
class BoundedTheta(keras.layers.Layer):
    """``theta = I + limit * tanh((t - I) / limit)``: the localisation output ``t`` (B, 6) kept within ``limit`` of
    the identity transform ``I`` in every parameter, smoothly (the identity maps to itself, with slope 1 there).

    Not in the paper (config ``theta_limit``, off by default): unbounded, the affine parameters drifted here to a
    translation of 58 map widths within two FER-2013 epochs (Adam 3e-3), the sampler then read only padding,
    every warped feature was 0 and the network answered the majority class from then on (no gradient reaches
    theta through an all-padding sample)."""

    def __init__(self, limit: float, **kwargs):
        super().__init__(**kwargs)
        if not float(limit) > 0:
            raise ValueError(f"BoundedTheta: limit must be > 0, got {limit!r}")
        self.limit = float(limit)

    def call(self, t):
        identity = ops.convert_to_tensor(IDENTITY_THETA, dtype=t.dtype)
        return identity + self.limit * ops.tanh((t - identity) / self.limit)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}


def localisation_net(image, *, filters=(8, 10), kernels=(3, 3), hidden=32, init=None, identity_init=True,
                     prefix="loc"):
    """Localisation network of spec 2.2: [Conv(k) -> MaxPool 2x2 -> ReLU] x 2 -> Flatten -> Dense(hidden) + ReLU
    -> Dense(6) (identity-initialised). ``init``: a function returning a fresh kernel
    initialiser per layer (N(0, 0.05^2) by default).
    Returns theta of shape (B, 6)."""
    if len(filters) != len(kernels):
        raise ValueError(f"loc_filters {list(filters)} and loc_kernels {list(kernels)} must have the same length")
    if init is None:
        def init():
            return keras.initializers.RandomNormal(0.0, 0.05)
    x = image
    for i, (f, k) in enumerate(zip(filters, kernels), start=1):
        x = keras.layers.Conv2D(int(f), int(k), padding="valid", kernel_initializer=init(), bias_initializer="zeros",
                                name=f"{prefix}_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"{prefix}_pool{i}")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu{i}")(x)
    x = keras.layers.Flatten(name=f"{prefix}_flatten")(x)
    x = keras.layers.Dense(int(hidden), activation="relu", kernel_initializer=init(), bias_initializer="zeros",
                           name=f"{prefix}_fc1")(x)
    if identity_init:
        last = dict(kernel_initializer="zeros", bias_initializer=IdentityAffine())
    else:
        last = dict(kernel_initializer=init(), bias_initializer="zeros")
    return keras.layers.Dense(6, name=f"{prefix}_fc2", **last)(x)
