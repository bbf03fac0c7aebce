"""LNLAttenNet (Shi, Mao, Gou, Yan, Jiao, Xiong, Machine Intelligence Research 2024): a U-Net from scratch, 16
overlapping patches of its last feature map through 16 local networks with local attention, and a non-local
attention on the bottleneck that weights the patches; trained jointly with cross-entropy + L2.

Registers the models ``lnlattennet`` (the paper, 144 x 144 x 3) and ``lnlattennet_cpu`` (the same method with about
a quarter of the channels per layer and BatchNorm in the U-Net, at 64 x 64 x 3: not in the paper, for CPUs).
Nothing here imports TensorFlow: the builder, the explainers and the recipes load lazily.
"""

from __future__ import annotations

from pathlib import Path

from ferzoo import ModelSpec, hookimpl
from ferzoo.recipes import read_recipe_file

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
PAPER = ("G. Shi, S. Mao, S. Gou, D. Yan, L. Jiao, L. Xiong, 'Adaptively enhancing facial expression crucial regions "
         "via a local non-local joint network', Machine Intelligence Research 21(2):331-348, 2024 "
         "(doi 10.1007/s11633-023-1417-9)")

#: the paper's configuration; every key is documented in README.md ("Configuration" and "Choices")
DEFAULT_CONFIG = {
    "num_patches": 16,                          # M = n^2 (Table VI sweeps 4, 9, 16, 25, 36)
    "overlap": None,                            # pixels shared by adjacent patches; None: Eq. 5, gamma = 1/3 (16 px)
    "alpha": 0.3,                               # Eq. 1; spec 8.1: Table IV sits in Table V's 0.3 column (text: 0.7)
    "local_attention": True,                    # False: w^l = 1 (Model-S, Model-NonLocal)
    "nonlocal_attention": True,                 # False: w^g = 1/M and g* = g (Model-S, Model-Local)
    "local_impl": "batched",                    # "branches": 16 Python-level chains on the same weights
    "unet_widths": [64, 128, 256, 512, 1024],   # spec 8.4: the standard U-Net widths
    "unet_batch_norm": False,                   # spec 8.4: none in the paper
    "simplenet_widths": [64, 128, 256],         # Table II: two 3x3 convs + a 2x2 pool per stage
    "local_attention_widths": [256, 128, 128, 64],  # Table III: conv 3x3, 1x1, 3x3, 1x1
    "local_attention_hidden": 64,               # Table III: Dense 64 (ReLU, spec guess), then Dense 1 + sigmoid
    "local_attention_padding": "auto",          # 'valid' (Table III) unless the map is < 5x5 (spec 8.12)
    "nonlocal_channels": 512,                   # Table I: Q, K, V (and g, spec 8.3) channels
    "nonlocal_eps": 1e-8,                       # spec 8.6: eps in the L1 row normalisation
    "fc_units": [1024, 512],                    # spec 8.2: FC1, FC2 (then FC3 = the classes)
    "dropout": 0.5,                             # spec 8.2: after FC1 and after FC2
    "l2": 1e-4,                                 # Eq. 3: gamma * lambda on every Conv / Dense kernel (spec 8.9)
}


#: the CPU variant ``lnlattennet_cpu``: the same method and keys, about a quarter of the channels per layer (U-Net
#: 16-256, SimpleNets 32-128, local attention 16-64, non-local 128, FC 256 and 128) and BatchNorm in the U-Net
#: (spec 8.4's fallback); the paper's 16 patches, alpha, attention and L2
CPU_CONFIG = {
    **DEFAULT_CONFIG,
    "unet_widths": [16, 32, 64, 128, 256],
    "unet_batch_norm": True,
    "simplenet_widths": [32, 64, 128],
    "local_attention_widths": [64, 32, 32, 16],
    "local_attention_hidden": 16,
    "nonlocal_channels": 128,
    "fc_units": [256, 128],
}


def recipes() -> dict:
    """The paper's per-data-set recipes (``recipes.json``) and the ``synthetic`` quick-start recipe."""
    return read_recipe_file(_HERE / "recipes.json")


def cpu_recipes() -> dict:
    """The CPU variant's recipes (``recipes_cpu.json``; ferzoo's, not the paper's)."""
    return read_recipe_file(_HERE / "recipes_cpu.json")


_EXPLAINERS = {"patch_weights": "ferzoo_plugins.lnlattennet.explain:patch_weights_explainer",
               "local_weights": "ferzoo_plugins.lnlattennet.explain:local_weights_explainer"}
_FACE_ALIGNMENT = ("the data sets' aligned face crops (RAF-DB aligned, SFEW aligned faces, AffectNet face box); "
                   "CK+ / MMI faces cropped beforehand")


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="lnlattennet",
        builder="ferzoo_plugins.lnlattennet.model:build_lnlattennet",
        losses=None,  # cross-entropy (the core's) + L2 on the kernels (regularisers in the graph): no aux loss
        description="LNLAttenNet: U-Net + 16 local networks with local attention + non-local patch attention, "
                    "144x144 RGB, 89.7 M parameters",
        paper=PAPER,
        default_input_shape=(144, 144, 3),
        channels=(1, 3),
        min_size=16,
        mean=(0.0,),
        std=(1.0,),
        face_alignment=_FACE_ALIGNMENT,
        default_config=dict(DEFAULT_CONFIG),
        recipes="ferzoo_plugins.lnlattennet:recipes",
        explainers=dict(_EXPLAINERS),
        default_explainer="patch_weights",
        # R and s are unbounded products of ReLU maps: keep the non-local attention float in an int8 export
        int8_float_layers=("nonlocal_attention",),
    ))
    register(ModelSpec(
        name="lnlattennet_cpu",
        builder="ferzoo_plugins.lnlattennet.model:build_lnlattennet",
        losses=None,
        description="LNLAttenNet CPU: the same U-Net + local / non-local attention method with about a quarter of "
                    "the channels and BatchNorm in the U-Net, 64x64 RGB, 9.2 M parameters (not in the paper)",
        paper=PAPER + " (CPU variant: not in the paper)",
        default_input_shape=(64, 64, 3),
        channels=(1, 3),
        min_size=16,
        mean=(0.0,),
        std=(1.0,),
        face_alignment="FER-2013's registered 48x48 crops enlarged to 64x64; otherwise " + _FACE_ALIGNMENT,
        default_config=dict(CPU_CONFIG),
        recipes="ferzoo_plugins.lnlattennet:cpu_recipes",
        explainers=dict(_EXPLAINERS),
        default_explainer="patch_weights",
        int8_float_layers=("nonlocal_attention",),
    ))
