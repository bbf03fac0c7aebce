"""Reproducible split protocols for data sets without an official split.

* :func:`subject_folds`: subject-independent k-fold: every image of a subject falls in one fold; subjects are
  assigned round-robin over a seeded permutation of their sorted ids, so a seed fixes the assignment.
* :func:`stratified_split`: seeded, per-class random train/val/test (not subject-independent).
* :func:`select_split`: one of those protocols applied to an :class:`~ferzoo.data.source.ExampleTable`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .source import DataError, ExampleTable


def subject_folds(subjects: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """Fold id (0..folds-1) per example; all examples of a subject share a fold."""
    folds = int(folds)
    uniq = sorted(set(subjects))
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(uniq) < folds:
        raise DataError(f"{folds} subject-independent folds need at least {folds} subjects; the data has {len(uniq)}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: k % folds for k, j in enumerate(order)}
    return np.array([fold_of[s] for s in subjects], dtype=np.int64)


def _count(spec, n: int) -> int:
    if spec is None:
        return 0
    if isinstance(spec, float) and 0 <= spec < 1:
        return int(round(spec * n))
    return int(spec)


def stratified_split(labels, *, test_size=0.2, val_size=0.1, test_per_class=None, val_per_class=None,
                     seed: int = 0) -> np.ndarray:
    """``"train"``/``"val"``/``"test"`` per example. Sizes are fractions of all examples (float < 1) or counts
    (int), spread over the classes in proportion to their sizes (largest remainder); ``*_per_class`` take
    that many of every class instead. Test is drawn first, then val from the rest."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    rng = np.random.default_rng(seed)
    out = np.array(["train"] * n, dtype=object)
    classes = np.unique(labels)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}

    def take(per_class, total, name):
        if per_class is not None:
            want = {c: int(per_class) for c in classes}
        else:
            k = _count(total, n)
            avail = np.array([len(pools[c]) for c in classes], dtype=np.float64)
            if k > avail.sum():
                raise DataError(f"{name} split of {k} examples is larger than the {int(avail.sum())} available")
            share = avail / max(avail.sum(), 1) * k
            base = np.floor(share).astype(int)
            order = np.argsort(-(share - base), kind="stable")
            base[order[: k - base.sum()]] += 1
            want = dict(zip(classes, base))
        for c in classes:
            if want[c] > len(pools[c]):
                raise DataError(f"{name}: class {c} has {len(pools[c])} examples left, {want[c]} wanted")
            chosen, pools[c] = pools[c][: want[c]], pools[c][want[c]:]
            out[chosen] = name

    take(test_per_class, test_size, "test")
    take(val_per_class, val_size, "val")
    return out


def select_split(table: ExampleTable, split: str | None, *, protocol: str = "kfold", folds: int = 10, fold: int = 0,
                 val_folds: int = 0, seed: int = 0, test_size=0.2, val_size=0.1, test_per_class=None,
                 val_per_class=None) -> ExampleTable:
    """The ``split`` (``train``/``val``/``test``, or ``None`` = every example) of ``table`` under ``protocol``:

    * ``"kfold"``: subject-independent ``folds``-fold; ``test`` = fold ``fold``; ``val`` = the next
      ``val_folds`` folds (0 by default: no val split); ``train`` = the other folds.
    * ``"random"``: :func:`stratified_split` with the size options and ``seed``.
    The chosen assignment is stored in ``table.info["split"]``.
    """
    name = table.name
    if split not in (None, "train", "val", "test"):
        raise ValueError(f"{name}: unknown split {split!r}; known: train, val, test or None (all)")
    info = {"protocol": protocol, "seed": seed}
    if protocol not in ("kfold", "random"):
        raise ValueError(f"{name}: protocol must be 'kfold' or 'random', got {protocol!r}")
    if split is None:  # every example: no assignment needed
        return table
    if protocol == "kfold":
        if table.subjects is None:
            raise DataError(f"{name}: no subject ids, so subject-independent folds are impossible")
        if not 0 <= int(fold) < int(folds):
            raise ValueError(f"{name}: fold must be in 0..{folds - 1}, got {fold}")
        if not 0 <= int(val_folds) < int(folds) - 1:
            raise ValueError(f"{name}: val_folds must be in 0..{folds - 2}, got {val_folds}")
        fid = subject_folds(table.subjects, folds, seed)
        val_ids = [(fold + 1 + k) % folds for k in range(int(val_folds))]
        assign = np.where(fid == fold, "test", np.where(np.isin(fid, val_ids), "val", "train")).astype(object)
        info.update(folds=int(folds), fold=int(fold), val_folds=int(val_folds))
        if split == "val" and not val_folds:
            raise DataError(f"{name}: protocol 'kfold' has no val split unless val_folds >= 1 (a subject-independent "
                            f"val fold taken from the training folds); or use protocol='random'")
    elif protocol == "random":
        assign = stratified_split(table.labels, test_size=test_size, val_size=val_size, test_per_class=test_per_class,
                                  val_per_class=val_per_class, seed=seed)
        info.update(test_size=test_size, val_size=val_size, test_per_class=test_per_class, val_per_class=val_per_class)
    else:
        raise ValueError(f"{name}: protocol must be 'kfold' or 'random', got {protocol!r}")
    out = table.take(np.flatnonzero(assign == split))
    out.info = {**table.info, "split": info}
    if len(out) == 0:
        raise DataError(f"{name}: split {split!r} is empty under {info}")
    return out
