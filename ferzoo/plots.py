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
    scores = sorted(k for k in hist if not k.endswith("loss") and k != "learning_rate")
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
