"""The paper's t-SNE figure (Figs. 4-5): 2-D t-SNE of the embedding e, coloured by class, numbered clusters.

Style after popcornell/keras-triplet-center-loss ``TSNE_plot.py`` (spec section 7): the first ``max_points``
samples (512 in the paper), ``sklearn.manifold.TSNE()`` with its default parameters, an "hls" palette
(seaborn's: evenly spaced hues, lightness 0.6, saturation 0.65, computed here without seaborn), and each
class's index written at the median of its points. Needs scikit-learn and matplotlib (optional; not
dependencies of ferzoo): ``pip install scikit-learn matplotlib``.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np

INSTALL_HINT = "pip install scikit-learn matplotlib"


def _require():
    """Import TSNE and pyplot (Agg backend) or raise ImportError naming the install command."""
    missing = []
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        missing.append("scikit-learn")
        TSNE = None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        missing.append("matplotlib")
        plt = None
    if missing:
        raise ImportError(f"write_tsne needs {' and '.join(missing)}, which ferzoo does not install: "
                          f"{INSTALL_HINT}")
    return TSNE, plt


def hls_palette(n: int) -> list[tuple[float, float, float]]:
    """seaborn ``color_palette("hls", n)``: hues ``(i / n + 0.01) mod 1``, lightness 0.6, saturation 0.65."""
    return [colorsys.hls_to_rgb((i / n + 0.01) % 1.0, 0.6, 0.65) for i in range(int(n))]


def collect_embeddings(model, dataset, max_points: int = 512, *, output: str = "embedding",
                       batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The first ``max_points`` samples' ``output`` vectors (N, d) and labels (N,), in data order.

    ``dataset``: a ``tf.data.Dataset`` of ``(image, label)`` (batched or not; labels are re-indexed into the
    model's class order when it carries ``class_names``), or a tuple ``(images, labels)`` of arrays. Images
    of another size or channel count are converted with ``model.preprocess``."""
    import keras

    if int(max_points) < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points!r}")
    images, labels = _first(dataset, int(max_points))
    names = getattr(dataset, "class_names", None)
    if names is not None and list(names) != list(model.class_names):
        from ferzoo.labels import label_mapping

        labels = np.asarray(label_mapping(list(names), list(model.class_names)))[labels]
    if tuple(images.shape[1:]) != tuple(model.input_shape_hwc):
        images = model.preprocess(images)
    outs = [keras.ops.convert_to_numpy(model(images[i:i + batch_size], training=False)[output])
            for i in range(0, len(images), batch_size)]
    vectors = np.concatenate(outs).reshape(len(images), -1).astype(np.float32)
    return vectors, labels


def _first(dataset, n: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        images, labels = np.asarray(dataset[0]), np.asarray(dataset[1]).reshape(-1)
        if len(images) != len(labels):
            raise ValueError(f"write_tsne: {len(images)} images but {len(labels)} labels")
        return images[:n].astype(np.float32), labels[:n].astype(np.int64)
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"write_tsne: expected a tf.data.Dataset of (image, label) or (images, labels) arrays, "
                        f"got {type(dataset).__name__}")
    spec = dataset.element_spec
    if spec[0].shape.rank == 4:
        dataset = dataset.unbatch()
    xs, ys = [], []
    for x, y in dataset.take(n).as_numpy_iterator():
        xs.append(np.asarray(x, np.float32))
        ys.append(int(np.asarray(y).reshape(())))
    if not xs:
        raise ValueError("write_tsne: the data set is empty")
    return np.stack(xs), np.asarray(ys, np.int64)


def write_tsne(model, dataset, path, max_points: int = 512, *, seed: int = 0, output: str = "embedding",
               title: str | None = None, batch_size: int = 128, dpi: int = 120) -> dict:
    """Write the t-SNE plot of ``model``'s embeddings of ``dataset``'s first ``max_points`` samples as a PNG.

    ``seed`` is TSNE's ``random_state`` (its only non-default parameter). Returns ``{"path", "points" (N, 2),
    "labels" (N,)}``. Raises ImportError naming ``pip install scikit-learn matplotlib`` when they are absent
    (checked before any work)."""
    TSNE, plt = _require()
    vectors, labels = collect_embeddings(model, dataset, max_points, output=output, batch_size=batch_size)
    if len(vectors) < 2:
        raise ValueError(f"write_tsne: t-SNE needs at least 2 points, got {len(vectors)}")
    kwargs = {"random_state": int(seed)}
    # TSNE's default perplexity (30) must stay below the number of points
    if len(vectors) <= 30:
        kwargs["perplexity"] = max(1.0, (len(vectors) - 1) / 3.0)
    points = TSNE(n_components=2, **kwargs).fit_transform(vectors.astype(np.float64))
    colours = hls_palette(model.num_classes)
    fig, ax = plt.subplots(figsize=(8, 8))
    for k in range(model.num_classes):
        sel = labels == k
        if not np.any(sel):
            continue
        ax.scatter(points[sel, 0], points[sel, 1], s=12, color=colours[k], label=f"{k} {model.class_names[k]}")
        mx, my = np.median(points[sel], axis=0)
        ax.text(mx, my, str(k), fontsize=22, weight="bold", ha="center", va="center",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.7, "linewidth": 0})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8, markerscale=2)
    ax.set_title(title or f"t-SNE of {model.model_name} {output} ({len(points)} samples)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    try:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return {"path": path, "points": points, "labels": labels}
