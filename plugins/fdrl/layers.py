"""FDRL's layers: M independent fully connected branches (FDN, Intra-RM, message network), the Intra-W
scaling, the inter-feature relation graph and the node fusion / reconstruction (spec section 2).

The maths lives in plain functions (:func:`intra_weights`, :func:`pairwise_distances`,
:func:`inter_weight_matrix`, :func:`inter_aggregate`), which the tests pin on the spec's hand cases; the layers
only hold weights and call them. Shapes: N images, M latent features (branches), D = latent dimension.
"""

from __future__ import annotations

import math

import keras
from keras import ops

PACKAGE = "ferzoo_fdrl"

#: activations a branch layer accepts (eq. 1 and 8: ReLU; eq. 3: sigmoid)
ACTIVATIONS = ("relu", "sigmoid", "linear")

#: floor of the squared distance inside the square root of eq. 9 (sqrt has an infinite slope at 0)
DISTANCE_EPS = 1e-12


def torch_linear_initializer(fan_in: int):
    """PyTorch's ``nn.Linear`` default init for kernel and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


INTRA_W_NORMS = ("l1", "mean")


def intra_weights(importance, norm: str = "l1"):
    """Eq. 4: ``alpha_ij = ||a_ij||_1`` for the sigmoid outputs ``a`` (N, M, D) -> (N, M). ``a`` is positive,
    so the L1 norm is the plain sum over D; range (0, D). ``norm="mean"`` (not the paper): ``||a_ij||_1 / D``,
    range (0, 1), the scale of L_B's target 1/M."""
    alpha = ops.sum(ops.abs(importance), axis=-1)
    if norm == "mean":
        return alpha / float(importance.shape[-1])
    if norm != "l1":
        raise ValueError(f"intra_w_norm must be one of {INTRA_W_NORMS}, got {norm!r}")
    return alpha


def pairwise_distances(messages, eps: float = DISTANCE_EPS):
    """Euclidean distances between the M messages of every image: ``(N, M, D) -> (N, M, M)``.

    Computed from the explicit differences as ``sqrt(max(sum_d (g_j - g_m)^2, eps))`` in float32, so two equal
    messages (the diagonal, or two dead ReLU branches) give ``sqrt(eps)`` and a zero, finite gradient instead of
    the NaN that the slope of ``sqrt`` at 0 produces (spec A6). Not the ``|a|^2 + |b|^2 - 2ab`` trick: that one
    cancels catastrophically for close messages."""
    g = ops.cast(messages, "float32")
    diff = g[:, :, None, :] - g[:, None, :, :]
    return ops.sqrt(ops.maximum(ops.sum(ops.square(diff), axis=-1), float(eps)))


def inter_weight_matrix(messages, eps: float = DISTANCE_EPS):
    """Eq. 9: ``Omega_i(j, m) = tanh(||g_ij - g_im||_2)`` for j != m, 0 on the diagonal (no self-enhancing).

    Symmetric, in [0, 1); larger distance -> larger weight, as the paper states (kept literally). float32."""
    m = messages.shape[1]
    if m is None:
        raise ValueError("inter-feature relation: the number of latent features (axis 1) must be known")
    off_diagonal = 1.0 - ops.eye(int(m), dtype="float32")
    return ops.tanh(pairwise_distances(messages, eps)) * off_diagonal[None]


def inter_aggregate(omega, messages):
    """Eq. 10: ``f_hat_ij = sum_m Omega_i(j, m) g_im`` (``F_hat_i = Omega_i G_i``): (N, M, M), (N, M, D) -> (N, M, D)."""
    return ops.einsum("njm,nmd->njd", ops.cast(omega, "float32"), ops.cast(messages, "float32"))


@keras.saving.register_keras_serializable(package=PACKAGE)
class BranchDense(keras.layers.Layer):
    """M independent fully connected layers, one per latent feature: kernel (M, in, units), bias (M, units).

    ``shared_input=True`` (the FDN, eq. 1): the input is one vector per image (N, in), fed to every branch ->
    (N, M, units). Otherwise (Intra-RM eq. 3, message network eq. 8) branch j reads its own feature
    (N, M, in) -> (N, M, units). Mathematically M separate ``Dense`` layers (each with the fan-in of one
    branch), computed as one ``einsum``. Default init: PyTorch's ``nn.Linear``."""

    def __init__(self, branches: int, units: int, activation: str = "linear", shared_input: bool = False,
                 use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        if int(branches) < 1:
            raise ValueError(f"BranchDense: branches must be >= 1, got {branches!r}")
        if int(units) < 1:
            raise ValueError(f"BranchDense: units must be >= 1, got {units!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"BranchDense: activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.branches, self.units = int(branches), int(units)
        self.activation = activation
        self.shared_input, self.use_bias = bool(shared_input), bool(use_bias)

    def build(self, input_shape):
        rank = 2 if self.shared_input else 3
        if len(input_shape) != rank:
            raise ValueError(f"{self.name}: expected a {'(N, in)' if self.shared_input else '(N, M, in)'} input, "
                             f"got shape {tuple(input_shape)}")
        if not self.shared_input and input_shape[1] != self.branches:
            raise ValueError(f"{self.name}: the input has {input_shape[1]} branches, this layer {self.branches}")
        fan_in = int(input_shape[-1])
        init = torch_linear_initializer(fan_in)
        self.kernel = self.add_weight(name="kernel", shape=(self.branches, fan_in, self.units), initializer=init)
        self.bias = (self.add_weight(name="bias", shape=(self.branches, self.units), initializer=init)
                     if self.use_bias else None)
        self.built = True

    def call(self, x):
        kernel = ops.cast(self.kernel, x.dtype)
        y = ops.einsum("ni,mio->nmo" if self.shared_input else "nmi,mio->nmo", x, kernel)
        if self.bias is not None:
            y = y + ops.cast(self.bias, x.dtype)[None]
        if self.activation == "relu":
            return ops.relu(y)
        if self.activation == "sigmoid":
            return ops.sigmoid(y)
        return y

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.branches, self.units)

    def get_config(self):
        return {**super().get_config(), "branches": self.branches, "units": self.units,
                "activation": self.activation, "shared_input": self.shared_input, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=PACKAGE)
class IntraWeight(keras.layers.Layer):
    """Eq. 4: the Intra-W vector ``w_i = [alpha_i1 .. alpha_iM]``, ``alpha_ij = ||a_ij||_1`` (N, M, D) -> (N, M).
    Computed and returned in float32 (it reaches 128 x M and feeds the balance / distribution losses)."""

    def __init__(self, norm: str = "l1", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if norm not in INTRA_W_NORMS:
            raise ValueError(f"intra_w_norm must be one of {INTRA_W_NORMS}, got {norm!r}")
        self.norm = norm

    def call(self, importance):
        return intra_weights(ops.cast(importance, "float32"), self.norm)

    def get_config(self):
        return {**super().get_config(), "norm": self.norm}

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class BranchScale(keras.layers.Layer):
    """Eq. 7: the intra-aware features ``f_ij = alpha_ij * l_ij``: inputs ``[w (N, M), L (N, M, D)]``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        weights, latent = inputs
        return ops.cast(weights, "float32")[..., None] * ops.cast(latent, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class InterRelation(keras.layers.Layer):
    """Inter-RM graph (eqs. 9-10) on the messages G (N, M, D): returns ``[F_hat (N, M, D), Omega (N, M, M)]``.

    No weights (the message network is a :class:`BranchDense` before it). Runs in float32 whatever the dtype
    policy: the distance floor ``eps`` (1e-12) is below float16's range (spec: compute the FRN in float32)."""

    def __init__(self, eps: float = DISTANCE_EPS, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not float(eps) > 0:
            raise ValueError(f"InterRelation: eps must be > 0, got {eps!r}")
        self.eps = float(eps)

    def call(self, messages):
        omega = inter_weight_matrix(messages, self.eps)
        return [inter_aggregate(omega, messages), omega]

    def compute_output_shape(self, input_shape):
        n, m, d = input_shape
        return [(n, m, d), (n, m, m)]

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}


@keras.saving.register_keras_serializable(package=PACKAGE)
class NodeFusion(keras.layers.Layer):
    """Eq. 11: the importance-aware features ``y_ij = delta * f_ij + (1 - delta) * f_hat_ij``;
    inputs ``[F, F_hat]`` (N, M, D). ``delta`` is a fixed constant (0.5), not learned."""

    def __init__(self, delta: float = 0.5, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"NodeFusion: delta must be in [0, 1], got {delta!r}")
        self.delta = float(delta)

    def call(self, inputs):
        intra, inter = (ops.cast(t, "float32") for t in inputs)
        return self.delta * intra + (1.0 - self.delta) * inter

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BranchSum(keras.layers.Layer):
    """Eq. 12: the expression feature ``y_i = sum_j y_ij``: (N, M, D) -> (N, D)."""

    def call(self, nodes):
        return ops.sum(nodes, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
