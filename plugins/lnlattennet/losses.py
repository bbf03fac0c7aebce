"""LNLAttenNet's objective (spec 3), Eq. (3): ``L = loss_entropy + gamma * loss_l2`` with ``loss_l2 = lambda ||W||^2``.

There is no auxiliary loss: the attention weights get no loss of their own, and there are no stages. In the model
the two terms are

* the cross-entropy of Eq. (4), the core's softmax cross-entropy on the logits (``model.compile()``), and
* the L2 term, ``keras.regularizers.L2(l2)`` on every Conv / Conv2DTranspose / Dense kernel (and on the per-patch
  kernels of the local networks), so Keras adds ``l2 * sum(kernel ** 2)`` to the training loss; biases are not
  regularised, and ``l2 = gamma * lambda = 1e-4`` (gamma = 1, no 1/2 factor; spec 8.9).

The functions here state the same objective explicitly, as pure functions on arrays: the tests check the model's
loss against them, and they document the maths. All compute in float32 whatever the inputs' dtype.
"""

from __future__ import annotations

from keras import ops


def cross_entropy(labels, probabilities, eps: float = 0.0):
    """Eq. (4): ``-(1/N) sum_n log p^n_{l_n}`` for integer ``labels (N,)`` and softmax rows ``(N, C)``."""
    p = ops.cast(probabilities, "float32")
    onehot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), int(p.shape[-1]))
    return -ops.mean(ops.sum(onehot * ops.log(p + eps), axis=-1))


def kernel_variables(model) -> list:
    """The variables the L2 term covers: every trainable variable named ``kernel`` (Conv, Conv2DTranspose, Dense,
    and the (M, ...) per-patch kernels); biases and BatchNorm parameters are left out."""
    return [v for v in model.trainable_variables if v.path.rsplit("/", 1)[-1] == "kernel"]


def l2_penalty(variables, lam: float = 1e-4):
    """``lam * sum_W ||W||^2`` over ``variables`` (arrays or variables), in float32."""
    squares = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in variables]
    if not squares:
        return ops.convert_to_tensor(0.0, "float32")
    return float(lam) * ops.sum(ops.stack(squares))


def objective(labels, logits, variables, lam: float = 1e-4, gamma: float = 1.0):
    """Eq. (3) for a batch: the cross-entropy of ``softmax(logits)`` plus ``gamma * lam * sum ||W||^2``."""
    probs = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    return cross_entropy(labels, probs) + float(gamma) * l2_penalty(variables, lam)


def model_l2(model):
    """The L2 term Keras adds for ``model`` (the sum of its regularisation losses), in float32."""
    losses = [ops.cast(v, "float32") for v in model.losses]
    return ops.sum(ops.stack(losses)) if losses else ops.convert_to_tensor(0.0, "float32")

