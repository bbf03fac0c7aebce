"""tf.data building blocks shared by the data set plugins and the model interface.

A data set reader returns an *unbatched* ``tf.data.Dataset`` of ``(image, label)``: ``image`` is a uint8 or
float32 ``H x W x C`` tensor of pixel values in [0, 255], ``label`` an int32 index into the data set's
``class_names``. The class names travel with the data set as the ``class_names`` attribute
(:func:`with_class_names`, :func:`class_names_of`); transformations drop Python attributes, so
:func:`prepare` re-attaches them.

Modules: :mod:`.source` (example tables, parallel decoding, bad-file handling), :mod:`.augment` (recipe
augmentation, samplers), :mod:`.folds` (subject-independent k-fold, seeded stratified splits),
:mod:`.tencrop` (ten-crop evaluation).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ..labels import label_mapping


def with_class_names(ds: tf.data.Dataset, class_names: Sequence[str]) -> tf.data.Dataset:
    ds.class_names = list(class_names)
    return ds


def class_names_of(ds) -> list[str] | None:
    names = getattr(ds, "class_names", None)
    return list(names) if names is not None else None


def convert_image(image: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
    """Convert one image or a batch (pixel values 0..255, any dtype) to float32 ``shape = (H, W, C)``:
    grayscale <-> RGB (ITU-R 601 luma), then resize (area when shrinking, bilinear otherwise)."""
    height, width, channels = (int(v) for v in shape)
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.float32:
        image = tf.cast(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    have = image.shape[-1]
    if have == 4:  # RGBA: drop alpha
        image = image[..., :3]
        have = 3
    if have != channels:
        if have == 1 and channels == 3:
            image = tf.repeat(image, 3, axis=-1)
        elif have == 3 and channels == 1:
            image = tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        else:
            raise ValueError(f"cannot convert images with {have} channels to {channels}")
    size = tf.shape(image)[-3:-1]
    target = tf.constant([height, width])
    if image.shape[-3] == height and image.shape[-2] == width:
        return image

    def _resize(method):
        return lambda: tf.image.resize(image, (height, width), method=method)

    shrinking = tf.reduce_all(size >= target)
    out = tf.cond(shrinking, _resize("area"), _resize("bilinear"))
    return tf.ensure_shape(out, (*image.shape[:-3], height, width, channels))


def resize_then_crop(input_shape: Sequence[int], load_size: Sequence[int], crop: str = "center",
                     seed: int | None = None):
    """``image -> image``: resize to ``load_size`` (H, W), then crop to ``input_shape`` (H, W, C) at random
    (``"random"``, one offset per image) or in the centre (``"center"``). Works on one image or a batch."""
    import keras

    h, w, c = (int(v) for v in input_shape)
    lh, lw = (int(v) for v in load_size)
    if lh < h or lw < w:
        raise ValueError(f"load_size {(lh, lw)} is smaller than the input {(h, w)}; it must be at least as large")
    if crop not in ("random", "center"):
        raise ValueError(f"crop must be 'random' or 'center', got {crop!r}")
    centre = keras.layers.CenterCrop(h, w, dtype="float32")

    def apply(image):
        image = convert_image(image, (lh, lw, c))
        if crop == "center":
            return centre(image)
        if image.shape.rank == 3:
            return tf.image.random_crop(image, (h, w, c), seed=seed)
        return tf.map_fn(lambda im: tf.image.random_crop(im, (h, w, c), seed=seed), image)

    return apply


def remap_labels(ds: tf.data.Dataset, source: Sequence[str], target: Sequence[str]) -> tf.data.Dataset:
    """Re-index labels of a data set whose classes are ``source`` into the class order ``target`` (by name)."""
    if list(source) == list(target):
        return ds
    table = tf.constant(label_mapping(list(source), list(target)), dtype=tf.int32)
    return ds.map(lambda x, y: (x, tf.gather(table, tf.cast(y, tf.int32))), num_parallel_calls=tf.data.AUTOTUNE)


def prepare(ds: tf.data.Dataset, input_shape: Sequence[int], *, batch_size: int = 32, class_names=None,
            target_class_names=None, shuffle: int | None = None, seed: int | None = None, augment=None,
            cache: bool = False, drop_remainder: bool = False, deterministic: bool | None = None,
            repeat: bool = False, load_size: Sequence[int] | None = None, crop: str = "center") -> tf.data.Dataset:
    """Unbatched ``(image, label)`` -> batched float32 images of ``input_shape`` (0..255) and int32 labels.

    ``augment`` is a callable applied to each batch (e.g. a Keras preprocessing pipeline) after batching.
    ``target_class_names`` re-indexes labels into a model's class order. ``load_size`` ``(H, W)`` resizes every
    image to that size first and then crops it to ``input_shape``: ``crop="random"`` (training: a fresh
    offset per image, torchvision ``RandomCrop``) or ``"center"`` (evaluation: ``keras.layers.CenterCrop``).
    """
    names = class_names or class_names_of(ds)
    if target_class_names is not None:
        if names is None:
            raise ValueError("the data set carries no class_names, so its labels cannot be matched to the model's")
        ds = remap_labels(ds, names, target_class_names)
        names = list(target_class_names)
    opts = tf.data.Options()
    if deterministic is not None:
        opts.deterministic = deterministic
    ds = ds.with_options(opts)
    if load_size is None:
        ds = ds.map(lambda x, y: (convert_image(x, input_shape), tf.cast(y, tf.int32)),
                    num_parallel_calls=tf.data.AUTOTUNE)
    else:
        cropper = resize_then_crop(input_shape, load_size, crop, seed)
        ds = ds.map(lambda x, y: (cropper(x), tf.cast(y, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return with_class_names(ds, names) if names is not None else ds


def synthetic(data_dir=None, split: str | None = None, *, num_classes: int = 7, size: int = 48, channels: int = 1,
              per_class: int = 24, seed: int = 0, class_names: Sequence[str] | None = None) -> tf.data.Dataset:
    """A tiny, learnable, generated face-like data set (no download): each class is a distinct blob pattern.

    Used by the README's quick start, by smoke tests and by third-party plugin authors."""
    from ..labels import CANONICAL

    names = list(class_names or CANONICAL[:num_classes])
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for num_classes={num_classes}")
    split_offset = {None: 0, "train": 0, "val": 1, "test": 2}
    if split not in split_offset:
        raise ValueError(f"synthetic: unknown split {split!r}; known: train, val, test, None")
    rng = np.random.default_rng(seed + 1000 * split_offset[split])
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for c in range(num_classes):
        angle = 2 * np.pi * c / num_classes
        cy, cx = 0.5 + 0.28 * np.sin(angle), 0.5 + 0.28 * np.cos(angle)
        for _ in range(per_class):
            jy, jx = rng.normal(0, 0.03, 2)
            blob = np.exp(-(((yy - cy - jy) ** 2 + (xx - cx - jx) ** 2) / 0.015))
            img = 60 + 160 * blob + rng.normal(0, 12, (size, size))
            img = np.clip(img, 0, 255).astype(np.uint8)[..., None]
            if channels == 3:
                img = np.repeat(img, 3, axis=-1)
            images.append(img)
            labels.append(c)
    order = rng.permutation(len(labels))
    ds = tf.data.Dataset.from_tensor_slices((np.stack(images)[order], np.array(labels, np.int32)[order]))
    return with_class_names(ds, names)
