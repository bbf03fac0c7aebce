"""Augmentation recipes from Keras preprocessing layers, and class-rebalancing samplers.

A recipe's ``augmentation`` is a dict of named operations applied in this order to batches of 0..255 images:
``flip`` (horizontal, bool), ``rotation`` (max degrees), ``zoom`` (max fraction), ``translate`` (max fraction),
``crop_padding`` (pixels of zero padding before a random crop back to size), ``erasing`` (probability of
random erasing), ``contrast``/``brightness`` (max factor).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

KNOWN = ("flip", "rotation", "zoom", "translate", "crop_padding", "erasing", "contrast", "brightness")


def build_augmentation(spec: Mapping, input_shape: Sequence[int], seed: int | None = None):
    import keras

    unknown = sorted(set(spec) - set(KNOWN))
    if unknown:
        raise ValueError(f"unknown augmentation operations {unknown}; known: {list(KNOWN)}")
    h, w, _ = (int(v) for v in input_shape)
    layers = []
    if spec.get("flip"):
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if spec.get("rotation"):
        layers.append(keras.layers.RandomRotation(float(spec["rotation"]) / 360.0, fill_mode="nearest", seed=seed))
    if spec.get("zoom"):
        z = float(spec["zoom"])
        layers.append(keras.layers.RandomZoom((-z, z), fill_mode="nearest", seed=seed))
    if spec.get("translate"):
        t = float(spec["translate"])
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="nearest", seed=seed))
    if spec.get("crop_padding"):
        p = int(spec["crop_padding"])
        layers += [keras.layers.ZeroPadding2D(p), keras.layers.RandomCrop(h, w, seed=seed)]
    if spec.get("contrast"):
        layers.append(keras.layers.RandomContrast(float(spec["contrast"]), value_range=(0, 255), seed=seed))
    if spec.get("brightness"):
        layers.append(keras.layers.RandomBrightness(float(spec["brightness"]), value_range=(0, 255), seed=seed))
    if spec.get("erasing"):
        layers.append(keras.layers.RandomErasing(factor=float(spec["erasing"]), value_range=(0, 255), seed=seed))
    if not layers:
        return None
    pipeline = keras.Sequential(layers, name="augmentation")

    def apply(images):
        return tf.clip_by_value(pipeline(images, training=True), 0.0, 255.0)

    return apply


def apply_sampler(ds: tf.data.Dataset, sampler, seed: int = 0) -> tf.data.Dataset:
    """Rebalance an unbatched (image, label) data set, streaming (nothing is held in memory).

    ``{"oversample": r}``: keep every example once and add randomly drawn repeats (with replacement) of each
    class c until N_c >= r * N_max. ``"balanced"``: per epoch, N draws where every class is equally likely
    (the expectation of sampling with weight 1 / count(label)), as DAN's ImbalancedDatasetSampler.
    """
    from . import class_names_of, with_class_names

    names = class_names_of(ds)
    counts = np.bincount(np.fromiter(ds.map(lambda x, y: y).as_numpy_iterator(), dtype=np.int64),
                         minlength=len(names) if names else 0)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("cannot resample an empty data set")

    def of_class(c):
        return ds.filter(lambda x, y: tf.equal(tf.cast(y, tf.int64), c))

    if isinstance(sampler, Mapping) and "oversample" in sampler:
        target = int(np.ceil(float(sampler["oversample"]) * counts.max()))
        out = ds
        for c, n in enumerate(counts):
            if 0 < n < target:
                extra = of_class(c).shuffle(int(n), seed=seed + c, reshuffle_each_iteration=True).repeat()
                out = out.concatenate(extra.take(target - int(n)))
    elif sampler == "balanced":
        present = [c for c, n in enumerate(counts) if n > 0]
        streams = [of_class(c).shuffle(int(counts[c]), seed=seed + c).repeat() for c in present]
        out = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(present)] * len(present),
                                                   seed=seed).take(total)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; use {{'oversample': ratio}} or 'balanced'")
    return with_class_names(out, names) if names else out
