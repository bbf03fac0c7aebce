"""Deep-Emotion (Minaee et al., Sensors 2021): a small attentional CNN with a spatial transformer.

Registers the model ``deep_emotion`` (48x48x1 input). Nothing here imports TensorFlow: the builder, the
explainer and the recipes load lazily.
"""

from __future__ import annotations

import json
from pathlib import Path

import ferzoo
from ferzoo import ModelSpec

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
PAPER = ("S. Minaee, M. Minaei, A. Abdolrashidi, 'Deep-Emotion: Facial Expression Recognition Using an "
         "Attentional Convolutional Network', Sensors 21(9):3046, 2021 (arXiv 1902.01019)")

# Same keys and values as model.DEFAULT_CONFIG (kept here so that registering does not import Keras).
DEFAULT_CONFIG = {
    "stn_on": "features",
    "dropout": 0.5,
    "dropout_type": "elementwise",
    "fc_dropout": 0.0,
    "batch_norm": False,
    "fc1_activation": "relu",
    "fc_l2": 0.001,
    "filters": 10,
    "hidden": 50,
    "init_std": 0.05,
    "kernel_initializer": None,
    "loc_filters": [8, 10],
    "loc_kernels": [3, 3],
    "loc_hidden": 32,
    "identity_init": True,
}


def load_recipes() -> dict:
    """The per-data-set training recipes (``recipes.json``)."""
    path = _HERE / "recipes.json"
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(table, dict) or "default" not in table:
        raise ValueError(f"{path}: expected an object with a 'default' recipe")
    return table


@ferzoo.hookimpl
def register_models(register):
    register(ModelSpec(
        name="deep_emotion",
        builder="ferzoo_plugins.deep_emotion.model:build_deep_emotion",
        description="Deep-Emotion: 4-conv CNN (10 filters) + spatial-transformer attention, 76,777 parameters",
        paper=PAPER,
        default_input_shape=(48, 48, 1),
        input_shapes=[(48, 48, 1)],  # FC(810) = 10 x 9 x 9 only fits a 48x48 grayscale face
        channels=(1,),
        mean=(0.0,),
        std=(1.0,),
        default_config=dict(DEFAULT_CONFIG),
        recipes="ferzoo_plugins.deep_emotion:load_recipes",
        explainers={"occlusion": "ferzoo_plugins.deep_emotion.explain:occlusion_explainer"},
        default_explainer="occlusion",
    ))
