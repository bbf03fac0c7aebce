"""The LNLAttenNet graph (spec section 2), built on the core's normalised input (pixels / 255).

``build_lnlattennet(x, num_classes, **config)`` returns

* ``logits``          (B, C): FC3 of ``z``; the core adds ``probabilities`` (softmax);
* ``patch_weights``   (B, M): the non-local weights w^g (column means of R; 1/M in Model-S / Model-Local);
* ``local_weights``   (B, M): the local-attention weights w^l in (0, 1) (1 in Model-S / Model-NonLocal);
* ``correlation``     (B, M, M): the L1-normalised correlation R (only with the non-local attention);
* ``features``        (B, 17408): ``z = concat[g*, f_en]``, the input of FC1.

Graph (layer names): ``standardize`` -> U-Net ``conv1_1 .. conv5_2`` (F5) ``up6 .. conv9_2`` (F9) ->
``patches`` -> ``simplenets`` -> ``local_features`` (f_i) and ``local_attention`` (w^l); F5 -> ``nonlocal_attention``
(w^g, R, s) and ``global_vector`` (g) -> ``blend`` (g*); ``combine`` (f_en, Eq. 2) -> ``fused`` (z) -> ``fc1`` ->
``fc1_dropout`` -> ``fc2`` -> ``fc2_dropout`` -> ``logits``. Every Conv / Dense kernel carries
``keras.regularizers.L2(l2)`` (Eq. 3 with gamma = 1, lambda = 1e-4; biases are not regularised).
"""

from __future__ import annotations

from typing import Sequence

import keras

from .geometry import grid_side, patch_grid
from .layers import (IMPLS, BlendGlobal, CombineLocal, ConstantPatchWeights, GlobalVector, LocalAttentionHeads,
                     NonLocalAttention, PatchExtract, PatchFlatten, SimpleNets)

ATTENTION_PADDINGS = ("auto", "valid", "same")


def _fail(message: str):
    raise ValueError(f"lnlattennet: {message}")


def _positive_list(name: str, values, length: int | None = None) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        _fail(f"{name} must be a list of positive integers, got {values!r}")
    if not out or min(out) < 1 or any(isinstance(v, bool) for v in values) or (length and len(out) != length):
        size = f"{length} " if length else ""
        _fail(f"{name} must be a list of {size}positive integers, got {values!r}")
    return out


def unet(x, widths: Sequence[int] = (64, 128, 256, 512, 1024), batch_norm: bool = False, l2: float = 0.0):
    """Ronneberger's U-Net with 'same' padding and no output conv (spec 2.1): returns ``(F5, F9)``, the bottleneck
    (``conv{L}_2``) and the last decoder conv (``conv{2L-1}_2``) for L = len(widths) levels (L = 5: Conv5-2 and
    Conv9-2). Convs are 3 x 3, stride 1, ReLU, Glorot-uniform, zero biases; the up-convs are linear
    ``Conv2DTranspose`` 2 x 2 / 2 halving the channels; ``batch_norm`` puts a BatchNorm between conv and ReLU
    (momentum 0.9 of the moving statistics, PyTorch's 0.1, so that short runs evaluate with settled statistics)."""
    reg = keras.regularizers.L2(float(l2)) if l2 else None
    levels = len(widths)

    def double_conv(t, width: int, level: int):
        for j in (1, 2):
            name = f"conv{level}_{j}"
            if batch_norm:
                t = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=name)(t)
                t = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(t)
                t = keras.layers.ReLU(name=f"{name}_relu")(t)
            else:
                t = keras.layers.Conv2D(width, 3, padding="same", activation="relu", kernel_regularizer=reg,
                                        name=name)(t)
        return t

    skips = []
    t = x
    for level, width in enumerate(widths[:-1], start=1):
        t = double_conv(t, int(width), level)
        skips.append(t)
        t = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{level}")(t)
    f5 = t = double_conv(t, int(widths[-1]), levels)
    for level, (width, skip) in enumerate(zip(reversed(widths[:-1]), reversed(skips)), start=levels + 1):
        t = keras.layers.Conv2DTranspose(int(width), 2, strides=2, kernel_regularizer=reg, name=f"up{level}")(t)
        t = keras.layers.Concatenate(name=f"concat{level}")([t, skip])
        t = double_conv(t, int(width), level)
    return f5, t


def attention_padding(patch_side: int, stages: int, padding: str = "auto") -> str:
    """'valid' (Table III) unless the SimpleNet output is smaller than 5 x 5, where two valid 3 x 3 convs would
    leave nothing (spec 8.12: patches of 39 px or less); then 'same'."""
    if padding != "auto":
        return padding
    return "valid" if patch_side // (2 ** stages) >= 5 else "same"


def build_lnlattennet(x, num_classes, *, num_patches=16, overlap=None, alpha=0.3, local_attention=True,
                      nonlocal_attention=True, local_impl="batched", unet_widths=(64, 128, 256, 512, 1024),
                      unet_batch_norm=False, simplenet_widths=(64, 128, 256), local_attention_widths=(256, 128, 128, 64),
                      local_attention_hidden=64, local_attention_padding="auto", nonlocal_channels=512,
                      nonlocal_eps=1e-8, fc_units=(1024, 512), dropout=0.5, l2=1e-4):
    """The LNLAttenNet graph on the normalised input ``x``; every key is documented in README.md."""
    n = grid_side(num_patches)
    if local_impl not in IMPLS:
        _fail(f"local_impl must be one of {list(IMPLS)}, got {local_impl!r}")
    if local_attention_padding not in ATTENTION_PADDINGS:
        _fail(f"local_attention_padding must be one of {list(ATTENTION_PADDINGS)}, got {local_attention_padding!r}")
    for name, value in (("local_attention", local_attention), ("nonlocal_attention", nonlocal_attention),
                        ("unet_batch_norm", unet_batch_norm)):
        if not isinstance(value, bool):
            _fail(f"{name} must be true or false, got {value!r}")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        _fail(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0.0 <= alpha <= 1.0:
        _fail(f"alpha must be in [0, 1] (Eq. 1), got {alpha!r}")
    if not 0.0 <= float(dropout) < 1.0:
        _fail(f"dropout must be in [0, 1), got {dropout!r}")
    if float(l2) < 0:
        _fail(f"l2 must be >= 0, got {l2!r}")
    if float(nonlocal_eps) < 0:
        _fail(f"nonlocal_eps must be >= 0, got {nonlocal_eps!r}")
    unet_widths = _positive_list("unet_widths", unet_widths)
    if len(unet_widths) < 2:
        _fail(f"unet_widths needs at least 2 levels, got {unet_widths}")
    simplenet_widths = _positive_list("simplenet_widths", simplenet_widths)
    local_attention_widths = _positive_list("local_attention_widths", local_attention_widths, 4)
    fc_units = _positive_list("fc_units", fc_units)
    hidden = _positive_list("local_attention_hidden", [local_attention_hidden])[0]
    channels = _positive_list("nonlocal_channels", [nonlocal_channels])[0]

    h, w = int(x.shape[1]), int(x.shape[2])
    step = 2 ** (len(unet_widths) - 1)
    if h % step or w % step:
        _fail(f"the input {h}x{w} must be divisible by {step} for a {len(unet_widths)}-level U-Net "
              f"(the paper's input is 144x144)")
    grid = patch_grid(h, w, num_patches, overlap)
    l2 = float(l2)

    f5, f9 = unet(x, unet_widths, unet_batch_norm, l2)
    patches = PatchExtract(grid.ys, grid.xs, grid.height, grid.width, name="patches")(f9)
    pooled = SimpleNets(num_patches, simplenet_widths, local_impl, l2, name="simplenets")(patches)
    features = PatchFlatten(name="local_features")(pooled)
    if local_attention:
        padding = attention_padding(min(grid.height, grid.width), len(simplenet_widths), local_attention_padding)
        w_l = LocalAttentionHeads(num_patches, local_attention_widths, hidden, padding, local_impl, l2,
                                  name="local_attention")(pooled)
    else:
        w_l = ConstantPatchWeights(num_patches, 1.0, name="local_weights_uniform")(x)
    g = GlobalVector(n, channels, l2, name="global_vector")(f5)
    outputs = {}
    if nonlocal_attention:
        w_g, r, s = NonLocalAttention(n, channels, float(nonlocal_eps), l2, name="nonlocal_attention")(f5)
        g_star = BlendGlobal(alpha, name="blend")([g, s])
        outputs["correlation"] = r
    else:
        w_g = ConstantPatchWeights(num_patches, 1.0 / num_patches, name="patch_weights_uniform")(x)
        g_star = g
    f_en = CombineLocal(name="combine")([features, w_g, w_l])
    z = keras.layers.Concatenate(name="fused")([g_star, f_en])
    reg = keras.regularizers.L2(l2) if l2 else None
    t = z
    for k, units in enumerate(fc_units, start=1):
        t = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"fc{k}")(t)
        if float(dropout) > 0:
            t = keras.layers.Dropout(float(dropout), name=f"fc{k}_dropout")(t)
    logits = keras.layers.Dense(int(num_classes), kernel_regularizer=reg, name="logits")(t)
    return {"logits": logits, "patch_weights": w_g, "local_weights": w_l, "features": z, **outputs}


def model_grid(model):
    """The :class:`~ferzoo_plugins.lnlattennet.geometry.PatchGrid` of a built model (from its config and input)."""
    cfg = model.build_config
    h, w = model.input_shape_hwc[:2]
    return patch_grid(h, w, int(cfg.get("num_patches", 16)), cfg.get("overlap"))
