"""Explainers: functions ``fn(model, images, class_index, **options) -> (B, H, W)`` (or ``(B, K, H, W)``).

The core offers ``saliency`` (absolute input gradient of the class logit, max over channels) and
``gradcam++`` (tf-keras-vis, on ``layer=``, else the model's ``ModelSpec.gradcam_layer``, else its last 4-D
layer) for every model; plugins add their papers' own methods through ``ModelSpec.explainers``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .specs import resolve


def normalise_maps(maps) -> np.ndarray:
    """Scale each map to [0, 1] by its own maximum (all-zero maps stay zero)."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32))
    maps = np.maximum(maps, 0.0)
    flat = maps.reshape(maps.shape[0], -1)
    peak = flat.max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def _abs_input_gradient(model, x, idx):
    """|d logit_c / d x|, max over channels: (B, H, W)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)["logits"]
        score = tf.gather(logits, idx[:, None], batch_dims=1)
    return tf.reduce_max(tf.abs(tape.gradient(score, x)), axis=-1)


def gradient_saliency(model, images, class_index, **_):
    x = tf.convert_to_tensor(images, dtype=tf.float32)
    idx = tf.convert_to_tensor(class_index, dtype=tf.int32)
    return normalise_maps(_abs_input_gradient(model, x, idx).numpy())


def smoothgrad(model, images, class_index, samples: int = 16, noise: float = 0.05, seed: int = 0, **_):
    """SmoothGrad (Smilkov et al. 2017): the saliency map averaged over ``samples`` copies of each image with
    Gaussian noise of standard deviation ``noise`` x the pixel range (255) added; plain saliency of one image is
    speckled by the gradient's noise, the average keeps what the copies share. Deterministic for a ``seed``.
    Not a leading method of ``ferzoo explain``: on the localisation test's compact DAF-CNN (tests/core/
    test_explain_reports.py, seed 0) its region mass was 0.64 / 0.58 / 0.41 at noise 0.02 / 0.05 / 0.1 against
    plain saliency's 0.64: smoother pictures, no better placed."""
    x = tf.convert_to_tensor(images, dtype=tf.float32)
    idx = tf.convert_to_tensor(class_index, dtype=tf.int32)
    rng = np.random.default_rng(seed)
    total = tf.zeros(tf.shape(x)[:3], tf.float32)
    for _ in range(int(samples)):
        noisy = x + tf.constant(rng.normal(0.0, float(noise) * 255.0, size=x.shape), tf.float32)
        total += _abs_input_gradient(model, noisy, idx)
    return normalise_maps((total / float(samples)).numpy())


def gradcam_plus_plus(model, images, class_index, layer: str | None = None, output: str = "logits", **_):
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

    if layer is None:
        spec = getattr(model, "spec", None)
        layer = getattr(spec, "gradcam_layer", None) or last_spatial_layer(model)
    cam = GradcamPlusPlus(model.output_model(output), clone=False)
    # seek_penultimate_conv_layer=False: tf-keras-vis would otherwise walk back from ``layer`` to the nearest
    # Conv layer (for DAF-CNN: from attention_out to the pre-BN block4_conv2), so the map would not be of the
    # layer named here and in the plugins' READMEs
    maps = cam(_shifted_score(class_index), np.asarray(images, np.float32),
               penultimate_layer=layer, seek_penultimate_conv_layer=False, normalize_cam=False)
    return normalise_maps(maps)


def _shifted_score(class_index):
    """The class score for tf-keras-vis' Grad-CAM++ as ``logit - stop_gradient(logit)``: the same gradients, value 0.

    tf-keras-vis multiplies the gradients by ``exp(score)``: a logit above about 88 overflows float32 (inf * 0 =
    NaN) and one below about -87 underflows to 0, and either way the whole map comes out zero (measured on a
    random-weight DAN, logits near 700). The factor is one constant per image, which cancels in Grad-CAM++'s
    alphas and in the per-map normalisation; with the score's value at 0 it is exactly 1."""
    idx = tf.convert_to_tensor([int(i) for i in class_index], tf.int32)

    def score(output):
        value = tf.gather(tf.cast(output, tf.float32), idx[:, None], batch_dims=1)[:, 0]
        return value - tf.stop_gradient(value)

    return score


def last_spatial_layer(model) -> str:
    """Name of the last layer with a 4-D (B, H, W, C) output, other than the input and its normalisation."""
    import keras

    from .model import Standardize

    for layer in reversed(model.layers):
        if isinstance(layer, (keras.layers.InputLayer, Standardize)):
            continue
        shape = getattr(getattr(layer, "output", None), "shape", None)
        if shape is not None and len(shape) == 4:
            return layer.name
    raise ValueError(f"model {model.model_name!r} has no 4-D layer for Grad-CAM++; pass layer=")


CORE_EXPLAINERS = {"saliency": gradient_saliency, "smoothgrad": smoothgrad, "gradcam++": gradcam_plus_plus}


def list_explainers(model_name: str) -> list[str]:
    from .registry import get_registry

    spec = get_registry().model(model_name)
    return sorted(set(CORE_EXPLAINERS) | set(spec.explainers))


def get_explainer(model_name: str, method: str):
    from .registry import get_registry

    spec = get_registry().model(model_name)
    if method in spec.explainers:
        return resolve(spec.explainers[method])
    if method in CORE_EXPLAINERS:
        return CORE_EXPLAINERS[method]
    raise ValueError(f"model {model_name!r}: unknown explain method {method!r}; known: {list_explainers(model_name)}")


#: methods whose maps passed a localisation test here, best first: a model trained on images whose label is a
#: pattern in one quadrant puts most of the map's mass there (tests/core/test_explain_reports.py: occlusion on
#: Deep-Emotion; saliency on Deep-Emotion, the compact DAF-CNN (the default model) and FDRL). ``ferzoo explain``
#: leads with the first of these a model has.
LOCALISING = ("occlusion", "saliency")

#: one line per method: what its map shows ({cls}: the class explained). A plugin's explainer function may
#: carry its own as a ``caption`` attribute.
CAPTIONS = {
    "saliency": "where a pixel's change moves {cls} most",
    "smoothgrad": "where a pixel's change moves {cls} most, averaged over noisy copies",
    "occlusion": "where covering the face lowers {cls} most",
    "gradcam++": "where the last feature maps raise {cls}",
    "spatial_attention": "the paper's attention: the same for every class",
    "heads_gradcam++": "Grad-CAM++ of {cls}, one map per head",
    "intra_weights": "the paper's Intra-W: a bar per feature, not a place",
    "patch_weights": "the paper's patch weights: the same for every class",
    "local_weights": "the paper's local weights: the same for every class",
}


def default_methods(model_name: str) -> list[str]:
    """What ``ferzoo explain`` draws when no method is named: first a method that localises (the first of
    :data:`LOCALISING` the model has), then the model's own (paper) map when it is another one."""
    from .registry import get_registry

    known = list_explainers(model_name)
    own = get_registry().model(model_name).default_explainer
    lead = next((m for m in LOCALISING if m in known), own)
    return list(dict.fromkeys([lead, own]))


def caption(model_name: str, method: str, class_name: str) -> str:
    """One line saying what ``method``'s map shows, for the class ``class_name``."""
    fn = get_explainer(model_name, method)
    text = getattr(fn, "caption", None) or CAPTIONS.get(method)
    if text is None:
        from .registry import get_registry

        own = get_registry().model(model_name).default_explainer
        text = f"{method}: the model's own map" if method == own else f"{method}: a map for the {{cls}} score"
    return text.replace("{cls}", str(class_name))
