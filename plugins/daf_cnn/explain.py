"""The spatial attention map A_s of DAF-CNN as a heat map (spec section 7: not in the paper, the natural extra).

``A_s`` (B, h, w, 1), h = w = 3 for the paper's 96 x 96 model, is upsampled bilinearly to the input size. It does
not depend on a class (the attention is class-agnostic), so ``class_index`` is accepted and ignored.
"""

from __future__ import annotations

import numpy as np


def spatial_attention_maps(model, images, *, batch_size: int = 64) -> np.ndarray:
    """Raw ``A_s`` (B, h, w) in (0, 1) for a batch of model inputs (raw 0..255 pixels of the input shape)."""
    import keras

    if "attention_spatial" not in model._outputs_struct:  # noqa: SLF001 - the functional model's output dict
        raise ValueError(f"model {model.model_name!r} was built with attention=False; it has no attention map "
                         f"(use method='gradcam++')")
    images = np.asarray(images, np.float32)
    out = [keras.ops.convert_to_numpy(model(images[i:i + batch_size], training=False)["attention_spatial"])
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)[..., 0].astype(np.float32)


def spatial_attention_explainer(model, images, class_index=None, normalize: bool = True, batch_size: int = 64, **_):
    """``model.explain(images, method="spatial_attention")``: A_s upsampled (bilinear) to the input H x W.

    ``normalize=True`` stretches each map to [0, 1] (min-max; a constant map gives zeros), so a map whose
    sigmoid values sit near 0.5 still shows where the attention is higher; ``normalize=False`` returns A_s's
    own values in (0, 1)."""
    import tensorflow as tf

    maps = spatial_attention_maps(model, images, batch_size=batch_size)
    h, w = model.input_shape_hwc[:2]
    up = tf.image.resize(maps[..., None], (h, w), method="bilinear").numpy()[..., 0]
    if not normalize:
        return np.clip(up, 0.0, 1.0)
    lo = up.reshape(len(up), -1).min(axis=1)[:, None, None]
    hi = up.reshape(len(up), -1).max(axis=1)[:, None, None]
    span = hi - lo
    return np.divide(up - lo, span, out=np.zeros_like(up), where=span > 1e-12).astype(np.float32)
