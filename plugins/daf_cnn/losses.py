"""The Triplet-Centre (TC) loss of DAF-CNN (He et al., CVPR 2018; spec section 3) with rule-updated centres.

The maths lives in pure functions (:func:`tc_distances`, :func:`tc_terms`, :func:`tc_loss`,
:func:`tc_centre_update`), which the tests pin on the spec's hand-computed cases; :class:`TripletCentreLoss`
is the :class:`ferzoo.losses.AuxiliaryLoss` that the model adds to the softmax cross-entropy:
``L_total = L_softmax + lambda * L_tc`` (Eq. 13).
"""

from __future__ import annotations

import keras
from keras import ops

from ferzoo.losses import AuxiliaryLoss, class_sums, reduce_per_sample

from .layers import PACKAGE

REDUCTIONS = ("mean", "sum")
DISTANCES = ("half_squared", "euclidean")
CENTRE_UPDATES = ("rule", "optimizer")


def tc_distances(embeddings, centres, distance: str = "half_squared"):
    """``D (B, K)``: ``D(e_i, c_j) = 1/2 ||e_i - c_j||_2^2`` (Eqs. 6-7; ``"half_squared"``, the paper) or
    ``||e_i - c_j||_2`` (``"euclidean"``, the official TCL code). Computed from the differences (exact)."""
    if distance not in DISTANCES:
        raise ValueError(f"tc loss: distance must be one of {DISTANCES}, got {distance!r}")
    e = ops.cast(embeddings, "float32")
    c = ops.cast(centres, "float32")
    sq = ops.sum(ops.square(e[:, None, :] - c[None, :, :]), axis=-1)
    if distance == "half_squared":
        return 0.5 * sq
    return ops.sqrt(ops.maximum(sq, 1e-12))


def tc_terms(embeddings, labels, centres, margin: float, distance: str = "half_squared"):
    """Per-sample hinge and nearest negative centre: ``(Lt (B,), q (B,) int32)``.

    ``q_i = argmin_{j != y_i} D(e_i, c_j)`` (never the own class, even when it is the nearest centre) and
    ``Lt_i = max(D(e_i, c_{y_i}) + m - D(e_i, c_{q_i}), 0)`` (Eq. 10)."""
    num_classes = int(centres.shape[0])
    d = tc_distances(embeddings, centres, distance)
    y = ops.cast(ops.reshape(labels, (-1,)), "int32")
    own = ops.one_hot(y, num_classes, dtype="float32")
    d_pos = ops.sum(d * own, axis=-1)
    d_other = ops.where(own > 0, ops.full_like(d, float("inf")), d)
    d_neg = ops.min(d_other, axis=-1)
    q = ops.cast(ops.argmin(d_other, axis=-1), "int32")
    return ops.relu(d_pos + float(margin) - d_neg), q


def tc_loss(embeddings, labels, centres, margin: float, *, reduction: str = "mean", distance: str = "half_squared",
            sample_weight=None, centre_gradient: bool = False):
    """The TC loss (Eq. 9): ``L_tc = reduce_i max(D(e_i, c_{y_i}) + m - min_{j != y_i} D(e_i, c_j), 0)``.

    ``reduction="mean"`` divides by the batch size M (Keras convention, spec 8.8; with ``sample_weight``, by
    the weight sum); ``"sum"`` is Eq. 9 as printed. The centres pass through ``stop_gradient``
    (``centre_gradient=False``, the rule-updated centres): ``dL/de_i = (c_{q_i} - c_{y_i}) [Lt_i > 0]`` (Eq. 11),
    divided by M under the mean. ``centre_gradient=True`` lets gradients reach the centres
    (``centre_update="optimizer"``)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"tc loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not centre_gradient:
        centres = ops.stop_gradient(centres)
    per_sample, _ = tc_terms(embeddings, labels, centres, margin, distance)
    return reduce_per_sample(per_sample, sample_weight, reduction)


def tc_centre_update(embeddings, labels, centres, margin: float, alpha: float = 0.5, *,
                     distance: str = "half_squared", sample_weight=None):
    """New centres after one mini-batch (Eq. 12, centre-loss style), from this step's ``e_i`` and centres.

    With ``P_j = {i: y_i = j, Lt_i > 0}`` and ``Q_j = {i: q_i = j, Lt_i > 0}``::

        Delta_j = sum_{i in P_j} (e_i - c_j) / (1 + |P_j|)  -  sum_{i in Q_j} (e_i - c_j) / (1 + |Q_j|)
        c_j <- c_j + alpha * Delta_j

    The own centre moves toward its violating samples, the nearest negative centre away from them; samples
    with ``Lt_i = 0`` move nothing, and a class with empty ``P_j`` and ``Q_j`` keeps its centre. The sums and
    counts are :func:`ferzoo.losses.class_sums` (all-reduced across replicas), so every replica applies the
    same, global-batch update. ``sample_weight`` weights each sample's contribution (and its count)."""
    centres = ops.cast(ops.stop_gradient(centres), "float32")
    e = ops.cast(ops.stop_gradient(embeddings), "float32")
    num_classes = int(centres.shape[0])
    per_sample, q = tc_terms(e, labels, centres, margin, distance)
    active = ops.cast(per_sample > 0, "float32")
    if sample_weight is not None:
        active = active * ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
    y = ops.cast(ops.reshape(labels, (-1,)), "int32")
    sums_p, counts_p = class_sums(e, y, num_classes, active)
    sums_q, counts_q = class_sums(e, q, num_classes, active)
    pull = (sums_p - counts_p[:, None] * centres) / (1.0 + counts_p[:, None])
    push = (sums_q - counts_q[:, None] * centres) / (1.0 + counts_q[:, None])
    return centres + float(alpha) * (pull - push)


class StateUpdates(tuple):
    """``(variable, new value)`` pairs returned by :meth:`TripletCentreLoss.update`.

    The core iterates ``update(...).items()`` like a ``{variable: value}`` dict, but Keras 3 variables are
    unhashable (no dict can hold them as keys), so this tuple of pairs offers ``items()`` instead; iterating it
    directly gives the same pairs."""

    def items(self):
        return iter(self)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TripletCentreLoss(AuxiliaryLoss):
    """TC loss with class centres ``(num_classes, embedding_dim)`` initialised N(0, 0.01^2).

    ``centre_update="rule"`` (default, spec 8.9): the centres are non-trainable state moved by
    :func:`tc_centre_update` on training steps only. ``"optimizer"``: the centres are trainable weights
    that the model's optimizer moves with the network (the official TCL code's ``nn.Parameter``).
    ``source`` is the model output the loss reads (``"embedding"``, or ``"logits"`` as in the SHREC code)."""

    def __init__(self, num_classes: int = 7, embedding_dim: int = 512, margin: float = 11.0, alpha: float = 0.5,
                 reduction: str = "mean", distance: str = "half_squared", centre_update: str = "rule",
                 source: str = "embedding", centre_std: float = 0.01, seed: int | None = None,
                 weight: float = 0.007, **kwargs):
        kwargs.setdefault("name", "tc")
        super().__init__(weight=weight, **kwargs)
        if reduction not in REDUCTIONS:
            raise ValueError(f"tc loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if distance not in DISTANCES:
            raise ValueError(f"tc loss: distance must be one of {DISTANCES}, got {distance!r}")
        if centre_update not in CENTRE_UPDATES:
            raise ValueError(f"tc loss: centre_update must be one of {CENTRE_UPDATES}, got {centre_update!r}")
        if float(margin) < 0:
            raise ValueError(f"tc loss: margin must be >= 0, got {margin!r}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"tc loss: alpha must be in [0, 1], got {alpha!r}")
        self.num_classes, self.embedding_dim = int(num_classes), int(embedding_dim)
        self.margin, self.alpha = float(margin), float(alpha)
        self.reduction, self.distance, self.centre_update = reduction, distance, centre_update
        self.source = str(source)
        self.requires = (self.source,)
        self.centre_std = float(centre_std)
        self.seed = None if seed is None else int(seed)
        init = keras.initializers.RandomNormal(0.0, self.centre_std, seed=self.seed)
        shape = (self.num_classes, self.embedding_dim)
        if centre_update == "rule":
            self.centres = self.add_state("centres", shape, initializer=init)
        else:
            self.centres = self.add_weight(name="centres", shape=shape, initializer=init, trainable=True,
                                           dtype="float32")

    def compute(self, y_true, outputs, sample_weight=None):
        return tc_loss(outputs[self.source], y_true, self.centres, self.margin, reduction=self.reduction,
                       distance=self.distance, sample_weight=sample_weight,
                       centre_gradient=self.centre_update == "optimizer")

    def update(self, y_true, outputs, sample_weight=None):
        if self.centre_update != "rule":
            return None
        new = tc_centre_update(outputs[self.source], y_true, self.centres, self.margin, self.alpha,
                               distance=self.distance, sample_weight=sample_weight)
        return StateUpdates([(self.centres, new)])

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "embedding_dim": self.embedding_dim,
                "margin": self.margin, "alpha": self.alpha, "reduction": self.reduction, "distance": self.distance,
                "centre_update": self.centre_update, "source": self.source, "centre_std": self.centre_std,
                "seed": self.seed}


def daf_losses(num_classes, *, tc=True, tc_margin=11.0, tc_weight=0.007, tc_alpha=0.5, tc_reduction="mean",
               tc_distance="half_squared", centre_update="rule", tc_source="embedding", tc_seed=None,
               fc_units=(512,), **_model_config):
    """The aux losses of a DAF-CNN built with this config: ``[tc]``, or ``[]`` with ``tc=False`` (NOtcl)."""
    if not tc:
        return []
    from .model import embedding_dim

    dim = embedding_dim(num_classes, fc_units, tc_source)
    return [TripletCentreLoss(num_classes, dim, tc_margin, tc_alpha, tc_reduction, tc_distance, centre_update,
                              tc_source, seed=tc_seed, weight=tc_weight, name="tc")]
