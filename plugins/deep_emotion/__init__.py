"""Deep-Emotion (Minaee et al., Sensors 2021): a small attentional CNN with a spatial transformer.

Registers the model ``deep_emotion`` (48x48x1 input). Nothing here imports TensorFlow: the builder, the
explainer and the recipes load lazily.
"""

from __future__ import annotations

from pathlib import Path

import ferzoo
from ferzoo import ModelSpec
from ferzoo.recipes import read_recipe_file

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
PAPER = ("S. Minaee, M. Minaei, A. Abdolrashidi, 'Deep-Emotion: Facial Expression Recognition Using an "
         "Attentional Convolutional Network', Sensors 21(9):3046, 2021 (arXiv 1902.01019)")

# The builder's config keys and defaults (ferzoo.build checks config keys against these; A-numbers: README).
DEFAULT_CONFIG = {
    "stn_on": "features",        # A1: Fig. 3; "input" warps the image (text / omarsayed7); "none" = plain CNN
    "dropout": 0.5,              # A4: rate of the dropout after conv4
    "dropout_type": "elementwise",  # A4: "spatial" drops whole channels (mkmohangb's Dropout2d)
    "fc_dropout": 0.0,           # A4: extra dropout between fc1 and fc2 (mkmohangb uses 0.5)
    "batch_norm": False,         # A6: true = BatchNorm after conv4 (omarsayed7); "all" = after every conv
    "fc1_activation": "relu",    # A5: ReLU between fc1 and fc2 (not drawn in Fig. 3)
    "fc_l2": 0.001,              # Eq. 1 lambda on the fc1 and fc2 kernels (A7)
    "filters": 10,               # conv filters of the feature branch
    "hidden": 50,                # fc1 width
    "init_std": 0.05,            # N(0, 0.05^2) kernels (A10)
    "kernel_initializer": None,  # None = N(0, init_std^2) as the paper; a Keras name (e.g. "he_normal") instead
    "loc_filters": [8, 10],      # localisation conv filters (Fig. 3)
    "loc_kernels": [3, 3],       # A2: Fig. 3 draws 3x3; omarsayed7 uses [7, 5]
    "loc_hidden": 32,            # localisation FC width
    "identity_init": True,       # A10: identity theta at initialisation
    "theta_limit": None,         # None = unbounded theta (paper); x = each parameter kept within x of the identity
}


def load_recipes() -> dict:
    """The per-data-set training recipes (``recipes.json``)."""
    return read_recipe_file(_HERE / "recipes.json")


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
