"""Ten-crop evaluation: four corner crops, the centre crop and their horizontal mirrors; class probabilities
are averaged over the ten (torchvision ``TenCrop`` order: TL, TR, BL, BR, centre, then the mirrored five)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


def ten_crop(images, size: Sequence[int]) -> tf.Tensor:
    """``(B, H, W, C)`` (or one ``H x W x C``) -> ``(B, 10, h, w, C)`` crops of ``size = (h, w)``."""
    x = tf.convert_to_tensor(images)
    if x.shape.rank == 3:
        x = x[tf.newaxis]
    h, w = int(size[0]), int(size[1])
    H, W = x.shape[1], x.shape[2]
    if H is None or W is None:
        H, W = tf.shape(x)[1], tf.shape(x)[2]
    elif h > H or w > W:
        raise ValueError(f"crop {h}x{w} is larger than the images {H}x{W}")
    cy, cx = (H - h) // 2, (W - w) // 2
    offsets = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), (cy, cx)]
    crops = [x[:, oy:oy + h, ox:ox + w, :] for oy, ox in offsets]
    crops += [tf.reverse(c, axis=[2]) for c in crops]
    return tf.stack(crops, axis=1)


def ten_crop_predict(model, images, *, batch_size: int = 64) -> np.ndarray:
    """Mean class probabilities over the ten crops. ``images`` must already have the size the crops are cut
    from (e.g. 48x48 for a 44x44 model); the crop size is the model's input size."""
    h, w, c = model.input_shape_hwc
    out = []
    images = np.asarray(images, dtype=np.float32)
    for i in range(0, len(images), batch_size):
        crops = ten_crop(images[i:i + batch_size], (h, w))
        b = crops.shape[0]
        probs = model.predict_on_batch(tf.reshape(crops, (b * 10, h, w, c)))
        probs = probs["probabilities"] if isinstance(probs, dict) else probs
        out.append(np.asarray(probs).reshape(b, 10, -1).mean(axis=1))
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


def ten_crop_evaluate(model, ds, image_size: Sequence[int], *, batch_size: int = 64, class_names=None):
    """Evaluate ``model`` on the unbatched ``(image, label)`` data set ``ds`` with ten-crop averaging:
    each image is converted to ``image_size = (H, W)`` (and the model's channels), cut into ten crops of the
    model's input size, and the ten probability vectors are averaged. Labels are matched to the model's
    classes by name (as :meth:`ferzoo.model.FERModel.evaluate`). Returns an evaluation report."""
    from ..labels import label_mapping
    from ..metrics import classification_report
    from . import class_names_of, prepare

    names = list(class_names) if class_names is not None else class_names_of(ds)
    h, w, c = model.input_shape_hwc
    if image_size[0] < h or image_size[1] < w:
        raise ValueError(f"image_size {tuple(image_size)} is smaller than the model input {h}x{w}")
    pipe = prepare(ds, (int(image_size[0]), int(image_size[1]), c), batch_size=batch_size)
    y_true, y_pred = [], []
    for xb, yb in pipe:
        y_pred.append(ten_crop_predict(model, xb.numpy(), batch_size=batch_size).argmax(-1))
        y_true.append(yb.numpy().astype(np.int64))
    if not y_true:
        raise ValueError("ten_crop_evaluate: the data set is empty")
    yt = np.concatenate(y_true)
    if names is not None and names != list(model.class_names):
        yt = np.asarray(label_mapping(names, list(model.class_names)))[yt]
    return classification_report(yt, np.concatenate(y_pred), model.class_names)
