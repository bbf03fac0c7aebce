"""CK+ (Extended Cohn-Kanade). Two layouts, found automatically under ``data_dir``:

* the original release: ``cohn-kanade-images/S###/###/S###_###_########.png`` and
  ``Emotion/S###/###/S###_###_########_emotion.txt`` (one number, 0..7 = neutral, anger, contempt, disgust,
  fear, happy, sadness, surprise; only 327 sequences carry one). Each labelled sequence gives its
  ``last_frames`` last frames (3 by default) with the sequence's label, plus, with ``neutral_frames=k``, its
  first k frames labelled neutral.
* the ``CK+48`` crops: ``CK+48/<anger|contempt|disgust|fear|happy|sadness|surprise>/S###_###_########.png``
  (the last 3 frames of each labelled sequence, 48x48 gray); ``last_frames`` keeps fewer per sequence.

``contempt=False`` leaves out the contempt sequences (counted in ``ds.info["excluded"]``). ``neutral_limit=n``
keeps n of the neutral frames (original layout), drawn with ``split_seed`` (Deep-Emotion's 593 images: the last
frame of the 309 sequences with a basic emotion and 284 of their first frames). Classes are
reported in CK+'s order, restricted to those present. Splits: subject-independent k-fold by default
(``protocol="kfold"``, ``folds=10``, ``fold``, ``val_folds``, ``split_seed``) or ``protocol="random"`` (a seeded
stratified split: ``test_size`` / ``val_size`` as counts, e.g. Deep-Emotion's 420 / 60 / 113).
"""

from __future__ import annotations

import os
import re

from ferzoo.labels import NATIVE, canonical_name

from ._common import (DataError, ExampleTable, find_child, finish, frames_of, list_images, require_dir, split_lab)

NAME = "ckplus"
NATIVE_CK = list(NATIVE["ckplus"])  # index = the id in the emotion files
FRAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


def load(data_dir=None, split: str | None = None, *, layout: str = "auto", last_frames: int | None = None,
         neutral_frames: int = 0, contempt: bool = True, neutral_limit: int | None = None, **options):
    root = require_dir(data_dir, "the CK+ folder", NAME)
    if layout == "auto":
        if find_child(root, ["cohn-kanade-images"]) and find_child(root, ["Emotion", "Emotion_labels"]):
            layout = "original"
        else:
            layout = "ck48"
    if layout == "original":
        table = _read_original(root, 3 if last_frames is None else int(last_frames), int(neutral_frames), contempt)
        if neutral_limit is not None:
            table = _limit_neutral(table, neutral_limit, options.get("split_seed") or 0)
    elif layout == "ck48":
        if neutral_frames:
            raise ValueError(f"{NAME}: the CK+48 crops hold no neutral frames (neutral_frames needs the original layout)")
        table = _read_ck48(root, last_frames, contempt)
    else:
        raise ValueError(f"{NAME}: layout must be 'auto', 'original' or 'ck48', got {layout!r}")
    table = split_lab(table, split, options, protocol="kfold", folds=10, fold=0, split_seed=0)
    return finish(table, native_channels=1, **options)


def _limit_neutral(table: ExampleTable, limit, seed: int) -> ExampleTable:
    """At most ``limit`` neutral frames, a seeded draw (the other examples and the order are kept)."""
    import numpy as np

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{NAME}: neutral_limit must be an integer >= 0, got {limit!r}")
    if "neutral" not in table.class_names:
        return table
    labels = np.asarray(table.labels)
    neutral = np.flatnonzero(labels == table.class_names.index("neutral"))
    if len(neutral) <= limit:
        return table
    dropped = np.random.default_rng(seed).choice(neutral, len(neutral) - limit, replace=False)
    out = table.take(np.setdiff1d(np.arange(len(labels)), dropped))
    out.info = {**table.info, "neutral_limit": limit, "neutral_dropped": int(len(dropped))}
    return out


def _restrict(labels_native: list[int]) -> tuple[list[int], list[str]]:
    present = sorted(set(labels_native))
    names = [canonical_name(NATIVE_CK[i]) for i in present]
    return [present.index(v) for v in labels_native], names


def _read_original(root: str, last: int, neutral: int, contempt: bool) -> ExampleTable:
    img_root = find_child(root, ["cohn-kanade-images"])
    emo_root = find_child(root, ["Emotion", "Emotion_labels"])
    files, labels, subjects, sequences, origins = [], [], [], [], []
    excluded = {}
    for subject in sorted(os.listdir(emo_root)):
        sdir = os.path.join(emo_root, subject)
        if not os.path.isdir(sdir) or subject.startswith("."):
            continue
        for seq in sorted(os.listdir(sdir)):
            qdir = os.path.join(sdir, seq)
            if not os.path.isdir(qdir) or seq.startswith("."):
                continue
            txt = sorted(n for n in os.listdir(qdir) if n.endswith("_emotion.txt"))
            if not txt:
                continue  # an unlabelled sequence: CK+ labels only 327 of its 593 sequences
            if len(txt) > 1:
                raise DataError(f"{NAME}: {qdir} holds several emotion files {txt}")
            path = os.path.join(qdir, txt[0])
            with open(path) as f:
                content = f.read().strip()
            try:
                value = float(content)
            except ValueError:
                raise DataError(f"{path}:1: {content!r} is not an emotion label 0..7") from None
            if value != int(value) or not 0 <= value <= 7:
                raise DataError(f"{path}:1: emotion {content} is out of range 0..7")
            label = int(value)
            if label == 2 and not contempt:
                excluded["contempt"] = excluded.get("contempt", 0) + 1
                continue
            idir = os.path.join(img_root, subject, seq)
            if not os.path.isdir(idir):
                raise DataError(f"{path}: the image folder {idir} of this labelled sequence does not exist")
            frames, _ = list_images(idir)
            if not frames:
                raise DataError(f"{path}: the image folder {idir} holds no frames")
            peak, head = frames_of(frames, last=last, first=neutral)
            for name, lab in [(n, label) for n in peak] + [(n, 0) for n in head]:
                files.append(os.path.join(idir, name))
                labels.append(lab)
                subjects.append(subject)
                sequences.append(f"{subject}_{seq}")
                origins.append(path)
    if not files:
        raise DataError(f"{NAME}: no labelled sequences under {emo_root}")
    labels, names = _restrict(labels)
    return ExampleTable(labels=labels, class_names=names, files=files, subjects=subjects, sequences=sequences,
                        origins=origins, name=NAME,
                        info={"layout": "original", "last_frames": last, "neutral_frames": neutral,
                              "excluded_sequences": excluded})


def _read_ck48(root: str, last: int | None, contempt: bool) -> ExampleTable:
    base = find_child(root, ["CK+48", "CK48", "ck+48"]) or root
    entries = sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
    if not entries:
        raise DataError(f"{NAME}: {base!r} holds neither cohn-kanade-images/ + Emotion/ nor CK+48 class folders")
    files, labels, subjects, sequences = [], [], [], []
    excluded = {}
    for folder in entries:
        try:
            name = canonical_name(folder)
        except ValueError:
            raise DataError(f"{NAME}: unknown class folder {os.path.join(base, folder)!r}") from None
        if name not in NATIVE_CK or name == "neutral":
            raise DataError(f"{NAME}: class folder {os.path.join(base, folder)!r} is not a CK+48 class")
        images, _ = list_images(os.path.join(base, folder))
        if name == "contempt" and not contempt:
            excluded["contempt"] = len(images)
            continue
        by_seq: dict[str, list[tuple[int, str]]] = {}
        for n in images:
            m = FRAME.match(n)
            if not m:
                raise DataError(f"{NAME}: {os.path.join(base, folder, n)} is not named S###_###_########.png")
            by_seq.setdefault(f"{m.group(1)}_{m.group(2)}", []).append((int(m.group(3)), n))
        for seq, frames in sorted(by_seq.items()):
            frames = [n for _, n in sorted(frames)]
            peak, _ = frames_of(frames, last=last)
            for n in peak:
                files.append(os.path.join(base, folder, n))
                labels.append(NATIVE_CK.index(name))
                subjects.append(seq.split("_")[0])
                sequences.append(seq)
    if not files:
        raise DataError(f"{NAME}: no images under {base}")
    labels, names = _restrict(labels)
    return ExampleTable(labels=labels, class_names=names, files=files, subjects=subjects, sequences=sequences,
                        name=NAME, info={"layout": "ck48", "last_frames": last, "excluded_images": excluded})
