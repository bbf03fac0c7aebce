"""FDRL builder: ResNet-18 -> GAP (basic feature) -> FDN (M latent features) -> FRN (Intra-RM, Inter-RM,
node fusion, reconstruction) -> EPN (one linear layer). Spec section 2; ablation variants spec A8."""

from __future__ import annotations

import keras

from ferzoo.backbones.pretrained import load_resnet18_into
from ferzoo.backbones.resnet import resnet18_features

from .layers import (DISTANCE_EPS, INTRA_W_NORMS, BranchDense, BranchScale, BranchSum, InterRelation, IntraWeight,
                     NodeFusion, torch_linear_initializer)

BASIC_DIM = 512  # P: ResNet-18's pooled feature
NODE_INTRA_TERMS = ("intra", "message")

#: layer names (tests, explainers and the README refer to them)
FDN, INTRA_FC, INTRA_W, INTRA_AWARE, MESSAGE, INTER, NODES, RECON, EPN = (
    "fdn", "intra_fc", "intra_w", "intra_aware", "message", "inter_relation", "node_fusion", "reconstruction", "epn")


def check_config(num_latent, latent_dim, delta, fdn, intra_rm, inter_rm, node_intra_term, distance_eps,
                 intra_w_norm="l1") -> None:
    """Raise ``ValueError`` naming the config key and the allowed values."""
    for key, value in (("num_latent", num_latent), ("latent_dim", latent_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fdrl: config {key} must be an integer >= 1, got {value!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 <= float(delta) <= 1.0:
        raise ValueError(f"fdrl: config delta must be a number in [0, 1], got {delta!r}")
    for key, value in (("fdn", fdn), ("intra_rm", intra_rm), ("inter_rm", inter_rm)):
        if not isinstance(value, bool):
            raise ValueError(f"fdrl: config {key} must be true or false, got {value!r}")
    if not fdn and (intra_rm or inter_rm):
        raise ValueError("fdrl: config fdn=false (the ResNet-18 baseline) needs intra_rm=false and inter_rm=false: "
                         "the relation modules act on the FDN's latent features")
    if node_intra_term not in NODE_INTRA_TERMS:
        raise ValueError(f"fdrl: config node_intra_term must be one of {NODE_INTRA_TERMS}, got {node_intra_term!r}")
    if isinstance(distance_eps, bool) or not isinstance(distance_eps, (int, float)) or not float(distance_eps) > 0:
        raise ValueError(f"fdrl: config distance_eps must be a number > 0, got {distance_eps!r}")
    if intra_w_norm not in INTRA_W_NORMS:
        raise ValueError(f"fdrl: config intra_w_norm must be one of {INTRA_W_NORMS}, got {intra_w_norm!r}")


def _linear(units: int, fan_in: int, use_bias: bool, name: str):
    init = torch_linear_initializer(fan_in)
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=init, bias_initializer=init, name=name)


def build_fdrl(x, num_classes: int, num_latent: int = 9, latent_dim: int = 128, delta: float = 0.5,
               fdn: bool = True, intra_rm: bool = True, inter_rm: bool = True, use_bias: bool = True,
               node_intra_term: str = "intra", distance_eps: float = DISTANCE_EPS, intra_w_norm: str = "l1",
               backbone_weights=None, **_loss_config):
    """Build FDRL on the normalised input ``x``. Outputs (the core adds ``probabilities``):

    ``logits`` (N, K); ``basic`` x (N, 512); with the FDN ``latent`` L (N, M, D) and ``expression`` y (N, D);
    with Intra-RM ``intra_weights`` w (N, M); with Inter-RM ``inter_weights`` Omega (N, M, M).

    Ablations (spec A8): ``fdn=False`` is the ResNet-18 baseline (GAP -> linear 512 -> K); ``intra_rm=False``
    uses f = l; ``inter_rm=False`` uses y_ij = f_ij (delta = 1, no message network)."""
    check_config(num_latent, latent_dim, delta, fdn, intra_rm, inter_rm, node_intra_term, distance_eps, intra_w_norm)
    features = resnet18_features(x)
    basic = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    outputs = {"basic": basic}
    if not fdn:
        outputs["logits"] = _linear(num_classes, BASIC_DIM, use_bias, EPN)(basic)
    else:
        latent = BranchDense(num_latent, latent_dim, "relu", shared_input=True, use_bias=use_bias, name=FDN)(basic)
        outputs["latent"] = latent
        outputs.update(build_frn(latent, delta=delta, intra_rm=intra_rm, inter_rm=inter_rm, use_bias=use_bias,
                                 node_intra_term=node_intra_term, distance_eps=distance_eps,
                                 intra_w_norm=intra_w_norm))
        outputs["logits"] = _linear(num_classes, latent_dim, use_bias, EPN)(outputs["expression"])
    if backbone_weights:
        load_resnet18_into(features, backbone_weights, model="fdrl")
    return outputs


def build_frn(latent, *, delta: float = 0.5, intra_rm: bool = True, inter_rm: bool = True, use_bias: bool = True,
              node_intra_term: str = "intra", distance_eps: float = DISTANCE_EPS, intra_w_norm: str = "l1") -> dict:
    """The Feature Reconstruction Network on latent features L (N, M, D): Intra-RM (eqs. 3, 4, 7), Inter-RM
    (eqs. 8-10), node fusion (eq. 11) and reconstruction (eq. 12). Returns ``expression`` y (N, D), plus
    ``intra_weights`` w (N, M) with Intra-RM and ``inter_weights`` Omega (N, M, M) with Inter-RM."""
    num_latent, latent_dim = int(latent.shape[1]), int(latent.shape[2])
    out = {}
    intra = latent
    if intra_rm:
        importance = BranchDense(num_latent, latent_dim, "sigmoid", use_bias=use_bias, name=INTRA_FC)(latent)
        w = IntraWeight(intra_w_norm, name=INTRA_W)(importance)
        intra = BranchScale(name=INTRA_AWARE)([w, latent])
        out["intra_weights"] = w
    nodes = intra
    if inter_rm:
        messages = BranchDense(num_latent, latent_dim, "relu", use_bias=use_bias, name=MESSAGE)(intra)
        inter, omega = InterRelation(distance_eps, name=INTER)(messages)
        first = intra if node_intra_term == "intra" else messages
        nodes = NodeFusion(delta, name=NODES)([first, inter])
        out["inter_weights"] = omega
    out["expression"] = BranchSum(name=RECON)(nodes)
    return out


def head_parameter_counts(model) -> dict:
    """Trainable parameters per FDRL part (``fdn``, ``intra_fc``, ``message``, ``epn``, ``backbone``)."""
    import numpy as np

    head = {FDN, INTRA_FC, MESSAGE, EPN}
    counts = {name: 0 for name in (*sorted(head), "backbone")}
    for layer in model.layers:
        n = int(sum(np.prod(v.shape) for v in layer.trainable_weights))
        if n:
            counts[layer.name if layer.name in head else "backbone"] += n
    return counts
