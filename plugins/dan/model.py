"""DAN builder: ResNet-18 features (FCN) -> K attention heads (MAN) -> fusion (AFN) -> Linear + BatchNorm."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from ferzoo.backbones.resnet import BN_EPSILON, BN_MOMENTUM, resnet18, resnet18_features

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
        load_backbone_weights(features, backbone_weights)
    return {"logits": logits, "features": features, "heads": heads}


def backbone_layers(features) -> dict[str, keras.layers.Layer]:
    """The ResNet-18 layers (by name) that produced the tensor ``features``, found by walking the graph."""
    found, stack, seen = {}, [features], set()
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        layer = history.operation
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.weights:
            found[layer.name] = layer
        node = layer._inbound_nodes[history.node_index]
        stack.extend(node.input_tensors)
    return found


def load_backbone_weights(features, path) -> None:
    """Copy a standalone ResNet-18 ``.weights.h5`` (written by ``ferzoo convert dan resnet18_msceleb.pth``)
    into the backbone layers that produced ``features``. A store tag of model ``dan`` is accepted too."""
    from ferzoo.weights import store_dir

    p = Path(str(path))
    if not p.exists() and not str(path).endswith(".weights.h5"):
        p = store_dir("dan", str(path)) / "resnet18.weights.h5"
    if not p.exists():
        raise FileNotFoundError(f"dan: backbone_weights {str(path)!r}: no file {p} (convert the MS-Celeb "
                                "checkpoint with `ferzoo convert dan resnet18_msceleb.pth --tag msceleb` first)")
    donor = resnet18(input_shape=(64, 64, 3))
    try:
        donor.load_weights(str(p))
    except Exception as exc:  # noqa: BLE001 - h5py/keras raise several types
        raise ValueError(f"dan: backbone_weights {p}: not a ResNet-18 weights file ({type(exc).__name__}: {exc})") from None
    targets = backbone_layers(features)
    for layer in donor.layers:
        if not layer.weights:
            continue
        if layer.name not in targets:
            raise ValueError(f"dan: backbone layer {layer.name!r} from {p} has no counterpart in the model")
        targets[layer.name].set_weights(layer.get_weights())
