"""DAN (Distract your Attention Network, Wen et al. 2023): ResNet-18 + affinity loss, K attention heads with
partition loss, attention fusion. Registers the model ``dan`` and the losses ``dan_affinity`` and
``dan_partition``. Nothing here imports TensorFlow: builders are ``"module:attr"`` paths.
"""

from __future__ import annotations

import json
from pathlib import Path

from ferzoo import LossSpec, ModelSpec, hookimpl

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: build config; every flag is documented in README.md ("Choices where the paper is silent")
DEFAULT_CONFIG = {
    "num_heads": 4,
    "final_batchnorm": True,
    "affinity_num_centers": None,
    "affinity_form": "affinity",
    "affinity_reduction": "mean",
    "partition_form": "code",
    "partition_unbiased": True,
    "backbone_weights": None,
}


def recipes() -> dict:
    return json.loads((_HERE / "recipes.json").read_text())


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="dan",
        builder="ferzoo_plugins.dan.model:build_dan",
        losses="ferzoo_plugins.dan.losses:dan_losses",
        description="DAN: ResNet-18 + affinity loss, 4 attention heads + partition loss, attention fusion",
        paper="Wen, Lin, Wang, Xu. Distract Your Attention: Multi-head Cross Attention Network for Facial "
              "Expression Recognition. Biomimetics 8(2):199, 2023 (arXiv 2109.07270)",
        default_input_shape=(224, 224, 3),
        channels=(3,),
        min_size=32,
        num_classes=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        face_alignment="official aligned crops (RAF-DB, AffectNet); RetinaFace for SFEW",
        default_config=dict(DEFAULT_CONFIG),
        init_config=("backbone_weights",),
        recipes="ferzoo_plugins.dan:recipes",
        explainers={"heads_gradcam++": "ferzoo_plugins.dan.explain:head_gradcam_plus_plus"},
        # the backbone's last map, which every head sees (the last 4-D layer is head 3's spatial unit alone)
        gradcam_layer="layer4_1_out",
        default_explainer="heads_gradcam++",
        converter="ferzoo_plugins.dan.convert:convert",
        # int8 TFLite: the attention heads' products (x' * unbounded spatial map) and the log-softmax fusion
        # lose the ranking when quantized (top-1 agreement 14%); they stay float, the backbone is int8 (100%)
        int8_float_layers=("cat_head", "fusion", "head_sum"),
    ))


@hookimpl
def register_losses(register):
    register(LossSpec(name="dan_affinity", factory="ferzoo_plugins.dan.losses:AffinityLoss",
                      description="DAN affinity loss: distance to learnable class centres / centre spread"))
    register(LossSpec(name="dan_partition", factory="ferzoo_plugins.dan.losses:PartitionLoss",
                      description="DAN partition loss: rewards variance of the attention heads"))
