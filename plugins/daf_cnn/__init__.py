"""DAF-CNN (Zhou, Fan, Tjahjadi, Das Choudhury, Neural Computing and Applications 2022): a VGG-style CNN with
CBAM-like 3D attention, trained with softmax + the Triplet-Centre loss (rule-updated class centres).

Registers the models ``daf_cnn`` (the paper, 96 x 96 x 1) and ``daf_cnn_compact`` (the same method at 48 x 48 x 1
with fewer channels, for CPUs and TFLite) and the loss ``daf_tc``. Nothing here imports TensorFlow: builders,
losses, the explainer and the recipes load lazily.
"""

from __future__ import annotations

from pathlib import Path

from ferzoo import LossSpec, ModelSpec, hookimpl
from ferzoo.recipes import read_recipe_file

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
PAPER = ("L. Zhou, X. Fan, T. Tjahjadi, S. Das Choudhury, 'Discriminative attention-augmented feature learning for "
         "facial expression recognition in the wild', Neural Computing and Applications 34:925-936, 2022 "
         "(doi 10.1007/s00521-021-06045-z)")

#: the paper's configuration; every key is documented in README.md ("Configuration" and "Choices")
DEFAULT_CONFIG = {
    "widths": [64, 128, 256, 512, 512],  # spec 8.1: VGG widths (Fig. 1 is not in the text)
    "convs": [3, 3, 4, 4, 4],            # 3 + 3 + 4 + 4 + 4 = 18 conv layers, each Conv -> BN -> ReLU (8.3)
    "attention": True,                   # NOatt ablation: False (attention = identity)
    "attention_reduction": 8,            # r
    "attention_kernel": 7,               # spatial attention kernel k x k
    "attention_before_last_pool": False,  # spec 8.2: True applies attention to the 6x6 map before block 5's pool
    "fc_units": [512],                   # spec 8.4: hidden FC widths; the last is the embedding d ([4096, 4096]: VGG)
    "dropout": 0.5,                      # on the input of every FC layer
    "head_pool": "flatten",              # "flatten" (paper: 3x3x512 -> 4608) or "gap"
    "tc": True,                          # NOtcl ablation: False (softmax only, no centres)
    "tc_margin": 11.0,                   # m; the recipes set 11 (FER-2013) and 13 (SFEW)
    "tc_weight": 0.007,                  # lambda; the recipes set 0.007 (FER-2013) and 0.013 (SFEW)
    "tc_alpha": 0.5,                     # spec 8.9: centre update rate (centre-loss default)
    "tc_reduction": "mean",              # spec 8.8: "mean" over the batch, or "sum" (Eq. 9 as printed)
    "tc_distance": "half_squared",       # spec 8.7: 1/2 ||e - c||^2 (paper) or "euclidean" (official TCL code)
    "centre_update": "rule",             # spec 8.9: "rule" (Eq. 12) or "optimizer" (trainable centres)
    "tc_source": "embedding",            # spec 8.4: "embedding" (ReLU(FC1)) or "logits" (SHREC code)
    "tc_seed": None,                     # seed of the N(0, 0.01^2) centre initialiser (None: Keras' global seed)
}

#: the compact variant: same method and keys, 4 blocks of 2 convs at 32/64/128/256 on 48 x 48 (to 3 x 3)
COMPACT_CONFIG = {
    **DEFAULT_CONFIG,
    "widths": [32, 64, 128, 256],
    "convs": [2, 2, 2, 2],
    "fc_units": [256],
}


def recipes() -> dict:
    """The paper's per-data-set recipes (``recipes.json``)."""
    return read_recipe_file(_HERE / "recipes.json")


def compact_recipes() -> dict:
    """The compact variant's CPU recipes (``recipes_compact.json``)."""
    return read_recipe_file(_HERE / "recipes_compact.json")


_EXPLAINERS = {"spatial_attention": "ferzoo_plugins.daf_cnn.explain:spatial_attention_explainer"}


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="daf_cnn",
        builder="ferzoo_plugins.daf_cnn.model:build_daf_cnn",
        losses="ferzoo_plugins.daf_cnn.losses:daf_losses",
        description="DAF-CNN: 18-conv VGG backbone + channel/spatial (3D) attention, softmax + Triplet-Centre "
                    "loss, 96x96 grayscale, 22.6 M parameters",
        paper=PAPER,
        default_input_shape=(96, 96, 1),
        channels=(1, 3),
        min_size=32,
        mean=(0.0,),
        std=(1.0,),
        face_alignment="MTCNN face box (SFEW); FER-2013's registered 48x48 crops upsampled to 96x96",
        default_config=dict(DEFAULT_CONFIG),
        recipes="ferzoo_plugins.daf_cnn:recipes",
        explainers=dict(_EXPLAINERS),
        default_explainer="spatial_attention",
    ))
    register(ModelSpec(
        name="daf_cnn_compact",
        builder="ferzoo_plugins.daf_cnn.model:build_daf_cnn",
        losses="ferzoo_plugins.daf_cnn.losses:daf_losses",
        description="DAF-CNN compact: the same attention + Triplet-Centre method, 8 convs (32-256 channels) at "
                    "48x48 grayscale, 1.8 M parameters, CPU- and TFLite-friendly",
        paper=PAPER + " (compact variant: not in the paper)",
        default_input_shape=(48, 48, 1),
        channels=(1, 3),
        min_size=16,
        mean=(0.0,),
        std=(1.0,),
        face_alignment="FER-2013's registered 48x48 crops",
        default_config=dict(COMPACT_CONFIG),
        recipes="ferzoo_plugins.daf_cnn:compact_recipes",
        explainers=dict(_EXPLAINERS),
        default_explainer="spatial_attention",
    ))


@hookimpl
def register_losses(register):
    register(LossSpec(name="daf_tc", factory="ferzoo_plugins.daf_cnn.losses:TripletCentreLoss",
                      description="DAF-CNN Triplet-Centre loss: hinge on the own vs nearest other class centre "
                                  "(half squared L2), centres moved by the Eq. 12 rule"))
