"""Occlusion saliency of Deep-Emotion (spec section 7, after Zeiler & Fergus).

For every window position ``(r, c)`` with ``r, c in {0, s, 2s, ..., H - N}`` an ``N x N`` patch of the image is
set to 0 (black). The window is *important* when the model's prediction for the occluded image differs from the
reference class. The map ``S[p]`` is the number of important windows that contain pixel ``p`` divided by the
number of windows that contain ``p`` (0 where no window reaches), so it lies in [0, 1].

``mode="drop"`` is the continuous variant: the mean over those windows of ``max(0, p_y(x) - p_y(x_rc))``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MODES = ("binary", "drop")


def occlusion_windows(height: int, width: int, window: int = 12, stride: int = 4) -> list[tuple[int, int]]:
    """Top-left corners ``(r, c)`` of every occlusion window, row by row."""
    if window < 1 or stride < 1:
        raise ValueError(f"occlusion: window ({window}) and stride ({stride}) must be >= 1")
    if window > height or window > width:
        raise ValueError(f"occlusion: window {window} is larger than the {height}x{width} image")
    return [(r, c) for r in range(0, height - window + 1, stride) for c in range(0, width - window + 1, stride)]


def occlusion_saliency(predict: Callable[[np.ndarray], np.ndarray], images, labels, *, window: int = 12,
                       stride: int = 4, fill: float = 0.0, mode: str = "binary", batch_size: int = 256) -> np.ndarray:
    """Saliency maps ``(B, H, W)`` in [0, 1] for a classifier ``predict(batch) -> (n, classes) scores``.

    ``images``: ``(B, H, W, C)`` in the classifier's pixel space (``fill=0`` is black); ``labels``: the
    reference class per image (the true label, or the prediction on the unoccluded image).
    """
    if mode not in MODES:
        raise ValueError(f"occlusion: mode={mode!r} is not one of {list(MODES)}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"occlusion: images must have shape (B, H, W, C), got {images.shape}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"occlusion: {images.shape[0]} images but {labels.shape[0]} labels")
    _, h, w, _ = images.shape
    corners = occlusion_windows(h, w, window, stride)
    coverage = np.zeros((h, w), np.float32)
    for r, c in corners:
        coverage[r:r + window, c:c + window] += 1.0

    maps = np.zeros(images.shape[:3], np.float32)
    for b, (image, label) in enumerate(zip(images, labels)):
        occluded = np.repeat(image[None], len(corners), axis=0)
        for k, (r, c) in enumerate(corners):
            occluded[k, r:r + window, c:c + window, :] = fill
        scores = np.concatenate([np.asarray(predict(occluded[i:i + batch_size]))
                                 for i in range(0, len(corners), batch_size)])
        if mode == "binary":
            value = (scores.argmax(-1) != label).astype(np.float32)
        else:
            base = float(np.asarray(predict(image[None]))[0, label])
            value = np.maximum(0.0, base - scores[:, label]).astype(np.float32)
        for k, (r, c) in enumerate(corners):
            maps[b, r:r + window, c:c + window] += value[k]
    return np.divide(maps, coverage[None], out=np.zeros_like(maps), where=coverage[None] > 0)


def occlusion_explainer(model, images, class_index, window: int = 12, stride: int = 4, fill: float = 0.0,
                        mode: str = "binary", batch_size: int = 256, **_):
    """``model.explain(images, method="occlusion")``: images are the model's raw 0..255 inputs, so the
    default ``fill=0`` is black in every pixel space; ``class_index`` is the reference class per image."""
    import keras

    def predict(batch):
        return keras.ops.convert_to_numpy(model(batch, training=False)["probabilities"])

    return occlusion_saliency(predict, images, class_index, window=window, stride=stride, fill=fill, mode=mode,
                              batch_size=batch_size)


def important_regions(model, images, labels, **options):
    """The paper's protocol (section 7): keep the images the unoccluded model classifies correctly and return
    ``(maps, kept)``: occlusion maps ``(K, H, W)`` against the *true* labels and the indices of the kept images.
    ``images`` are raw 0..255 pixels of any size (``model.preprocess`` converts them)."""
    batch = model.preprocess(images)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != batch.shape[0]:
        raise ValueError(f"important_regions: {batch.shape[0]} images but {labels.shape[0]} labels")
    kept = np.flatnonzero(model.predict(batch, verbose=0).argmax(-1) == labels)
    if kept.size == 0:
        h, w = batch.shape[1:3]
        return np.zeros((0, h, w), np.float32), kept
    return occlusion_explainer(model, batch[kept], labels[kept], **options), kept
