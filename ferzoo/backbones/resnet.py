"""ResNet-18 (torchvision layout) for Keras 3, numerically compatible with PyTorch weights.

PyTorch pads convolutions symmetrically; Keras ``padding="same"`` pads asymmetrically for strided convs, so
every padded op here is an explicit ``ZeroPadding2D`` followed by a ``"valid"`` op. Batch norm uses
PyTorch's epsilon 1e-5 and momentum 0.1 (Keras momentum 0.9). The max pool pads with zeros instead of
PyTorch's -inf, which is identical because its input is post-ReLU (>= 0).

Layer names follow torchvision's module names with ``.`` replaced by ``_`` (``conv1``, ``bn1``,
``layer2_0_conv1``, ``layer2_0_downsample_0``, ...), optionally behind a prefix, so a state_dict maps onto the
layers by name (:func:`torchvision_layer_map`).
"""

from __future__ import annotations

import keras

from ..layers import FusedBatchNormalization

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # = PyTorch momentum 0.1
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block), 2 blocks each
BLOCKS_PER_STAGE = 2


def conv_initializer(seed=None):
    """torchvision's ResNet conv init: kaiming normal, fan_out, ReLU gain, not truncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=seed)


def _bn(name):
    return FusedBatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _conv(filters, kernel, stride, name):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                               kernel_initializer=conv_initializer(), name=name)


def basic_block(x, filters: int, stride: int, name: str):
    """torchvision ``BasicBlock``: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU."""
    shortcut = x
    y = keras.layers.ZeroPadding2D(1, name=f"{name}_pad1")(x)
    y = _conv(filters, 3, stride, f"{name}_conv1")(y)
    y = _bn(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.ZeroPadding2D(1, name=f"{name}_pad2")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{name}_downsample_0")(x)
        shortcut = _bn(f"{name}_downsample_1")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet18_features(x, prefix: str = ""):
    """Apply ResNet-18 without avgpool and fc to a (B, H, W, C) tensor; returns the post-ReLU layer4 map
    (B, 7, 7, 512) at 224 x 224 and (B, 4, 4, 512) at 100 x 100 (PyTorch's output sizes)."""
    p = prefix
    x = keras.layers.ZeroPadding2D(3, name=f"{p}conv1_pad")(x)
    x = _conv(64, 7, 2, f"{p}conv1")(x)
    x = _bn(f"{p}bn1")(x)
    x = keras.layers.ReLU(name=f"{p}relu")(x)
    x = keras.layers.ZeroPadding2D(1, name=f"{p}maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{p}maxpool")(x)
    for stage, (filters, stride) in enumerate(STAGES, start=1):
        for block in range(BLOCKS_PER_STAGE):
            x = basic_block(x, filters, stride if block == 0 else 1, f"{p}layer{stage}_{block}")
    return x


def resnet18(input_shape=(224, 224, 3), prefix: str = "", name: str = "resnet18") -> keras.Model:
    """A standalone ResNet-18 feature extractor (no avgpool / fc): image (normalised) -> layer4 map."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    return keras.Model(inputs, resnet18_features(inputs, prefix), name=name)


def torchvision_layer_map(torch_prefix: str = "", keras_prefix: str = "", stage_names=None) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch module path, kind) for ResNet-18; kind is ``"conv"`` or ``"bn"``.

    ``torch_prefix`` is prepended to every module path (e.g. ``"features."`` for a ``nn.Sequential`` of the
    children). ``stage_names`` maps the torchvision names ``conv1, bn1, layer1..layer4`` to the module names
    used by the checkpoint (e.g. DAN's ``{"conv1": "0", "bn1": "1", "layer1": "4", ...}``).
    """
    rename = dict(stage_names or {})

    def t(name: str) -> str:
        head, _, rest = name.partition(".")
        return torch_prefix + rename.get(head, head) + (f".{rest}" if rest else "")

    out = {f"{keras_prefix}conv1": (t("conv1"), "conv"), f"{keras_prefix}bn1": (t("bn1"), "bn")}
    for stage, (filters, stride) in enumerate(STAGES, start=1):
        for block in range(BLOCKS_PER_STAGE):
            k = f"{keras_prefix}layer{stage}_{block}"
            m = f"layer{stage}.{block}"
            out[f"{k}_conv1"] = (t(f"{m}.conv1"), "conv")
            out[f"{k}_bn1"] = (t(f"{m}.bn1"), "bn")
            out[f"{k}_conv2"] = (t(f"{m}.conv2"), "conv")
            out[f"{k}_bn2"] = (t(f"{m}.bn2"), "bn")
            if block == 0 and (stride != 1 or stage > 1):
                out[f"{k}_downsample_0"] = (t(f"{m}.downsample.0"), "conv")
                out[f"{k}_downsample_1"] = (t(f"{m}.downsample.1"), "bn")
    return out
