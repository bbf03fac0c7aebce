"""AffectNet (manually annotated part): ``data_dir`` is the folder holding the release.

Two layouts:

* the original: ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` (columns
  subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
  arousal; a header row is optional) with the images under ``Manually_Annotated_Images/`` (also found as
  ``Manually_Annotated/Manually_Annotated_Images/`` or given by ``images_dir``). The face box is cropped
  (``crop_face=True``, enlarged by ``face_margin`` of its size on each side).
* the "4G" re-release used by DAN: ``train_set/`` and ``val_set/``, each with ``images/<id>.jpg`` (224x224
  crops) and ``annotations/<id>_exp.npy``.

``expression`` 0..7 = Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt; 8 None, 9 Uncertain and
10 Non-Face are not expressions and are left out (counted in ``ds.info["excluded"]``). ``classes=7`` also
leaves out Contempt (AffectNet-7). Splits: ``train`` (training), ``val`` (the official validation set, which
papers report as "test"; ``test`` is accepted as the same set).
"""

from __future__ import annotations

import csv
import logging
import os

import numpy as np

from ferzoo.labels import NATIVE

from ._common import DataError, ExampleTable, empty_check, find_child, finish, require_dir, require_file

NAME = "affectnet"
CLASSES8 = list(NATIVE["affectnet"])
NON_EXPRESSION = {8: "none", 9: "uncertain", 10: "non-face"}
CSV_FILES = {"train": "training.csv", "val": "validation.csv"}
FOLDERS_4G = {"train": "train_set", "val": "val_set"}
log = logging.getLogger("ferzoo.data")


def load(data_dir=None, split: str | None = None, *, classes: int = 8, crop_face: bool = True,
         face_margin: float = 0.0, images_dir=None, layout: str = "auto", **options):
    if split not in (None, "train", "val", "test"):
        raise ValueError(f"{NAME}: unknown split {split!r}; known: train, val (= test) or None (all)")
    if classes not in (7, 8):
        raise ValueError(f"{NAME}: classes must be 7 or 8, got {classes!r}")
    root = require_dir(data_dir, "the AffectNet folder", NAME)
    splits = ["train", "val"] if split is None else ["val" if split == "test" else split]
    if layout == "auto":
        layout = "4g" if find_child(root, ["train_set", "val_set"]) and not find_child(
            root, ["Manually_Annotated_file_lists"]) else "csv"
    if layout == "csv":
        tables = [_read_csv(root, s, classes, crop_face, face_margin, images_dir) for s in splits]
    elif layout == "4g":
        tables = [_read_4g(root, s, classes) for s in splits]
    else:
        raise ValueError(f"{NAME}: layout must be 'auto', 'csv' or '4g', got {layout!r}")
    table = tables[0] if len(tables) == 1 else _concat(tables)
    empty_check(table, NAME, split, root)
    ds = finish(table, native_channels=3, **options)
    for key in ("valence", "arousal"):
        if key in table.extras:
            setattr(ds, key, table.extras[key])
    return ds


def _keep(expr: int, where: str, names: list[str], excluded: dict[str, int]) -> bool:
    """Check an expression id (0..10); count and leave out the ids that are not among ``names``."""
    if not 0 <= expr <= 10:
        raise DataError(f"{where}: expression {expr} is out of range 0..10")
    if expr in NON_EXPRESSION or expr >= len(names):
        key = NON_EXPRESSION.get(expr, "contempt")
        excluded[key] = excluded.get(key, 0) + 1
        return False
    return True


def _classes(classes: int) -> list[str]:
    return CLASSES8 if classes == 8 else CLASSES8[:7]


def _concat(tables: list[ExampleTable]) -> ExampleTable:
    t0 = tables[0]
    boxes = None if t0.boxes is None else np.concatenate([t.boxes for t in tables])
    extras = {k: np.concatenate([t.extras[k] for t in tables]) for k in t0.extras}
    excluded = {}
    for t in tables:
        for k, v in t.info.get("excluded", {}).items():
            excluded[k] = excluded.get(k, 0) + v
    return ExampleTable(labels=np.concatenate([t.labels for t in tables]), class_names=t0.class_names,
                        files=sum((t.files for t in tables), []), boxes=boxes,
                        origins=sum((t.origins for t in tables), []), extras=extras, name=NAME,
                        info={**t0.info, "excluded": excluded})


def _images_root(root: str, images_dir) -> str:
    if images_dir is not None:
        return require_dir(images_dir, "images_dir", NAME)
    for cand in (("Manually_Annotated_Images",), ("Manually_Annotated", "Manually_Annotated_Images"),
                 ("Manually_Annotated",)):
        path = os.path.join(root, *cand)
        if os.path.isdir(path):
            return path
    raise DataError(f"{NAME}: no Manually_Annotated_Images/ folder in {root!r} (pass images_dir=)")


def _read_csv(root, split, classes, crop_face, margin, images_dir) -> ExampleTable:
    lists = find_child(root, ["Manually_Annotated_file_lists"]) or root
    path = require_file(os.path.join(lists, CSV_FILES[split]), "label file", NAME)
    image_root = _images_root(root, images_dir)
    names = _classes(classes)
    listing: dict[str, set] = {}
    files, labels, boxes, origins, val, aro = [], [], [], [], [], []
    excluded: dict[str, int] = {}
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if lineno == 1 and row[0].strip() == "subDirectory_filePath":
                continue
            if len(row) < 7:
                raise DataError(f"{path}:{lineno}: expected 9 fields (subDirectory_filePath ... arousal), got {len(row)}")
            try:
                expr = int(float(row[6]))
            except ValueError:
                raise DataError(f"{path}:{lineno}: expression {row[6]!r} is not an integer") from None
            if not _keep(expr, f"{path}:{lineno}", names, excluded):
                continue
            rel = row[0].strip().replace("\\", "/")
            sub, _, base = rel.rpartition("/")
            folder = os.path.join(image_root, sub)
            if folder not in listing:
                listing[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            if base not in listing[folder]:
                raise DataError(f"{path}:{lineno}: image {os.path.join(image_root, rel)} does not exist")
            files.append(os.path.join(folder, base))
            labels.append(expr)
            origins.append(f"{path}:{lineno}")
            if crop_face:
                try:
                    x, y, w, h = (int(round(float(v))) for v in row[1:5])
                except ValueError:
                    raise DataError(f"{path}:{lineno}: face box {row[1:5]} is not numeric") from None
                if w <= 0 or h <= 0:
                    raise DataError(f"{path}:{lineno}: empty face box {row[1:5]}")
                mx, my = int(round(w * margin)), int(round(h * margin))
                boxes.append((y - my, x - mx, h + 2 * my, w + 2 * mx))
            try:
                val.append(float(row[7]) if len(row) > 7 else np.nan)
                aro.append(float(row[8]) if len(row) > 8 else np.nan)
            except ValueError:
                raise DataError(f"{path}:{lineno}: valence/arousal {row[7:9]} are not numbers") from None
    if excluded:
        log.info("%s %s: left out %s (not among the %d classes)", NAME, split, excluded, classes)
    return ExampleTable(labels=labels, class_names=names, files=files, origins=origins,
                        boxes=np.asarray(boxes, np.int32).reshape(-1, 4) if crop_face else None,
                        extras={"valence": np.asarray(val, np.float32), "arousal": np.asarray(aro, np.float32)},
                        name=NAME, info={"layout": "csv", "excluded": excluded, "classes": classes})


def _read_4g(root, split, classes) -> ExampleTable:
    base = require_dir(os.path.join(root, FOLDERS_4G[split]), f"{FOLDERS_4G[split]}/ folder", NAME)
    img_dir = require_dir(os.path.join(base, "images"), "images folder", NAME)
    ann_dir = require_dir(os.path.join(base, "annotations"), "annotations folder", NAME)
    names = _classes(classes)
    images = {os.path.splitext(n)[0]: n for n in os.listdir(img_dir) if not n.startswith(".")}
    ann = sorted(n for n in os.listdir(ann_dir) if n.endswith("_exp.npy"))
    files, labels, origins = [], [], []
    excluded: dict[str, int] = {}

    def key(n):
        stem = n[: -len("_exp.npy")]
        return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)

    for n in sorted(ann, key=key):
        stem = n[: -len("_exp.npy")]
        path = os.path.join(ann_dir, n)
        try:
            value = np.load(path, allow_pickle=False)
            expr = int(float(np.asarray(value).reshape(-1)[0]))
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path}: cannot read the expression label: {exc}") from exc
        if not _keep(expr, path, names, excluded):
            continue
        if stem not in images:
            raise DataError(f"{path}: no image {stem}.jpg in {img_dir}")
        files.append(os.path.join(img_dir, images[stem]))
        labels.append(expr)
        origins.append(path)
    return ExampleTable(labels=labels, class_names=names, files=files, origins=origins, name=NAME,
                        info={"layout": "4g", "excluded": excluded, "classes": classes})
