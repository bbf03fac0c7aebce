"""Base class for auxiliary losses that need more than the logits (features, heads) and may own state.

Two kinds of state:

* **trained** state (DAN's affinity centres): ``add_weight(..., trainable=True)``; the model's optimizer trains
  it with the network's weights;
* **rule-updated** state (FDRL's centres, DAF-CNN's triplet-centre centres): ``add_state(...)`` creates a
  non-trainable variable, and :meth:`AuxiliaryLoss.update` returns its new value as ``[(variable, value)]``. The model calls
  ``update`` on *training* steps only (never in ``evaluate`` or in ``fit``'s validation pass), after the loss
  is computed, on stop-gradient outputs. Under ``tf.distribute`` the rule must be written with
  :func:`replica_sum` on the batch statistics (sums and counts), so every replica applies the same,
  global-batch update.
"""

from __future__ import annotations

import keras
from keras import ops


def replica_sum(value):
    """Sum ``value`` over the replicas of the current ``tf.distribute`` strategy (identity on one replica).

    Use it on the per-batch sums and counts of a centre update: the rule then sees the global batch."""
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas() -> int:
    """Replicas of the strategy in scope (1 without one)."""
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def class_sums(values, labels, num_classes: int, sample_weight=None):
    """Per-class sums of ``values`` (B, D) and counts (K,) over a batch, summed across replicas.

    Returns ``(sums (K, D), counts (K,))`` in float32."""
    values = ops.cast(values, "float32")
    onehot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), num_classes)
    if sample_weight is not None:
        onehot = onehot * ops.cast(ops.reshape(sample_weight, (-1, 1)), "float32")
    sums = ops.matmul(ops.transpose(onehot), values)
    counts = ops.sum(onehot, axis=0)
    return replica_sum(sums), replica_sum(counts)


def reduce_per_sample(values, sample_weight=None, reduction: str = "mean"):
    """Per-sample loss values (B,) -> a scalar: their (weighted) sum, or that sum divided by the batch size
    (by the weight sum when ``sample_weight`` is given) for ``reduction="mean"``."""
    values = ops.cast(values, "float32")
    if sample_weight is not None:
        w = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
        total, count = ops.sum(values * w), ops.sum(w)
    else:
        total, count = ops.sum(values), ops.cast(ops.shape(values)[0], "float32")
    return total if reduction == "sum" else total / ops.maximum(count, 1e-12)


def centre_loss_update(centres, values, labels, rate: float, sample_weight=None):
    """Wen et al. (2016) centre update: ``c_j <- c_j - rate * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``.

    ``centres`` (K, D), ``values`` (B, D), integer ``labels`` (B,). A class absent from the (global) batch keeps
    its centre. Returns the new centres (assign them from :meth:`AuxiliaryLoss.update`)."""
    centres = ops.cast(centres, "float32")
    sums, counts = class_sums(values, labels, int(centres.shape[0]), sample_weight)
    delta = (counts[:, None] * centres - sums) / (1.0 + counts[:, None])
    return centres - float(rate) * delta


@keras.saving.register_keras_serializable(package="ferzoo")
class AuxiliaryLoss(keras.layers.Layer):
    """A training loss term computed from the labels and the model's output dict.

    Subclasses implement :meth:`compute` and may own state (class centres) created in ``__init__`` or
    :meth:`build`: trainable weights are trained by the model's optimizer; state made with :meth:`add_state`
    changes only through :meth:`update`. Both are tracked by the model and stored with its weights.
    ``weight`` is the default factor in the total loss (the recipe or ``model.compile(aux_loss_weights=...)``
    may override it). ``compute`` returns the unweighted scalar, a mean over the batch (the model scales it
    for ``tf.distribute`` like Keras scales the main loss).
    """

    #: output keys of the model this loss reads (checked when the model is built)
    requires: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def build(self, input_shape=None):
        self.built = True

    def add_state(self, name: str, shape, initializer="zeros"):
        """A non-trainable float32 variable changed only by :meth:`update` (e.g. rule-updated centres)."""
        return self.add_weight(name=name, shape=tuple(shape), initializer=initializer, trainable=False,
                               dtype="float32", aggregation="mean")

    def compute(self, y_true, outputs: dict, sample_weight=None):
        raise NotImplementedError

    def update(self, y_true, outputs: dict, sample_weight=None):
        """Rule update of this loss's state on a training step.

        ``outputs`` are stop-gradient copies of the model's outputs from the same forward pass. Return a list of
        ``(variable, new_value)`` pairs (the model assigns them; Keras variables cannot be dict keys) or
        ``None`` for no update. The default does nothing."""
        return None

    def call(self, y_true, outputs, sample_weight=None):
        return self.compute(y_true, outputs, sample_weight)

    def get_config(self):
        config = super().get_config()
        config["weight"] = self.weight
        return config
