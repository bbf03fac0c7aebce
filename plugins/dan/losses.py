"""DAN's losses: the affinity loss (learnable class centres) and the partition loss.

Both are :class:`ferzoo.losses.AuxiliaryLoss` layers, so the centres are model variables trained by the same
optimizer (and the same coupled weight decay) as the network, exactly as the official code passes
``model params + centres`` to one optimizer. The plain functions :func:`affinity_loss` and
:func:`partition_loss` hold the maths and are what the tests pin.
"""

from __future__ import annotations

import keras
from keras import ops

from ferzoo.losses import AuxiliaryLoss, reduce_per_sample

from .layers import PACKAGE

PY_FLOAT_EPS = 2.220446049250313e-16  # Python's float epsilon, the official partition-loss eps
AFFINITY_FORMS = ("affinity", "center")
REDUCTIONS = ("mean", "sum")
PARTITION_FORMS = ("code", "paper")


def _as_vectors(features):
    """(B, D) stays; a (B, H, W, D) map is global-average-pooled (x_i = GAP(x'_i))."""
    features = ops.cast(features, "float32")
    if len(features.shape) == 4:
        return ops.mean(features, axis=(1, 2))
    if len(features.shape) != 2:
        raise ValueError(f"affinity loss: features must be (B, D) or (B, H, W, D), got shape {features.shape}")
    return features


def centre_spread(centres):
    """S = sum over dimensions of the unbiased variance of the centres across classes (torch
    ``centers.var(dim=0).sum()``): ``sum_k ||c_k - mean(c)||^2 / (n_centres - 1)``."""
    centres = ops.cast(centres, "float32")
    n = centres.shape[0]
    if n is None or n < 2:
        raise ValueError(f"affinity loss needs at least 2 centres, got shape {centres.shape}")
    return ops.sum(ops.var(centres, axis=0)) * (n / (n - 1.0))


def affinity_loss(features, labels, centres, *, form: str = "affinity", reduction: str = "mean", sample_weight=None):
    """``L_af = reduce_i ||x_i - c_{y_i}||^2 / S`` (``form="center"`` drops the ``1/S``: the centre-loss
    ablation). ``reduction="mean"`` divides by N (official code), ``"sum"`` is the paper's eq. 2."""
    if form not in AFFINITY_FORMS:
        raise ValueError(f"affinity loss: form must be one of {AFFINITY_FORMS}, got {form!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"affinity loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    x = _as_vectors(features)
    centres = ops.cast(centres, "float32")
    if x.shape[-1] is not None and centres.shape[-1] != x.shape[-1]:
        raise ValueError(f"affinity loss: features have dimension {x.shape[-1]} but centres have shape {centres.shape}")
    y = ops.cast(ops.reshape(labels, (-1,)), "int32")
    dist = ops.sum(ops.square(x - ops.take(centres, y, axis=0)), axis=-1)
    value = reduce_per_sample(dist, sample_weight, reduction)
    if form == "affinity":
        value = value / centre_spread(centres)
    return value


def partition_loss(heads, *, form: str = "code", unbiased: bool = True, eps: float = PY_FLOAT_EPS):
    """Partition loss on V (B, K, L) (rows = heads).

    ``form="code"`` (official code, default): ``log(1 + K / (mean_{i,l} var_j V + eps))``;
    ``form="paper"`` (eq. 6): ``mean_{i,l} log(1 + K / (var_j V + eps))``. ``unbiased`` divides by K - 1 (torch
    ``var``). K = 1 gives 0.
    """
    if form not in PARTITION_FORMS:
        raise ValueError(f"partition loss: form must be one of {PARTITION_FORMS}, got {form!r}")
    v = ops.cast(heads, "float32")
    if len(v.shape) != 3:
        raise ValueError(f"partition loss: heads must be (B, K, L), got shape {v.shape}")
    k = v.shape[1]
    if k is None:
        raise ValueError("partition loss: the number of heads (axis 1) must be known")
    if k == 1:
        return ops.zeros((), "float32")
    var = ops.var(v, axis=1)
    if unbiased:
        var = var * (k / (k - 1.0))
    if form == "code":
        return ops.log(1.0 + k / (ops.mean(var) + eps))
    return ops.mean(ops.log(1.0 + k / (var + eps)))


@keras.saving.register_keras_serializable(package=PACKAGE)
class AffinityLoss(AuxiliaryLoss):
    """Affinity loss with learnable centres (num_centers, feature_dim), initialised N(0, 1).

    Reads the model output ``features`` (the x' map, pooled here). ``num_centers`` defaults to the number of
    classes; 8 for a 7-class model reproduces the released RAF-DB run (the official default).
    """

    requires = ("features",)

    def __init__(self, num_classes: int = 7, feature_dim: int = 512, num_centers: int | None = None,
                 form: str = "affinity", reduction: str = "mean", weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", "affinity")
        super().__init__(weight=weight, **kwargs)
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.num_centers = int(num_centers) if num_centers else self.num_classes
        if self.num_centers < self.num_classes:
            raise ValueError(f"affinity loss: num_centers={self.num_centers} < num_classes={self.num_classes}")
        if form not in AFFINITY_FORMS:
            raise ValueError(f"affinity loss: form must be one of {AFFINITY_FORMS}, got {form!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"affinity loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.form, self.reduction = form, reduction
        self.centres = self.add_weight(shape=(self.num_centers, self.feature_dim),
                                       initializer=keras.initializers.RandomNormal(0.0, 1.0), name="centres",
                                       dtype="float32")

    def compute(self, y_true, outputs, sample_weight=None):
        return affinity_loss(outputs["features"], y_true, self.centres, form=self.form, reduction=self.reduction,
                             sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "feature_dim": self.feature_dim,
                "num_centers": self.num_centers, "form": self.form, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PartitionLoss(AuxiliaryLoss):
    """Partition loss on the model output ``heads`` (V). No state."""

    requires = ("heads",)

    def __init__(self, form: str = "code", unbiased: bool = True, weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", "partition")
        super().__init__(weight=weight, **kwargs)
        if form not in PARTITION_FORMS:
            raise ValueError(f"partition loss: form must be one of {PARTITION_FORMS}, got {form!r}")
        self.form, self.unbiased = form, bool(unbiased)

    def compute(self, y_true, outputs, sample_weight=None):
        return partition_loss(outputs["heads"], form=self.form, unbiased=self.unbiased)

    def get_config(self):
        return {**super().get_config(), "form": self.form, "unbiased": self.unbiased}


def dan_losses(num_classes, num_heads=4, affinity_num_centers=None, affinity_form="affinity",
               affinity_reduction="mean", partition_form="code", partition_unbiased=True, **_model_config):
    """The aux losses of a DAN model built with this config (names ``affinity`` and ``partition``)."""
    return [AffinityLoss(num_classes, 512, affinity_num_centers, affinity_form, affinity_reduction, name="affinity"),
            PartitionLoss(partition_form, partition_unbiased, name="partition")]
