"""FDRL (Ruan, Yan, Lai, Chai, Shen, Wang, CVPR 2021): Feature Decomposition and Reconstruction Learning.

ResNet-18 -> FDN (M latent features, compactness loss) -> FRN (Intra-RM with balance and distribution losses,
Inter-RM tanh-distance graph) -> one linear classifier. Registers the model ``fdrl`` and the losses
``fdrl_compactness``, ``fdrl_balance`` and ``fdrl_distribution``. Nothing here imports TensorFlow: builders,
losses, explainers and recipes load lazily.
"""

from __future__ import annotations

from pathlib import Path

from ferzoo import LossSpec, ModelSpec, hookimpl
from ferzoo.recipes import read_recipe_file

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER = ("D. Ruan, Y. Yan, S. Lai, Z. Chai, C. Shen, H. Wang, 'Feature Decomposition and Reconstruction Learning "
         "for Effective Facial Expression Recognition', CVPR 2021")

#: build config; every key is documented in README.md ("Configuration" and "Choices")
DEFAULT_CONFIG = {
    "num_latent": 9,             # M
    "latent_dim": 128,           # D (also the expression feature's dimension)
    "delta": 0.5,                # eq. 11, fixed
    "fdn": True,                 # Table 2 ablations (spec A8): false = the ResNet-18 baseline
    "intra_rm": True,
    "inter_rm": True,
    "use_bias": True,            # spec A2: biases in every FC (the equations show none)
    "node_intra_term": "intra",  # spec A7: eq. 11's first term is f_ij ("message": g_ij, as PinJui/FDRL)
    "distance_eps": 1e-12,       # spec A6: sqrt(max(squared distance, eps))
    "lambda_c": 1e-4,            # lambda_1, compactness
    "lambda_b": 1.0,             # lambda_2, balance
    "lambda_d": 1e-4,            # lambda_3, distribution
    "centre_rate": 0.5,          # eta_c of the centre rule (spec A5)
    "centre_update": "rule",     # "rule" (Wen et al.) or "optimizer" (trainable centres)
    "normalize_intra_w": False,  # spec A3: true = w_i / sum_j alpha_ij inside L_B and L_D
    "intra_w_norm": "l1",        # eq. 4's alpha = ||a||_1 in (0, D); "mean": ||a||_1 / D in (0, 1) (not the paper)
    "backbone_weights": None,    # init only: a converted ResNet-18 (tag of the backbone store, or a path)
}


def recipes() -> dict:
    """The paper's per-data-set recipes (``recipes.json``)."""
    return read_recipe_file(_HERE / "recipes.json")


@hookimpl
def register_models(register):
    register(ModelSpec(
        name="fdrl",
        builder="ferzoo_plugins.fdrl.model:build_fdrl",
        losses="ferzoo_plugins.fdrl.losses:fdrl_losses",
        description="FDRL: ResNet-18 + feature decomposition into 9 latent features, intra-/inter-feature "
                    "relation modules, compactness / balance / distribution losses",
        paper=PAPER,
        default_input_shape=(224, 224, 3),
        channels=(3,),
        min_size=32,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        face_alignment="eye-aligned face crops resized to 256x256, centre crop 224 (RAF-DB / SFEW aligned releases)",
        default_config=dict(DEFAULT_CONFIG),
        init_config=("backbone_weights",),
        recipes="ferzoo_plugins.fdrl:recipes",
        explainers={"intra_weights": "ferzoo_plugins.fdrl.explain:intra_weights_explainer"},
        default_explainer="intra_weights",
    ))


@hookimpl
def register_losses(register):
    register(LossSpec(name="fdrl_compactness", factory="ferzoo_plugins.fdrl.losses:CompactnessLoss",
                      description="FDRL compactness loss: latent features to one rule-updated centre per feature"))
    register(LossSpec(name="fdrl_balance", factory="ferzoo_plugins.fdrl.losses:BalanceLoss",
                      description="FDRL balance loss: L1 distance of the batch-mean Intra-W to uniform 1/M"))
    register(LossSpec(name="fdrl_distribution", factory="ferzoo_plugins.fdrl.losses:DistributionLoss",
                      description="FDRL distribution loss: Intra-W vectors to rule-updated class centres"))
