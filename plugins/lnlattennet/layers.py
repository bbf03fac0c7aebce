"""LNLAttenNet layers (spec 2.2-2.6): the patch stack, the M local networks, the non-local attention.

**Patch stacks.** The M patches of F9 travel as one 5-D tensor ``(B, h, w, M, C)``: patch k is ``[:, :, :, k, :]``.
Merging the last two axes, ``(B, h, w, M * C)``, is a free reshape, and on that layout M independent convolutions
are one grouped convolution (``tf.nn.conv2d`` with a ``(k, k, C, M * C_out)`` filter: group k reads channels
``k*C .. k*C + C - 1`` and writes ``k*C_out ..``). Five-dimensional outputs also keep the local part out of the
core's Grad-CAM++ layer search, which looks for the last 4-D layer (here ``conv9_2``, F9, aligned with the image).

**Two implementations with the same weights** (config ``local_impl``):

* ``"batched"`` (default): grouped convolutions for the 16 SimpleNets and local-attention heads, a per-patch
  einsum for their Dense layers; one op per layer for all patches;
* ``"branches"``: 16 Python-level chains, one per patch, each running its own convolutions on its own slice of
  the same variables; the patch results are stacked only at the end of each network.

Both read the variables ``kernel (M, k, k, C_in, C_out)`` / ``bias (M, C_out)`` (``(M, D_in, D_out)`` for Dense),
so a weights file trained with one loads into the other. Each patch slice is initialised on its own with
Glorot-uniform (fan-in ``k*k*C_in``, fan-out ``k*k*C_out``, as a separate Keras Conv2D would be) and zero biases.

Keras' own ``Conv2D(groups=M)`` is not used: on the TensorFlow backend it compiles every grouped convolution with
XLA on CPU, which measured about 70x slower than ``tf.nn.conv2d`` here (``benchmark.py conv``).
"""

from __future__ import annotations

import functools
import math

import keras
import tensorflow as tf
from keras import ops

PACKAGE = "ferzoo_lnlattennet"
IMPLS = ("batched", "branches")
PADDINGS = ("valid", "same")

register = keras.saving.register_keras_serializable(package=PACKAGE)


def grouped_conv_dtype(dtype):
    """The dtype a grouped convolution of ``dtype`` inputs computes in: float16 becomes float32 on a machine
    without a GPU. TensorFlow's CPU kernels differentiate grouped convolutions only through oneDNN, and oneDNN
    takes float16 only on some CPUs: under ``mixed_float16`` the gradient worked on the project's Intel Xeon
    machines and failed on an AMD EPYC one ("Gradients for grouped convolutions are not supported on CPU").
    float16 is emulated on a CPU anyway, so float32 there costs nothing; on a GPU cuDNN computes float16."""
    if dtype == tf.float16 and not _has_gpu():
        return tf.float32
    return dtype


@functools.cache
def _has_gpu() -> bool:
    """Whether TensorFlow sees a GPU (asked once: the devices are fixed when its runtime starts; the layers call
    this on every eager call)."""
    return bool(tf.config.list_logical_devices("GPU"))


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"lnlattennet: local_impl must be one of {list(IMPLS)}, got {impl!r}")
    return impl


def _regularizer(l2: float):
    return keras.regularizers.L2(float(l2)) if l2 else None


def _glorot(fan_in: int, fan_out: int):
    limit = math.sqrt(6.0 / float(fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit)


def _stack_shape(layer, input_shape, rank: int = 5):
    shape = tuple(input_shape)
    if len(shape) != rank or any(v is None for v in shape[1:]):
        want = "(B, h, w, M, C)" if rank == 5 else "(B, M, D)"
        raise ValueError(f"{layer.name}: expected a patch stack {want} with known sizes, got {shape}")
    return shape


def _pool_stack(x):
    """2 x 2 / 2 max-pool of every patch of a stack ``(B, h, w, M, C)`` (floor)."""
    h, w, m, c = (int(v) for v in x.shape[1:])
    y = ops.max_pool(ops.reshape(x, (-1, h, w, m * c)), 2, 2, "valid")
    return ops.reshape(y, (-1, h // 2, w // 2, m, c))


def _flatten_patches(x):
    """``(B, h, w, M, C) -> (B, M, h * w * C)``; each patch flattened in (h, w, C) order, as Keras' Flatten."""
    h, w, m, c = (int(v) for v in x.shape[1:])
    return ops.reshape(ops.transpose(x, (0, 3, 1, 2, 4)), (-1, m, h * w * c))


@register
class PatchConv2D(keras.layers.Layer):
    """M independent ``k x k`` convolutions (stride 1) with bias and activation, one per patch:
    ``(B, h, w, M, C_in) -> (B, h', w', M, C_out)``."""

    def __init__(self, num_patches: int, filters: int, kernel_size: int = 3, padding: str = "same",
                 activation="relu", impl: str = "batched", l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        if padding not in PADDINGS:
            raise ValueError(f"{self.name}: padding must be one of {list(PADDINGS)}, got {padding!r}")
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.impl = _check_impl(impl)
        self.l2 = float(l2)

    def build(self, input_shape):
        shape = _stack_shape(self, input_shape)
        if shape[3] != self.num_patches:
            raise ValueError(f"{self.name}: the stack holds {shape[3]} patches, expected {self.num_patches}")
        cin, k = int(shape[4]), self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(self.num_patches, k, k, cin, self.filters),
                                      initializer=_glorot(k * k * cin, k * k * self.filters),
                                      regularizer=_regularizer(self.l2))
        self.bias = self.add_weight(name="bias", shape=(self.num_patches, self.filters), initializer="zeros")
        self.built = True

    def output_size(self, size: int) -> int:
        return size if self.padding == "same" else size - self.kernel_size + 1

    def grouped_kernel(self, dtype):
        """The kernel as one grouped-convolution filter ``(k, k, C_in, M * C_out)`` (patch-major output channels)."""
        m, k, _, cin, cout = self.kernel.shape
        w = ops.transpose(ops.cast(self.kernel, dtype), (1, 2, 3, 0, 4))
        return ops.reshape(w, (k, k, cin, m * cout))

    def apply_batched(self, x):
        h, w, m, c = (int(v) for v in x.shape[1:])
        dtype = grouped_conv_dtype(x.dtype)
        y = tf.nn.conv2d(ops.cast(ops.reshape(x, (-1, h, w, m * c)), dtype), self.grouped_kernel(dtype), 1,
                         self.padding.upper())
        y = ops.cast(y, x.dtype)
        y = self.activation(y + ops.reshape(ops.cast(self.bias, x.dtype), (m * self.filters,)))
        return ops.reshape(y, (-1, self.output_size(h), self.output_size(w), m, self.filters))

    def apply_one(self, x, k: int):
        """Patch ``k``'s convolution on its own map ``(B, h, w, C_in)``."""
        y = tf.nn.conv2d(x, ops.cast(self.kernel[k], x.dtype), 1, self.padding.upper())
        return self.activation(y + ops.cast(self.bias[k], x.dtype))

    def call(self, x):
        if self.impl == "batched":
            return self.apply_batched(x)
        return ops.stack([self.apply_one(x[:, :, :, k, :], k) for k in range(self.num_patches)], axis=3)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "filters": self.filters,
                "kernel_size": self.kernel_size, "padding": self.padding,
                "activation": keras.activations.serialize(self.activation), "impl": self.impl, "l2": self.l2}


@register
class PatchDense(keras.layers.Layer):
    """M independent Dense layers, one per patch: ``(B, M, D_in) -> (B, M, D_out)``."""

    def __init__(self, num_patches: int, units: int, activation=None, impl: str = "batched", l2: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.impl = _check_impl(impl)
        self.l2 = float(l2)

    def build(self, input_shape):
        shape = _stack_shape(self, input_shape, rank=3)
        if shape[1] != self.num_patches:
            raise ValueError(f"{self.name}: got {shape[1]} patches, expected {self.num_patches}")
        din = int(shape[2])
        self.kernel = self.add_weight(name="kernel", shape=(self.num_patches, din, self.units),
                                      initializer=_glorot(din, self.units), regularizer=_regularizer(self.l2))
        self.bias = self.add_weight(name="bias", shape=(self.num_patches, self.units), initializer="zeros")
        self.built = True

    def apply_batched(self, x):
        y = ops.einsum("bmi,mio->bmo", x, ops.cast(self.kernel, x.dtype))
        return self.activation(y + ops.cast(self.bias, x.dtype))

    def apply_one(self, x, k: int):
        """Patch ``k``'s Dense layer on ``(B, D_in)``."""
        return self.activation(ops.matmul(x, ops.cast(self.kernel[k], x.dtype)) + ops.cast(self.bias[k], x.dtype))

    def call(self, x):
        if self.impl == "batched":
            return self.apply_batched(x)
        return ops.stack([self.apply_one(x[:, k, :], k) for k in range(self.num_patches)], axis=1)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "units": self.units,
                "activation": keras.activations.serialize(self.activation), "impl": self.impl, "l2": self.l2}


@register
class PatchExtract(keras.layers.Layer):
    """F9 ``(B, H, W, C)`` -> the patch stack ``(B, P_h, P_w, M, C)``; patch k = ``F9[:, ys[r]:ys[r]+P_h,
    xs[c]:xs[c]+P_w, :]`` with ``(r, c) = divmod(k, n)`` (row-major, as the paper numbers patches 1..16)."""

    def __init__(self, ys, xs, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.ys = [int(v) for v in ys]
        self.xs = [int(v) for v in xs]
        self.height = int(height)
        self.width = int(width)
        if len(self.ys) != len(self.xs):
            raise ValueError(f"{self.name}: an n x n grid needs as many row offsets as column offsets, got "
                             f"{self.ys} and {self.xs}")

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None or self.ys[-1] + self.height > h or self.xs[-1] + self.width > w:
            raise ValueError(f"{self.name}: patches up to ({self.ys[-1] + self.height}, {self.xs[-1] + self.width}) "
                             f"do not fit a map of {tuple(input_shape)}")
        self.built = True

    def call(self, x):
        patches = [x[:, y:y + self.height, x0:x0 + self.width, :] for y in self.ys for x0 in self.xs]
        return ops.stack(patches, axis=3)

    def get_config(self):
        return {**super().get_config(), "ys": self.ys, "xs": self.xs, "height": self.height, "width": self.width}


@register
class SimpleNets(keras.layers.Layer):
    """The M SimpleNets (Table II), one weight set per patch: per stage two 3 x 3 'same' convolutions with ReLU and
    a 2 x 2 / 2 max-pool. ``(B, 48, 48, 16, 64) -> (B, 6, 6, 16, 256)`` with the paper's widths."""

    def __init__(self, num_patches: int, widths=(64, 128, 256), impl: str = "batched", l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.widths = [int(v) for v in widths]
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"{self.name}: simplenet_widths must be a non-empty list of positive widths, "
                             f"got {list(widths)}")
        self.impl = _check_impl(impl)
        self.l2 = float(l2)
        #: flat list (Keras tracks the layers of a flat list): stage s holds convs[2 s] and convs[2 s + 1]
        self.convs = [PatchConv2D(self.num_patches, width, 3, "same", "relu", self.impl, self.l2,
                                  dtype=self.dtype_policy, name=f"conv{s + 1}_{j + 1}")
                      for s, width in enumerate(self.widths) for j in range(2)]

    def stage_convs(self):
        return [self.convs[2 * s:2 * s + 2] for s in range(len(self.widths))]

    def build(self, input_shape):
        b, h, w, m, c = _stack_shape(self, input_shape)
        for stage in self.stage_convs():
            for conv in stage:
                conv.build((b, h, w, m, c))
                c = conv.filters
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"{self.name}: a {input_shape[1]}x{input_shape[2]} patch is too small for "
                                 f"{len(self.widths)} pooling stages")
        self.built = True

    def call(self, x):
        if self.impl == "batched":
            for stage in self.stage_convs():
                for conv in stage:
                    x = conv.apply_batched(x)
                x = _pool_stack(x)
            return x
        outs = []
        for k in range(self.num_patches):
            t = x[:, :, :, k, :]
            for stage in self.stage_convs():
                for conv in stage:
                    t = conv.apply_one(t, k)
                t = ops.max_pool(t, 2, 2, "valid")
            outs.append(t)
        return ops.stack(outs, axis=3)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "widths": self.widths, "impl": self.impl,
                "l2": self.l2}


@register
class LocalAttentionHeads(keras.layers.Layer):
    """The M local-attention heads (Table III), one weight set per patch, on each SimpleNet's last pool:
    Conv 3x3 (``padding``) ReLU -> Conv 1x1 ReLU -> Conv 3x3 (``padding``) ReLU -> Conv 1x1 ReLU -> flatten ->
    Dense(hidden) ReLU -> Dense(1) -> sigmoid. ``(B, 6, 6, 16, 256) -> w^l (B, 16)`` in (0, 1)."""

    KERNELS = (3, 1, 3, 1)

    def __init__(self, num_patches: int, widths=(256, 128, 128, 64), hidden: int = 64, padding: str = "valid",
                 impl: str = "batched", l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.widths = [int(v) for v in widths]
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"{self.name}: local_attention_widths must be 4 positive widths (Table III: conv 3x3, "
                             f"conv 1x1, conv 3x3, conv 1x1), got {list(widths)}")
        self.hidden = int(hidden)
        if self.hidden < 1:
            raise ValueError(f"{self.name}: local_attention_hidden must be >= 1, got {hidden!r}")
        if padding not in PADDINGS:
            raise ValueError(f"{self.name}: padding must be one of {list(PADDINGS)}, got {padding!r}")
        self.padding = padding
        self.impl = _check_impl(impl)
        self.l2 = float(l2)
        self.convs = [PatchConv2D(self.num_patches, width, k, padding if k == 3 else "same", "relu", self.impl,
                                  self.l2, dtype=self.dtype_policy, name=f"conv{j + 1}")
                      for j, (width, k) in enumerate(zip(self.widths, self.KERNELS))]
        self.fc1 = PatchDense(self.num_patches, self.hidden, "relu", self.impl, self.l2, dtype=self.dtype_policy,
                              name="fc1")
        self.fc2 = PatchDense(self.num_patches, 1, None, self.impl, self.l2, dtype=self.dtype_policy, name="fc2")

    def build(self, input_shape):
        b, h, w, m, c = _stack_shape(self, input_shape)
        for conv in self.convs:
            conv.build((b, h, w, m, c))
            h, w, c = conv.output_size(h), conv.output_size(w), conv.filters
            if h < 1 or w < 1:
                raise ValueError(f"{self.name}: a {input_shape[1]}x{input_shape[2]} map is too small for two 'valid' "
                                 f"3x3 convolutions; use local_attention_padding='same'")
        self.fc1.build((b, m, h * w * c))
        self.fc2.build((b, m, self.hidden))
        self.built = True

    def stages(self, x):
        """Every intermediate result of the batched path: the four conv outputs ``(B, h, w, M, C)``, the flattened
        ``(B, M, D)``, the hidden layer ``(B, M, hidden)``, the logit ``(B, M, 1)`` and ``w^l (B, M)``."""
        out = []
        for conv in self.convs:
            x = conv.apply_batched(x)
            out.append(x)
        x = _flatten_patches(x)
        out.append(x)
        x = self.fc1.apply_batched(x)
        out.append(x)
        x = self.fc2.apply_batched(x)
        out.append(x)
        out.append(ops.sigmoid(x[..., 0]))
        return out

    def call(self, x):
        if self.impl == "batched":
            return self.stages(x)[-1]
        outs = []
        for k in range(self.num_patches):
            t = x[:, :, :, k, :]
            for conv in self.convs:
                t = conv.apply_one(t, k)
            t = ops.reshape(t, (-1, int(t.shape[1]) * int(t.shape[2]) * int(t.shape[3])))
            t = self.fc2.apply_one(self.fc1.apply_one(t, k), k)
            outs.append(t[:, 0])
        return ops.sigmoid(ops.stack(outs, axis=1))

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "widths": self.widths,
                "hidden": self.hidden, "padding": self.padding, "impl": self.impl, "l2": self.l2}


@register
class PatchFlatten(keras.layers.Layer):
    """``(B, h, w, M, C) -> (B, M, h * w * C)``: the local feature vectors f_i (9216-d with the paper's sizes)."""

    def call(self, x):
        return _flatten_patches(x)


def grid_max_pool(x, rows: int, cols: int):
    """Max-pool a map ``(B, H, W, C)`` to ``rows x cols`` cells: the paper's 2 x 2 / 2 pool (floor: 9 x 9 -> 4 x 4
    drops the last row and column) when it gives that size, else PyTorch-style adaptive max-pooling (cell i spans
    ``floor(i H / rows) .. ceil((i + 1) H / rows)``; spec 8.12)."""
    h, w = int(x.shape[1]), int(x.shape[2])
    if h // 2 == rows and w // 2 == cols:
        return ops.max_pool(x, 2, 2, "valid")
    if (h, w) == (rows, cols):
        return x
    cells = []
    for i in range(rows):
        y0, y1 = (i * h) // rows, -((-(i + 1) * h) // rows)
        row = [ops.max(x[:, y0:y1, (j * w) // cols:-((-(j + 1) * w) // cols), :], axis=(1, 2)) for j in range(cols)]
        cells.append(ops.stack(row, axis=1))
    return ops.stack(cells, axis=1)


def l1_row_normalise(r, eps: float = 1e-8):
    """``R_ij = R~_ij / max(sum_j |R~_ij|, eps)`` on ``(B, M, M)`` (spec 2.5: L1 normalisation instead of softmax).

    eps only guards the division (a row of zeros stays zero). The spec's ``sum + eps`` would pull every row sum
    below 1 by ``eps / sum``, which is about 1e-5 at initialisation here, where the ReLU maps are ~1e-3 small."""
    return r / ops.maximum(ops.sum(ops.abs(r), axis=-1, keepdims=True), eps)


def nonlocal_weights(q_star, k_star, eps: float = 1e-8):
    """``Q* (B, M, C)``, ``K* (B, C, M)`` -> ``(R (B, M, M), w^g (B, M))``: ``R = L1-rows(Q* K*)`` and
    ``w^g_j = (1/M) sum_i R_ij``, the mean of column j (a distribution over the patches when R~ >= 0)."""
    r = l1_row_normalise(ops.matmul(q_star, k_star), eps)
    return r, ops.mean(r, axis=1)


@register
class NonLocalAttention(keras.layers.Layer):
    """Table I and Fig. 5: from F5, ``Q, K, V = MaxPool(ReLU(Conv1x1(F5)))`` on the n x n grid (three weight
    sets); ``Q* (B, M, C)``, ``K* (B, C, M)`` (the transpose), ``V* (B, M, C)``; ``R = L1-rows(Q* K*)``;
    ``w^g`` = the column means of R; ``s = R V*``. Returns ``(w^g (B, M), R (B, M, M), s (B, M, C))``.

    The products and the normalisation run in float32 whatever the dtype policy (a float16 sum of 512 products
    overflows, and eps = 1e-8 is 0 in float16); ``s`` is returned in the layer's compute dtype."""

    def __init__(self, grid: int = 4, channels: int = 512, eps: float = 1e-8, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.channels = int(channels)
        self.eps = float(eps)
        if self.channels < 1 or self.grid < 1 or self.eps < 0:
            raise ValueError(f"{self.name}: grid and channels must be >= 1 and eps >= 0, got grid={grid!r}, "
                             f"channels={channels!r}, eps={eps!r}")
        self.l2 = float(l2)
        self.query, self.key, self.value = (
            keras.layers.Conv2D(self.channels, 1, activation="relu", kernel_regularizer=_regularizer(self.l2),
                                dtype=self.dtype_policy, name=name) for name in ("query", "key", "value"))

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: expected F5 (B, H, W, C), got {tuple(input_shape)}")
        for conv in (self.query, self.key, self.value):
            conv.build(input_shape)
        self.built = True

    def qkv(self, f5):
        """The three pooled maps ``Q, K, V`` of shape ``(B, n, n, C)``."""
        return tuple(grid_max_pool(conv(f5), self.grid, self.grid) for conv in (self.query, self.key, self.value))

    def call(self, f5):
        q, k, v = self.qkv(f5)
        m = self.grid * self.grid
        q_star = ops.reshape(ops.cast(q, "float32"), (-1, m, self.channels))
        k_star = ops.transpose(ops.reshape(ops.cast(k, "float32"), (-1, m, self.channels)), (0, 2, 1))
        v_star = ops.reshape(ops.cast(v, "float32"), (-1, m, self.channels))
        r, w_g = nonlocal_weights(q_star, k_star, self.eps)
        s = ops.matmul(r, v_star)
        return w_g, r, ops.cast(s, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "channels": self.channels, "eps": self.eps, "l2": self.l2}


@register
class GlobalVector(keras.layers.Layer):
    """The global vector g (Sec. III-C): two 3 x 3 'same' convolutions with ReLU on F5, the grid max-pool and a
    flatten: ``(B, 9, 9, 1024) -> (B, 8192)``, indexed ``cell * C + channel`` like flat(s)."""

    def __init__(self, grid: int = 4, channels: int = 512, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)
        self.channels = int(channels)
        self.l2 = float(l2)
        self.conv1, self.conv2 = (
            keras.layers.Conv2D(self.channels, 3, padding="same", activation="relu",
                                kernel_regularizer=_regularizer(self.l2), dtype=self.dtype_policy, name=name)
            for name in ("conv1", "conv2"))

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build((*input_shape[:3], self.channels))
        self.built = True

    def call(self, f5):
        g = grid_max_pool(self.conv2(self.conv1(f5)), self.grid, self.grid)
        return ops.reshape(g, (-1, self.grid * self.grid * self.channels))

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "channels": self.channels, "l2": self.l2}


@register
class BlendGlobal(keras.layers.Layer):
    """Eq. (1): ``g* = (1 - alpha) g + alpha flat(s)`` for ``g (B, M * C)`` and ``s (B, M, C)``."""

    def __init__(self, alpha: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"{self.name}: alpha must be in [0, 1], got {alpha!r}")

    def build(self, input_shape):
        g_shape, s_shape = input_shape
        if g_shape[-1] != s_shape[1] * s_shape[2]:
            raise ValueError(f"{self.name}: g has {g_shape[-1]} values but flat(s) has {s_shape[1] * s_shape[2]}")
        self.built = True

    def call(self, inputs):
        g, s = inputs
        flat = ops.cast(ops.reshape(s, (-1, int(s.shape[1]) * int(s.shape[2]))), g.dtype)
        return (1.0 - self.alpha) * g + self.alpha * flat

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@register
class CombineLocal(keras.layers.Layer):
    """Eq. (2): ``f_en = sum_i w^g_i w^l_i f_i`` for ``f (B, M, D)``, ``w^g (B, M)``, ``w^l (B, M)`` -> ``(B, D)``."""

    def call(self, inputs):
        f, w_g, w_l = inputs
        weights = ops.cast(w_g, f.dtype) * ops.cast(w_l, f.dtype)
        return ops.einsum("bm,bmd->bd", weights, f)


@register
class ConstantPatchWeights(keras.layers.Layer):
    """A ``(B, M)`` tensor filled with ``value`` (the ablations: w^g = 1/M, w^l = 1), batch size taken from the
    input."""

    def __init__(self, num_patches: int, value: float, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = int(num_patches)
        self.value = float(value)

    def call(self, x):
        return ops.full((ops.shape(x)[0], self.num_patches), self.value, dtype="float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_patches)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "value": self.value}
