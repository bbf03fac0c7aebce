"""FDRL's own visualisation: the Intra-W vector of each image, as bar charts (paper Figs. 2 and 6).

* :func:`intra_weight_values` — the raw Intra-W ``w_i = [alpha_i1 .. alpha_iM]`` (B, M) of images.
* :func:`intra_weights_explainer` — the default ``model.explain`` method ``"intra_weights"``. ``explain``
  returns maps of the input size, so each image's bar chart is *rasterised* into an (H, W) map in [0, 1]:
  M bars side by side, bar j as high as ``alpha_ij / max_j alpha_ij`` (value 1 inside a bar, 0 outside). The
  numbers behind it are :func:`intra_weight_values`.
* :func:`plot_intra_weights` — writes a PNG (Pillow only): per image its face and a labelled bar chart of its
  M Intra-Ws with the predicted class.
* :func:`class_mean_intra_weights` and :func:`plot_class_means` — Fig. 6: the mean Intra-W vector per class
  over a data set, as a grouped bar chart; :func:`dominant_latent` — Fig. 3's grouping (argmax of w_i).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 160, 0), (0, 130, 200), (145, 30, 180), (70, 200, 200),
           (240, 50, 230), (120, 120, 0), (0, 0, 128), (128, 0, 0), (0, 128, 128), (128, 128, 128)]


def _require_intra(model):
    if "intra_weights" not in model._outputs_struct:  # noqa: SLF001 - the functional model's output dict
        raise ValueError(f"model {model.model_name!r} was built without Intra-RM (fdn=false or intra_rm=false); "
                         f"it has no Intra-W (use method='gradcam++')")


def _model_batch(model, images) -> np.ndarray:
    """A batch of the model's input shape as is (already preprocessed: no second resize / centre crop), anything
    else through :meth:`FERModel.preprocess`."""
    arr = images if isinstance(images, (list, tuple)) else np.asarray(images)
    if not isinstance(arr, (list, tuple)) and arr.ndim == 4 and tuple(arr.shape[1:]) == tuple(model.input_shape_hwc):
        return arr.astype(np.float32)
    return np.asarray(model.preprocess(images), np.float32)


def intra_weight_values(model, images, *, batch_size: int = 64) -> np.ndarray:
    """Intra-W (B, M) float32 of images (raw 0..255 pixels): a batch of the model's input shape is used as is,
    anything else (photos of any size, lists) goes through :meth:`FERModel.preprocess` (with the weights'
    resize-then-centre-crop when they have one)."""
    import keras

    _require_intra(model)
    x = _model_batch(model, images)
    out = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False)["intra_weights"])
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


def bar_maps(values, height: int, width: int, gap: float = 0.2) -> np.ndarray:
    """(B, M) non-negative values -> (B, H, W) maps with M bars, each scaled by its row's maximum (a row of
    zeros gives an empty map). Bar j covers columns ``[j W/M + gap/2 W/M, (j+1) W/M - gap/2 W/M)``."""
    values = np.maximum(np.nan_to_num(np.asarray(values, np.float64)), 0.0)
    if values.ndim != 2:
        raise ValueError(f"bar_maps: expected values of shape (B, M), got {values.shape}")
    b, m = values.shape
    peak = values.max(axis=1, keepdims=True)
    rel = np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)
    maps = np.zeros((b, height, width), np.float32)
    edges = np.linspace(0, width, m + 1)
    rows = np.arange(height)[::-1]  # row index counted from the bottom
    for j in range(m):
        lo = int(round(edges[j] + gap / 2 * (edges[j + 1] - edges[j])))
        hi = max(lo + 1, int(round(edges[j + 1] - gap / 2 * (edges[j + 1] - edges[j]))))
        for i in range(b):
            filled = rows < rel[i, j] * height
            maps[i, :, lo:hi] = filled[:, None]
    return maps


def intra_weights_explainer(model, images, class_index=None, **_):
    """``model.explain(images)`` (method ``"intra_weights"``): each image's Intra-W bar chart as an (H, W) map.
    Intra-W does not depend on a class, so ``class_index`` is accepted and ignored."""
    values = intra_weight_values(model, images)
    h, w = model.input_shape_hwc[:2]
    return bar_maps(values, h, w)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _draw_bars(draw, box, values, top: float, labels=None, colours=None, title: str | None = None):
    """A bar chart of ``values`` inside ``box`` (x0, y0, x1, y1) with a y axis from 0 to ``top``."""
    x0, y0, x1, y1 = box
    font = _font()
    left, bottom, head = x0 + 34, y1 - 16, y0 + (14 if title else 4)
    draw.line([(left, head), (left, bottom), (x1 - 4, bottom)], fill=(0, 0, 0))
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - head)
        draw.line([(left - 3, y), (left, y)], fill=(0, 0, 0))
        draw.text((x0 + 2, y - 5), f"{frac * top:.3g}", fill=(0, 0, 0), font=font)
    if title:
        draw.text((left, y0 + 1), title, fill=(0, 0, 0), font=font)
    values = np.asarray(values, np.float64)
    groups = values if values.ndim == 2 else values[None]
    k, m = groups.shape
    slot = (x1 - 6 - left) / m
    for j in range(m):
        for g in range(k):
            bw = slot * 0.8 / k
            bx = left + 2 + j * slot + slot * 0.1 + g * bw
            bh = 0.0 if top <= 0 else min(1.0, max(0.0, groups[g, j] / top)) * (bottom - head)
            colour = (colours or PALETTE)[g % len(colours or PALETTE)] if k > 1 else PALETTE[3]
            draw.rectangle([bx, bottom - bh, bx + max(bw - 1, 1), bottom], fill=colour)
        draw.text((left + j * slot + slot / 2 - 3, bottom + 2), str(j + 1) if labels is None else str(labels[j]),
                  fill=(0, 0, 0), font=font)


def plot_intra_weights(model, images, path, *, names=None, thumb: int = 112) -> Path:
    """Write a PNG to ``path``: one row per image, its face (as the model sees it) and the bar chart of its M
    Intra-Ws (latent features 1..M on the x axis, raw alpha on the y axis), titled with the predicted class.
    ``names`` (one per image) are written above the faces. Returns the path."""
    from PIL import Image, ImageDraw

    x = _model_batch(model, images)
    values = intra_weight_values(model, x)
    probs = np.asarray(model.predict(x, verbose=0))
    rows, chart_w, row_h = len(x), 360, max(thumb, 120) + 8
    canvas = Image.new("RGB", (thumb + chart_w + 24, rows * row_h + 8), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    top = float(values.max()) * 1.05 if values.size and values.max() > 0 else 1.0
    for i in range(rows):
        y = 4 + i * row_h
        face = np.clip(x[i], 0, 255).astype(np.uint8)
        face = np.repeat(face, 3, axis=-1) if face.shape[-1] == 1 else face[..., :3]
        canvas.paste(Image.fromarray(face).resize((thumb, thumb)), (8, y + 4))
        if names is not None:
            draw.text((10, y + 4), str(names[i]), fill=(255, 255, 0), font=_font())
        k = int(probs[i].argmax())
        title = f"Intra-W; predicted {model.class_names[k]} ({probs[i, k]:.2f})"
        _draw_bars(draw, (thumb + 16, y, thumb + 16 + chart_w, y + row_h - 4), values[i], top, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def class_mean_intra_weights(model, dataset, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 6: ``(means (K, M), counts (K,))`` of the Intra-W vectors over an unbatched ``(image, label)``
    data set, labels in the model's class order (use ``ferzoo.data.prepare(..., target_class_names=...)``
    for another order). A class without images has a row of NaN."""
    k = model.num_classes
    sums, counts = None, np.zeros(k, np.int64)
    spec = dataset.element_spec
    batches = dataset.batch(batch_size) if spec[0].shape.rank == 3 else dataset
    for xb, yb in batches.as_numpy_iterator():
        w = intra_weight_values(model, xb, batch_size=batch_size)
        if sums is None:
            sums = np.zeros((k, w.shape[1]), np.float64)
        labels = np.asarray(yb).reshape(-1).astype(np.int64)
        np.add.at(sums, labels, w)
        counts += np.bincount(labels, minlength=k)[:k]
    if sums is None:
        raise ValueError("class_mean_intra_weights: the data set is empty")
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return means.astype(np.float32), counts


def dominant_latent(model, images) -> np.ndarray:
    """Fig. 3: per image the index j (0-based) of its largest Intra-W."""
    return intra_weight_values(model, images).argmax(axis=1)


def plot_class_means(means, class_names, path) -> Path:
    """Write Fig. 6 as a PNG: for each latent feature (x axis) one bar per class (legend), height = mean Intra-W."""
    from PIL import Image, ImageDraw

    means = np.nan_to_num(np.asarray(means, np.float64))
    k, _ = means.shape
    canvas = Image.new("RGB", (640, 300), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    top = float(means.max()) * 1.05 if means.max() > 0 else 1.0
    _draw_bars(draw, (4, 4, 520, 296), means, top, title="mean Intra-W per class")
    for g, name in enumerate(class_names):
        draw.rectangle([528, 20 + 16 * g, 538, 30 + 16 * g], fill=PALETTE[g % len(PALETTE)])
        draw.text((542, 19 + 16 * g), str(name), fill=(0, 0, 0), font=_font())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
