"""Pictures and reports: the confusion matrix of an evaluation, training curves, the evaluation report files.

matplotlib draws with its file-only ``Agg`` backend (no display needed); every file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    from .weights import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def confusion_matrix_png(report: Mapping, path: str | os.PathLike, title: str | None = None) -> Path:
    """The confusion matrix of an evaluation report as a PNG: rows the true class, columns the predicted one,
    class names on both axes; each cell shows its count and its share of the true class (the colour)."""
    plt = _pyplot()
    names = list(report["class_names"])
    cm = np.asarray(report["confusion_matrix"], dtype=np.int64)
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not fit {len(names)} class names")
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    k = len(names)
    size = max(4.5, 0.75 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(k), labels=names, rotation=45, ha="right")
        ax.set_yticks(range(k), labels=names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        small = 7 if k > 10 else 9
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}" if rows[i, 0] else "0", ha="center", va="center",
                        fontsize=small, color="white" if share[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
        subtitle = (f"accuracy {report['accuracy']:.3f}, balanced {report['balanced_accuracy']:.3f}, "
                    f"macro-F1 {report['macro_f1']:.3f}, n={report['num_examples']}")
        ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=10)
        return _save(fig, path)
    finally:
        plt.close(fig)


def report_markdown(report: Mapping, meta: Mapping[str, Any] | None = None) -> str:
    """An evaluation report as Markdown: what was evaluated, the summary metrics, per class precision, recall,
    F1 and support, and the confusion matrix."""
    meta = dict(meta or {})
    names = list(report["class_names"])
    lines = ["# Evaluation report", ""]
    for key, value in meta.items():
        if value is not None:
            lines.append(f"- **{key}**: `{value}`" if key == "command" else f"- **{key}**: {value}")
    if meta:
        lines.append("")
    lines += ["| metric | value |", "|---|---|",
              f"| accuracy | {report['accuracy']:.4f} |",
              f"| balanced accuracy | {report['balanced_accuracy']:.4f} |",
              f"| macro-F1 | {report['macro_f1']:.4f} |",
              f"| examples | {report['num_examples']} |", ""]
    if report.get("tta"):
        lines += [f"Test-time augmentation: {report['tta']}.", ""]
    lines += ["## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for n in names:
        p = report["per_class"][n]
        lines.append(f"| {n} | {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | {p['support']} |")
    lines += ["", "## Confusion matrix (rows: true class, columns: predicted)", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for n, row in zip(names, report["confusion_matrix"]):
        lines.append(f"| **{n}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_evaluation(report: Mapping, folder: str | os.PathLike, meta: Mapping[str, Any] | None = None,
                     title: str | None = None) -> dict[str, Path]:
    """``report.json`` (the report and ``meta``), ``report.md`` and ``confusion_matrix.png`` in ``folder``."""
    from .weights import atomic_path, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md",
             "confusion_matrix": folder / "confusion_matrix.png"}
    write_json_atomic(paths["json"], {**dict(meta or {}), "report": dict(report)})
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(report_markdown(report, meta))
    confusion_matrix_png(report, paths["confusion_matrix"], title=title)
    return paths


def training_curves_png(history: Mapping[str, Sequence[float]], path: str | os.PathLike,
                        title: str | None = None) -> Path:
    """Per-epoch training curves as a PNG: the total loss, the auxiliary losses (unweighted, in their own panel
    on a log scale, so that a large one such as a centre loss does not flatten the total), the accuracies, and
    the learning rate when the history has it (train solid, validation dashed). ``history`` maps a Keras log
    name to one value per epoch (``history.json``)."""
    plt = _pyplot()
    hist = {k: [float(v) for v in vals] for k, vals in history.items() if len(vals)}
    if not hist:
        raise ValueError("training_curves_png: the history is empty")
    losses = sorted(k for k in hist if k in ("loss", "val_loss"))
    aux = sorted(k for k in hist if k.endswith("loss") and k not in losses)
    scores = sorted(k for k in hist if not k.endswith("loss") and k not in ("learning_rate", "epoch_seconds"))
    panels = [("loss", losses), ("auxiliary losses (unweighted)", aux), ("accuracy and other metrics", scores)]
    if "learning_rate" in hist:
        panels.append(("learning rate", ["learning_rate"]))
    panels = [(t, keys) for t, keys in panels if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    try:
        for ax, (label, keys) in zip(axes[0], panels):
            for key in keys:
                values = hist[key]
                epochs = np.arange(1, len(values) + 1)
                style = "--" if key.startswith("val_") else "-"
                ax.plot(epochs, values, style, marker="o" if len(values) <= 30 else None, markersize=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_title(label)
            if label in ("learning rate", "auxiliary losses (unweighted)") and min(min(hist[k]) for k in keys) > 0:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.xaxis.get_major_locator().set_params(integer=True)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


# -- boxes and labels on photos and video frames ------------------------------------------------------------
Rect = tuple  # (x0, y0, x1, y1), x1 and y1 exclusive


def rect_distance(a: Rect, b: Rect) -> float:
    """The gap between two rectangles ``(x0, y0, x1, y1)``: 0 when they touch or overlap, else the Euclidean
    distance between their nearest points."""
    dx = max(0.0, b[0] - a[2], a[0] - b[2])
    dy = max(0.0, b[1] - a[3], a[1] - b[3])
    return float((dx * dx + dy * dy) ** 0.5)


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(boxes: Sequence[Rect], sizes: Sequence[tuple[int, int]], image_size: tuple[int, int],
                 gap: int = 2) -> list[Rect]:
    """Where to draw each box's label: a ``(width, height)`` rectangle per box, inside the ``image_size = (width,
    height)`` picture, never nearer another box than its own.

    Tried in this order, each moved sideways and up or down as far as needed to stay in the picture: just above
    the box, just below it, inside its top edge, inside its bottom edge; each flush with the box's left edge,
    then centred on it, then flush with its right edge. The first whose distance to every other box is more than
    twice (plus ``gap``) its distance to its own, and which covers no label already placed, is taken; when none
    is, the one with the largest margin (distance to the nearest other box less the distance to its own), which
    is never negative: a label inside the top of its own box is at distance 0 from it. ``boxes`` are ``(x0, y0,
    x1, y1)`` inside the picture; a label wider or taller than the picture is put at its top left corner (the
    caller chooses a font that fits)."""
    W, H = image_size
    placed: list[Rect] = []
    for i, (box, (lw, lh)) in enumerate(zip(boxes, sizes)):
        x0, y0, x1, y1 = box
        others = [b for j, b in enumerate(boxes) if j != i]

        def fit(x, y):
            x = min(max(0, x), max(0, W - lw))
            y = min(max(0, y), max(0, H - lh))
            return (x, y, x + lw, y + lh)

        xs = (x0, (x0 + x1 - lw) // 2, x1 - lw)
        ys = (y0 - lh - gap, y1 + gap, y0, y1 - lh)
        candidates = [fit(x, y) for y in ys for x in xs]
        chosen, best, best_key = None, None, None
        for rect in candidates:
            own = rect_distance(rect, box)
            nearest = min((rect_distance(rect, b) for b in others), default=float("inf"))
            free = not any(_overlap(rect, p) for p in placed)
            if nearest > 2 * own + gap and free:
                chosen = rect
                break
            key = (nearest >= own, free, min(nearest - own, 1e9))  # never nearer another box, then no overlap
            if best_key is None or key > best_key:
                best, best_key = rect, key
        placed.append(chosen or best)
    return placed


def label_font(draw, texts: Sequence[str], image_size: tuple[int, int], size: int):
    """The default font at ``size`` px, smaller where the widest of ``texts`` (plus its padding) would not fit in
    the picture; below 6 px it stops shrinking."""
    W, H = image_size
    while True:
        font = default_font(size)
        widest = max((draw.textbbox((0, 0), t, font=font)[2] for t in texts), default=0)
        tall = max((_text_height(draw, t, font) for t in texts), default=0)
        pad = label_pad(tall)
        if size <= 6 or (widest + 2 * pad <= W and tall + 2 * pad <= H):
            return font
        size -= 1


def default_font(size: int):
    """Pillow's default font at ``size`` px (the fixed bitmap font where Pillow has no FreeType)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_height(draw, text: str, font) -> int:
    _, top, _, bottom = draw.textbbox((0, 0), text, font=font)
    return bottom - top


def label_pad(text_height: int) -> int:
    return max(2, text_height // 6)


def label_size(draw, text: str, font) -> tuple[int, int]:
    """``(width, height)`` of a label's background rectangle: the text plus its padding."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = label_pad(bottom - top)
    return right - left + 2 * pad, bottom - top + 2 * pad


def draw_label(draw, rect: Rect, text: str, font, fill=(0, 0, 0), background=(255, 255, 255)) -> None:
    """``text`` on a filled rectangle ``rect`` (from :func:`label_size` / :func:`place_labels`)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = label_pad(bottom - top)
    draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=background)
    draw.text((rect[0] + pad - left, rect[1] + pad - top), text, font=font, fill=fill)


#: box colours, by face number
FACE_COLOURS = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 120, 255)]


def label_layout(image_size: tuple[int, int], marks: Sequence[Mapping], note: str | None = None) -> dict:
    """How :func:`draw_faces` lays out a ``(width, height)`` picture: ``font``, ``line`` (box line width),
    ``boxes`` (``(x0, y0, x1, y1)`` per mark) and ``labels`` (the label rectangles, :func:`place_labels`). The font
    is about 1/40 of the picture's long side, at least 12 px, at most a third of the smallest face (but 10 px),
    and smaller where a label would not fit in the picture."""
    from PIL import Image, ImageDraw

    W, H = image_size
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = max(2, round(max(W, H) / 300))
    texts = [m["text"] for m in marks] or ([note] if note else [])
    size = max(12, round(max(W, H) / 40))
    if marks:  # not much taller than a third of the smallest face
        size = min(size, max(10, round(min(float(m["box"][3]) for m in marks) / 3)))
    font = label_font(draw, texts, (W, H), size)
    boxes = []
    for m in marks:
        x, y, bw, bh = (int(v) for v in m["box"])
        boxes.append((x, y, x + bw, y + bh))
    sizes = [label_size(draw, m["text"], font) for m in marks]
    return {"font": font, "line": line, "boxes": boxes, "labels": place_labels(boxes, sizes, (W, H), gap=line)}


def draw_faces(image: np.ndarray, marks: Sequence[Mapping], note: str | None = None) -> np.ndarray:
    """``image`` (RGB) with each face of ``marks`` drawn: ``{"box": [x, y, w, h], "text": label, "face": number,
    "corners": optional crop polygon}``, laid out by :func:`label_layout`; ``note`` (e.g. "no face") in the top
    left corner when there are no marks."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(im)
    W, H = im.size
    layout = label_layout((W, H), marks, note)
    font, width = layout["font"], layout["line"]
    for m in marks:
        if m.get("corners") is not None:
            draw.polygon([tuple(map(float, c)) for c in m["corners"]], outline=(200, 200, 200))
    for m, (x0, y0, x1, y1) in zip(marks, layout["boxes"]):
        colour = FACE_COLOURS[int(m.get("face") or 0) % len(FACE_COLOURS)]
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=width)
    for m, rect in zip(marks, layout["labels"]):
        colour = FACE_COLOURS[int(m.get("face") or 0) % len(FACE_COLOURS)]
        draw_label(draw, rect, m["text"], font, fill=(0, 0, 0), background=colour)
    if not marks and note:
        w, h = label_size(draw, note, font)
        x = min(width * 2, max(0, W - w))
        y = min(width * 2, max(0, H - h))
        draw_label(draw, (x, y, x + w, y + h), note, font, fill=(255, 255, 255), background=(0, 0, 0))
    return np.asarray(im)
