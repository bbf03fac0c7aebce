"""DAN builder: ResNet-18 features (FCN) -> K attention heads (MAN) -> fusion (AFN) -> Linear + BatchNorm."""

from __future__ import annotations

import math
import keras

from ferzoo.backbones.pretrained import load_resnet18_into
from ferzoo.backbones.resnet import BN_EPSILON, BN_MOMENTUM, resnet18_features

from .layers import AttentionFusion, ChannelAttention, HeadSum, SpatialAttention

FEATURE_DIM = 512


def torch_linear_initializers(fan_in: int):
    """PyTorch's default ``nn.Linear`` init: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return (keras.initializers.RandomUniform(-bound, bound), keras.initializers.RandomUniform(-bound, bound))


def head_layer_names(j: int) -> tuple[str, str]:
    """Names of head j's spatial unit (its output s_j is the Grad-CAM++ target) and channel unit."""
    return f"cat_head{j}_sa", f"cat_head{j}_ca"


def build_dan(x, num_classes: int, num_heads: int = 4, final_batchnorm: bool = True, backbone_weights=None,
              **_loss_config):
    """Build DAN on the normalised input tensor ``x``; returns ``{"logits", "features", "heads"}``:
    logits (B, C), features = the backbone map x' (B, h, w, 512), heads = V (B, K, 512)."""
    num_heads = int(num_heads)
    if num_heads < 1:
        raise ValueError(f"dan: num_heads must be >= 1, got {num_heads}")
    features = resnet18_features(x)
    head_vectors = []
    for j in range(num_heads):
        sa_name, ca_name = head_layer_names(j)
        s = SpatialAttention(name=sa_name)(features)
        head_vectors.append(ChannelAttention(name=ca_name)(s))
    heads = AttentionFusion(name="fusion")(head_vectors)
    fused = HeadSum(name="head_sum")(heads)
    kernel_init, bias_init = torch_linear_initializers(FEATURE_DIM)
    logits = keras.layers.Dense(num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init,
                                name="fc")(fused)
    if final_batchnorm:
        logits = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn")(logits)
    if backbone_weights:
        load_resnet18_into(features, backbone_weights, model="dan")
    return {"logits": logits, "features": features, "heads": heads}
