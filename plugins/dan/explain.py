"""Grad-CAM++ per attention head (the paper's Fig. 1): one map per head, target = the head's spatial-unit
output s_j (official ``cat_head{j}.sa``), score = the class logit (default: the predicted class)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ferzoo.explain import normalise_maps

from .model import head_layer_names


def _num_heads(model) -> int:
    k = 0
    while any(layer.name == head_layer_names(k)[0] for layer in model.layers):
        k += 1
    if k == 0:
        raise ValueError(f"model {getattr(model, 'model_name', model.name)!r} has no DAN attention heads (cat_head0_sa)")
    return k


def gradcam_plus_plus_weights(activations, grads):
    """Grad-CAM++ channel weights for (B, h, w, C) activations and score gradients:
    ``alpha = g^2 / (2 g^2 + sum_hw(A) g^3)`` (0 where g = 0), ``w_c = sum_hw alpha * relu(g)``."""
    g2 = grads ** 2
    g3 = g2 * grads
    total = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    denom = 2.0 * g2 + total * g3
    alpha = tf.where(tf.not_equal(grads, 0.0), g2 / tf.where(tf.equal(denom, 0.0), tf.ones_like(denom), denom), 0.0)
    return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))


def head_gradcam_plus_plus(model, images, class_index, heads=None, **_):
    """(B, K, H, W) maps in [0, 1] at input resolution, one per attention head (``heads`` picks a subset)."""
    k = _num_heads(model)
    heads = list(range(k)) if heads is None else [int(j) for j in heads]
    for j in heads:
        if not 0 <= j < k:
            raise ValueError(f"head index {j} out of range: this model has {k} heads (0..{k - 1})")
    import keras

    targets = [model.get_layer(head_layer_names(j)[0]).output for j in heads]
    probe = keras.Model(model.inputs, [*targets, model.output_model("logits").outputs[0]])
    x = tf.convert_to_tensor(images, tf.float32)
    idx = tf.convert_to_tensor(np.asarray(class_index), tf.int32)
    with tf.GradientTape() as tape:
        *acts, logits = probe(x, training=False)
        score = tf.reduce_sum(tf.gather(logits, idx[:, None], batch_dims=1))
    grads = tape.gradient(score, acts)
    h, w = int(x.shape[1]), int(x.shape[2])
    maps = []
    for a, g in zip(acts, grads):
        weights = gradcam_plus_plus_weights(a, g)
        cam = tf.nn.relu(tf.reduce_sum(a * weights[:, None, None, :], axis=-1, keepdims=True))
        maps.append(tf.image.resize(cam, (h, w), method="bilinear")[..., 0])
    stacked = tf.stack(maps, axis=1).numpy()  # (B, K, H, W)
    b = stacked.shape[0]
    return normalise_maps(stacked.reshape(b * len(heads), h, w)).reshape(b, len(heads), h, w)
