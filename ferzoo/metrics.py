"""Classification metrics with class names (numpy only)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


class EvaluationReport(dict):
    """accuracy, balanced_accuracy (mean per-class recall), macro_f1, confusion_matrix (rows = true class),
    per_class {name: {precision, recall, f1, support}}, class_names, num_examples."""

    def __str__(self) -> str:
        names = self["class_names"]
        width = max(8, *(len(n) for n in names))
        lines = [f"examples: {self['num_examples']}",
                 f"accuracy: {self['accuracy']:.4f}  balanced accuracy: {self['balanced_accuracy']:.4f}  "
                 f"macro-F1: {self['macro_f1']:.4f}",
                 "", f"{'class':<{width}}  precision  recall     f1  support"]
        for n in names:
            p = self["per_class"][n]
            lines.append(f"{n:<{width}}  {p['precision']:9.4f}  {p['recall']:6.4f}  {p['f1']:5.4f}  {p['support']:7d}")
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * (width + 2) + " ".join(f"{n[:6]:>6}" for n in names)]
        for n, row in zip(names, self["confusion_matrix"]):
            lines.append(f"{n:<{width}}  " + " ".join(f"{v:6d}" for v in row))
        return "\n".join(lines)


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> EvaluationReport:
    """Metrics over the classes in ``class_names``.

    Balanced accuracy averages recall over classes that occur in ``y_true``; macro-F1 averages F1 over classes
    that occur in ``y_true`` or ``y_pred`` (scikit-learn's conventions).
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    k = len(class_names)
    if y_true.size == 0:
        raise ValueError("cannot evaluate on an empty data set")
    for arr, what in ((y_true, "label"), (y_pred, "prediction")):
        bad = arr[(arr < 0) | (arr >= k)]
        if bad.size:
            raise ValueError(f"{what} {int(bad[0])} is out of range for {k} classes {list(class_names)}")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = support > 0
    seen = present | (predicted > 0)
    return EvaluationReport(
        accuracy=float(tp.sum() / y_true.size),
        balanced_accuracy=float(recall[present].mean()),
        macro_f1=float(f1[seen].mean()),
        confusion_matrix=cm.tolist(),
        class_names=list(class_names),
        num_examples=int(y_true.size),
        per_class={n: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                       "support": int(support[i])} for i, n in enumerate(class_names)},
    )
