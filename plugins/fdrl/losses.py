"""FDRL's losses (spec section 3): compactness L_C (eq. 2), balance L_B (eq. 6) and distribution L_D (eq. 5),
added to the cross-entropy as ``L = L_cls + lambda_1 L_C + lambda_2 L_B + lambda_3 L_D`` (eq. 13).

The maths is in pure functions (:func:`compactness_loss`, :func:`balance_loss`, :func:`distribution_loss`,
:func:`latent_centre_update`, :func:`class_centre_update`), pinned by the tests on the spec's hand cases. The
:class:`~ferzoo.losses.AuxiliaryLoss` layers hold the centres: by default non-trainable state moved by Wen et
al.'s centre-loss rule on training steps only (``centre_update="rule"``, spec A5), or trainable weights that the
model's optimizer moves (``centre_update="optimizer"``). Both start at zero.
"""

from __future__ import annotations

import keras
from keras import ops

from ferzoo.losses import AuxiliaryLoss, centre_loss_update, class_sums, reduce_per_sample

from .layers import PACKAGE

CENTRE_UPDATES = ("rule", "optimizer")


def normalised_intra_weights(w):
    """``w_i / sum_j alpha_ij`` (spec A3, flag ``normalize_intra_w``): each Intra-W vector sums to 1."""
    w = ops.cast(w, "float32")
    return w / ops.maximum(ops.sum(w, axis=-1, keepdims=True), 1e-12)


def compactness_loss(latent, centres, sample_weight=None, *, centre_gradient: bool = False):
    """Eq. 2: ``L_C = (1/N) sum_i sum_j ||l_ij - c_j||_2^2`` for L (N, M, D) and centres (M, D). No 1/2 factor;
    summed over j and the D elements, averaged over the images (weighted by ``sample_weight`` when given)."""
    latent = ops.cast(latent, "float32")
    centres = ops.cast(centres if centre_gradient else ops.stop_gradient(centres), "float32")
    if len(latent.shape) != 3:
        raise ValueError(f"compactness loss: latent features must be (N, M, D), got shape {latent.shape}")
    if tuple(centres.shape) != tuple(latent.shape[1:]):
        raise ValueError(f"compactness loss: centres have shape {tuple(centres.shape)}, the latent features "
                         f"{tuple(latent.shape[1:])}")
    per_image = ops.sum(ops.square(latent - centres[None]), axis=(1, 2))
    return reduce_per_sample(per_image, sample_weight)


def balance_loss(w, sample_weight=None, *, normalize: bool = False):
    """Eq. 6: ``L_B = ||w_bar - w_u||_1 = sum_j |(1/N) sum_i alpha_ij - 1/M|``: one L1 norm of an M-vector per
    batch (not N of them, spec A4). ``normalize`` applies it to :func:`normalised_intra_weights` (spec A3)."""
    w = normalised_intra_weights(w) if normalize else ops.cast(w, "float32")
    if len(w.shape) != 2:
        raise ValueError(f"balance loss: Intra-W must be (N, M), got shape {w.shape}")
    m = int(w.shape[-1])
    if sample_weight is not None:
        sw = ops.cast(ops.reshape(sample_weight, (-1, 1)), "float32")
        mean = ops.sum(w * sw, axis=0) / ops.maximum(ops.sum(sw), 1e-12)
    else:
        mean = ops.mean(w, axis=0)
    return ops.sum(ops.abs(mean - 1.0 / m))


def distribution_loss(w, labels, centres, sample_weight=None, *, normalize: bool = False,
                      centre_gradient: bool = False):
    """Eq. 5: ``L_D = (1/N) sum_i ||w_i - mu_{k_i}||_2^2`` for Intra-W (N, M), integer labels (N,) and class
    centres (K, M)."""
    w = normalised_intra_weights(w) if normalize else ops.cast(w, "float32")
    centres = ops.cast(centres if centre_gradient else ops.stop_gradient(centres), "float32")
    if len(w.shape) != 2 or w.shape[-1] != centres.shape[-1]:
        raise ValueError(f"distribution loss: Intra-W of shape {w.shape} does not fit centres {tuple(centres.shape)}")
    y = ops.cast(ops.reshape(labels, (-1,)), "int32")
    per_image = ops.sum(ops.square(w - ops.take(centres, y, axis=0)), axis=-1)
    return reduce_per_sample(per_image, sample_weight)


def latent_centre_update(latent, centres, rate: float = 0.5, sample_weight=None):
    """The latent centres after one batch (Wen et al.'s rule, every image feeds every centre):
    ``c_j <- c_j - rate * sum_i (c_j - l_ij) / (1 + N)``. N and the sums are the global batch's
    (:func:`ferzoo.losses.class_sums` all-reduces them across replicas); with ``sample_weight``, N is the weight
    sum and each image's contribution is weighted."""
    centres = ops.cast(ops.stop_gradient(centres), "float32")
    latent = ops.cast(ops.stop_gradient(latent), "float32")
    m, d = (int(v) for v in centres.shape)
    flat = ops.reshape(latent, (-1, m * d))
    one_group = ops.zeros((ops.shape(flat)[0],), "int32")
    sums, counts = class_sums(flat, one_group, 1, sample_weight)
    sums, n = ops.reshape(sums, (m, d)), counts[0]
    return centres - float(rate) * (n * centres - sums) / (1.0 + n)


def class_centre_update(w, labels, centres, rate: float = 0.5, sample_weight=None, *, normalize: bool = False):
    """The Intra-W class centres after one batch: ``mu_k <- mu_k - rate * sum_{i: k_i = k} (mu_k - w_i) / (1 + n_k)``;
    a class absent from the (global) batch keeps its centre."""
    w = normalised_intra_weights(w) if normalize else ops.cast(w, "float32")
    return centre_loss_update(ops.stop_gradient(centres), ops.stop_gradient(w), labels, rate, sample_weight)


def _check_common(centre_update, rate):
    if centre_update not in CENTRE_UPDATES:
        raise ValueError(f"fdrl: config centre_update must be one of {CENTRE_UPDATES}, got {centre_update!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"fdrl: config centre_rate must be a number in [0, 1], got {rate!r}")


class _CentredLoss(AuxiliaryLoss):
    """Shared centre handling: zero-initialised centres, as rule-updated state or as trainable weights."""

    def _centres(self, shape):
        if self.centre_update == "rule":
            return self.add_state("centres", shape)
        return self.add_weight(name="centres", shape=tuple(shape), initializer="zeros", trainable=True,
                               dtype="float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class CompactnessLoss(_CentredLoss):
    """L_C on the model output ``latent`` with M latent centres (M, D), one per latent feature, shared by all
    classes. Default weight lambda_1 = 1e-4."""

    requires = ("latent",)

    def __init__(self, num_latent: int = 9, latent_dim: int = 128, rate: float = 0.5, centre_update: str = "rule",
                 weight: float = 1e-4, **kwargs):
        kwargs.setdefault("name", "compactness")
        super().__init__(weight=weight, **kwargs)
        _check_common(centre_update, rate)
        self.num_latent, self.latent_dim = int(num_latent), int(latent_dim)
        self.rate, self.centre_update = float(rate), centre_update
        self.centres = self._centres((self.num_latent, self.latent_dim))

    def compute(self, y_true, outputs, sample_weight=None):
        return compactness_loss(outputs["latent"], self.centres, sample_weight,
                                centre_gradient=self.centre_update == "optimizer")

    def update(self, y_true, outputs, sample_weight=None):
        if self.centre_update != "rule":
            return None
        return [(self.centres, latent_centre_update(outputs["latent"], self.centres, self.rate, sample_weight))]

    def get_config(self):
        return {**super().get_config(), "num_latent": self.num_latent, "latent_dim": self.latent_dim,
                "rate": self.rate, "centre_update": self.centre_update}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BalanceLoss(AuxiliaryLoss):
    """L_B on the model output ``intra_weights``. No state. Default weight lambda_2 = 1.0.

    Under ``tf.distribute`` each replica takes the mean Intra-W of its own share of the batch (the mean inside
    the L1 norm is not additive across replicas)."""

    requires = ("intra_weights",)

    def __init__(self, normalize: bool = False, weight: float = 1.0, **kwargs):
        kwargs.setdefault("name", "balance")
        super().__init__(weight=weight, **kwargs)
        self.normalize = bool(normalize)

    def compute(self, y_true, outputs, sample_weight=None):
        return balance_loss(outputs["intra_weights"], sample_weight, normalize=self.normalize)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DistributionLoss(_CentredLoss):
    """L_D on the model output ``intra_weights`` with K class centres (K, M). Default weight lambda_3 = 1e-4."""

    requires = ("intra_weights",)

    def __init__(self, num_classes: int = 7, num_latent: int = 9, rate: float = 0.5, centre_update: str = "rule",
                 normalize: bool = False, weight: float = 1e-4, **kwargs):
        kwargs.setdefault("name", "distribution")
        super().__init__(weight=weight, **kwargs)
        _check_common(centre_update, rate)
        self.num_classes, self.num_latent = int(num_classes), int(num_latent)
        self.rate, self.centre_update, self.normalize = float(rate), centre_update, bool(normalize)
        self.centres = self._centres((self.num_classes, self.num_latent))

    def compute(self, y_true, outputs, sample_weight=None):
        return distribution_loss(outputs["intra_weights"], y_true, self.centres, sample_weight,
                                 normalize=self.normalize, centre_gradient=self.centre_update == "optimizer")

    def update(self, y_true, outputs, sample_weight=None):
        if self.centre_update != "rule":
            return None
        new = class_centre_update(outputs["intra_weights"], y_true, self.centres, self.rate, sample_weight,
                                  normalize=self.normalize)
        return [(self.centres, new)]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "num_latent": self.num_latent,
                "rate": self.rate, "centre_update": self.centre_update, "normalize": self.normalize}


def fdrl_losses(num_classes, *, num_latent=9, latent_dim=128, fdn=True, intra_rm=True, lambda_c=1e-4,
                lambda_b=1.0, lambda_d=1e-4, centre_rate=0.5, centre_update="rule", normalize_intra_w=False,
                **_model_config):
    """The aux losses of an FDRL model built with this config: ``compactness`` with the FDN, ``balance`` and
    ``distribution`` with Intra-RM (spec A8). The lambdas are the losses' weights (config, not recipe
    ``loss_weights``, so an ablation without a loss still compiles)."""
    for key, value in (("lambda_c", lambda_c), ("lambda_b", lambda_b), ("lambda_d", lambda_d)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) < 0:
            raise ValueError(f"fdrl: config {key} must be a number >= 0, got {value!r}")
    _check_common(centre_update, centre_rate)
    losses = []
    if fdn:
        losses.append(CompactnessLoss(num_latent, latent_dim, centre_rate, centre_update, weight=lambda_c,
                                      name="compactness"))
    if fdn and intra_rm:
        losses.append(BalanceLoss(normalize_intra_w, weight=lambda_b, name="balance"))
        losses.append(DistributionLoss(num_classes, num_latent, centre_rate, centre_update, normalize_intra_w,
                                       weight=lambda_d, name="distribution"))
    return losses
