"""DAF-CNN builders (spec section 2): a VGG-style backbone, the 3D attention, a two-FC classifier.

``build_daf_cnn(x, num_classes, **config)`` receives the core's normalised input (pixels / 255, [0, 1]) and
returns ``{"logits", "embedding", "features", "attention_channel", "attention_spatial"}``:

* ``logits``             (B, num_classes), the last Dense; the core adds the softmax ``probabilities``.
* ``embedding``          (B, d), ReLU(Dense(d)) before the second dropout: what the TC loss and t-SNE read.
* ``features``           (B, h, w, C), M: the refined map the classifier flattens (X without attention).
* ``attention_channel``  (B, 1, 1, C), A_c; ``attention_spatial`` (B, h, w, 1), A_s (absent without attention).

The compact variant ``daf_cnn_compact`` is this builder with its own ``default_config`` (48 x 48 input, fewer
channels; see README, "Compact variant").
"""

from __future__ import annotations

from typing import Sequence

import keras

from .layers import attention_3d

TC_SOURCES = ("embedding", "logits")
HEAD_POOLS = ("flatten", "gap")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(f"daf_cnn: {message}")


def backbone(x, widths: Sequence[int], convs: Sequence[int], attention_fn=None):
    """VGG blocks: ``convs[b]`` x (Conv2D 3x3 same, bias -> BN -> ReLU), then MaxPool 2x2 / 2.

    ``attention_fn(map) -> map``, when given, runs on block ``len(widths)``'s map *before* its pool
    (``attention_before_last_pool``)."""
    for b, (width, n) in enumerate(zip(widths, convs), start=1):
        for i in range(1, int(n) + 1):
            x = keras.layers.Conv2D(int(width), 3, padding="same", name=f"block{b}_conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"block{b}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"block{b}_relu{i}")(x)
        if attention_fn is not None and b == len(widths):
            x = attention_fn(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
    return x


def build_daf_cnn(x, num_classes, *, widths=(64, 128, 256, 512, 512), convs=(3, 3, 4, 4, 4), attention=True,
                  attention_reduction=8, attention_kernel=7, attention_before_last_pool=False, fc_units=(512,),
                  dropout=0.5, head_pool="flatten", tc_source="embedding", **_loss_config):
    """The DAF-CNN graph on the normalised input ``x``; config keys are documented in README.md."""
    widths, convs, fc_units = list(widths), list(convs), list(fc_units)
    _check(len(widths) == len(convs) and len(widths) >= 1,
           f"widths {widths} and convs {convs} must be lists of the same, non-zero length")
    _check(all(int(w) >= 1 for w in widths) and all(int(n) >= 1 for n in convs),
           f"widths {widths} and convs {convs} must be positive")
    _check(len(fc_units) >= 1 and all(int(u) >= 1 for u in fc_units),
           f"fc_units must be a non-empty list of positive widths, got {fc_units}")
    _check(0.0 <= float(dropout) < 1.0, f"dropout must be in [0, 1), got {dropout!r}")
    _check(head_pool in HEAD_POOLS, f"head_pool must be one of {list(HEAD_POOLS)}, got {head_pool!r}")
    _check(tc_source in TC_SOURCES, f"tc_source must be one of {list(TC_SOURCES)}, got {tc_source!r}")
    size = min(int(x.shape[1]), int(x.shape[2]))
    _check(size >= 2 ** len(widths), f"a {x.shape[1]}x{x.shape[2]} input is too small for {len(widths)} pools")

    maps = {}

    def attend(m):
        out, a_c, a_s = attention_3d(m, int(attention_reduction), int(attention_kernel), prefix="attention")
        maps["attention_channel"], maps["attention_spatial"] = a_c, a_s
        return out

    before = bool(attention) and bool(attention_before_last_pool)
    h = backbone(x, widths, convs, attend if before else None)
    if attention and not before:
        h = attend(h)
    features = h
    if head_pool == "flatten":
        h = keras.layers.Flatten(name="flatten")(h)
    else:
        h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    for k, units in enumerate(fc_units, start=1):
        if float(dropout) > 0:
            h = keras.layers.Dropout(float(dropout), name=f"fc{k}_dropout")(h)
        h = keras.layers.Dense(int(units), activation="relu", name=f"fc{k}")(h)
    embedding = h
    if float(dropout) > 0:
        h = keras.layers.Dropout(float(dropout), name="logits_dropout")(h)
    logits = keras.layers.Dense(int(num_classes), name="logits")(h)
    return {"logits": logits, "embedding": embedding, "features": features, **maps}


def embedding_dim(num_classes: int, fc_units=(512,), tc_source="embedding", **_config) -> int:
    """Dimension d of the vectors the TC loss sees (the last FC width, or the class count for logits)."""
    return int(num_classes) if tc_source == "logits" else int(list(fc_units)[-1])
