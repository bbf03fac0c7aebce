"""RAF-DB basic (Real-world Affective Faces): ``data_dir`` is the ``basic/`` folder of the release.

Read: ``EmoLabel/list_patition_label.txt`` (lines ``train_00001.jpg 5``; labels 1..7 = Surprise, Fear,
Disgust, Happiness, Sadness, Anger, Neutral) and ``Image/aligned/<name>_aligned.jpg`` (100x100 RGB), or with
``aligned=False`` ``Image/original/<name>.jpg`` plus, with ``landmarks=True``, the 5 manual landmarks of
``Annotation/manual/<name>_manu_attri.txt`` (``ds.landmarks``, (N, 5, 2) x, y) and, with ``crop_box=True``,
a crop to ``Annotation/boundingbox/<name>_boundingbox.txt`` (x1 y1 x2 y2).
Splits: ``train`` (names ``train_*``), ``test`` (``test_*``); there is no official val split.
"""

from __future__ import annotations

import os

import numpy as np

from ferzoo.labels import NATIVE

from ._common import DataError, ExampleTable, empty_check, finish, require_dir, require_file

NAME = "rafdb"
CLASSES = list(NATIVE["rafdb"])


def load(data_dir=None, split: str | None = None, *, aligned: bool = True, landmarks: bool = False,
         crop_box: bool = False, **options):
    if split not in (None, "train", "test"):
        raise ValueError(f"{NAME}: unknown split {split!r}; known: train, test or None (all)")
    root = require_dir(data_dir, "the basic/ folder", NAME)
    label_file = require_file(os.path.join(root, "EmoLabel", "list_patition_label.txt"), "label file", NAME)
    image_dir = os.path.join(root, "Image", "aligned" if aligned else "original")
    require_dir(image_dir, "image folder", NAME)
    present = set(os.listdir(image_dir))
    files, labels, origins, names = [], [], [], []
    with open(label_file) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DataError(f"{label_file}:{lineno}: expected '<image> <label>', got {line.strip()!r}")
            name, raw = parts
            if not name.startswith(("train_", "test_")):
                raise DataError(f"{label_file}:{lineno}: image name {name!r} starts with neither train_ nor test_")
            try:
                label = int(raw)
            except ValueError:
                raise DataError(f"{label_file}:{lineno}: label {raw!r} is not an integer") from None
            if not 1 <= label <= 7:
                raise DataError(f"{label_file}:{lineno}: label {label} is out of range 1..7")
            if split is not None and not name.startswith(split + "_"):
                continue
            stem = os.path.splitext(name)[0]
            image = f"{stem}_aligned.jpg" if aligned else name
            if image not in present:
                raise DataError(f"{label_file}:{lineno}: image {os.path.join(image_dir, image)} does not exist")
            files.append(os.path.join(image_dir, image))
            labels.append(label - 1)
            origins.append(f"{label_file}:{lineno}")
            names.append(stem)
    table = ExampleTable(labels=labels, class_names=CLASSES, files=files, origins=origins, name=NAME,
                         info={"aligned": aligned})
    empty_check(table, NAME, split, label_file)
    if landmarks:
        if aligned:
            raise ValueError(f"{NAME}: landmarks=True needs aligned=False (the landmarks are of the original images)")
        table.extras["landmarks"] = np.stack([_landmarks(root, s) for s in names])
    if crop_box:
        if aligned:
            raise ValueError(f"{NAME}: crop_box=True needs aligned=False")
        table.boxes = np.stack([_box(root, s) for s in names])
    ds = finish(table, native_channels=3, **options)
    if landmarks:
        ds.landmarks = table.extras["landmarks"]
    return ds


def _read_numbers(path: str, what: str) -> list[list[float]]:
    require_file(path, what, NAME)
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append([float(v) for v in line.split()])
                except ValueError:
                    raise DataError(f"{path}:{lineno}: expected numbers, got {line.strip()!r}") from None
    return rows


def _landmarks(root: str, stem: str) -> np.ndarray:
    path = os.path.join(root, "Annotation", "manual", f"{stem}_manu_attri.txt")
    rows = _read_numbers(path, "landmark file")
    pts = rows[:5]
    if len(pts) < 5 or any(len(p) != 2 for p in pts):
        raise DataError(f"{path}: expected 5 lines of 'x y' landmarks first")
    return np.asarray(pts, np.float32)


def _box(root: str, stem: str) -> np.ndarray:
    path = os.path.join(root, "Annotation", "boundingbox", f"{stem}_boundingbox.txt")
    rows = _read_numbers(path, "bounding box file")
    if not rows or len(rows[0]) != 4:
        raise DataError(f"{path}:1: expected 'x1 y1 x2 y2'")
    x1, y1, x2, y2 = rows[0]
    return np.asarray([round(y1), round(x1), round(y2 - y1), round(x2 - x1)], np.int32)
