"""FER-2013 (Goodfellow et al., ICML 2013 challenge): 48x48 grayscale faces, 7 classes.

Two releases are read:

* the original ``fer2013.csv`` (columns ``emotion,pixels,Usage``; also ``icml_face_data.csv`` whose header is
  ``emotion, Usage, pixels``): ``data_dir`` is the csv file or the folder holding it;
* the image-folder release: ``data_dir/train/<class>/*.jpg`` and ``data_dir/test/<class>/*.jpg`` where the test
  file names start with ``PublicTest_`` or ``PrivateTest_``; a ``val/`` folder (PublicTest images) is also
  accepted.

Splits: ``train`` = Training, ``val`` = PublicTest, ``test`` = PrivateTest, ``None`` = every labelled image.
Labels are FER-2013's own ids (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral).
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np

from ferzoo.labels import NATIVE

from ._common import DataError, ExampleTable, empty_check, find_child, finish, read_class_tree, require_file

NAME = "fer2013"
CLASSES = list(NATIVE["fer2013"])
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")


def load(data_dir=None, split: str | None = None, *, layout: str = "auto", **options):
    """FER-2013 as an unbatched ``(image uint8 48x48x1, label)`` data set (see the module doc).

    ``layout``: ``"auto"`` (a ``train/``, ``val/`` or ``test/`` folder means the folder release, else a csv),
    ``"csv"`` or ``"folder"``. Other options: see ``plugins/datasets/README.md``.
    """
    if split not in (None, "train", "val", "test"):
        raise ValueError(f"{NAME}: unknown split {split!r}; known: train, val, test or None (all)")
    if data_dir is None:
        raise DataError(f"{NAME}: pass data_dir=, the fer2013.csv file or the folder of the release")
    data_dir = os.fspath(data_dir)
    if layout not in ("auto", "csv", "folder"):
        raise ValueError(f"{NAME}: layout must be 'auto', 'csv' or 'folder', got {layout!r}")
    if not os.path.exists(data_dir):
        raise DataError(f"{NAME}: data_dir {data_dir!r} does not exist")
    if os.path.isfile(data_dir):
        if layout == "folder":
            raise DataError(f"{NAME}: layout='folder' needs a folder, got the file {data_dir!r}")
        table = read_csv(data_dir, split)
    else:
        has_folders = any(find_child(data_dir, [s]) for s in ("train", "val", "test"))
        csv_path = next((os.path.join(data_dir, n) for n in CSV_NAMES if os.path.isfile(os.path.join(data_dir, n))),
                        None)
        if layout == "folder" or (layout == "auto" and has_folders):
            table = read_folders(data_dir, split)
        elif csv_path is not None:
            table = read_csv(csv_path, split)
        else:
            raise DataError(f"{NAME}: {data_dir!r} holds neither {' nor '.join(CSV_NAMES)} nor the folders "
                            f"train/, val/, test/ of the image release")
    return finish(table, native_channels=1, **options)


def read_csv(path: str, split: str | None) -> ExampleTable:
    require_file(path, "label file", NAME)
    want = USAGE.get(split) if split else None
    images, labels, origins = [], [], []
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{NAME}: {path} is empty") from None
        cols = {h.strip().lower(): i for i, h in enumerate(header)}
        for need in ("emotion", "pixels"):
            if need not in cols:
                raise DataError(f"{path}:1: the header {header} has no {need!r} column")
        ie, ip = cols["emotion"], cols["pixels"]
        iu = cols.get("usage")
        if iu is None and split is not None:
            raise DataError(f"{path}:1: no 'Usage' column, so split {split!r} cannot be selected (use split=None)")
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(header):
                raise DataError(f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}")
            usage = row[iu].strip() if iu is not None else None
            if usage is not None and usage not in USAGE.values():
                raise DataError(f"{path}:{lineno}: unknown Usage {usage!r}; expected one of {list(USAGE.values())}")
            if want is not None and usage != want:
                continue
            try:
                label = int(row[ie])
            except ValueError:
                raise DataError(f"{path}:{lineno}: emotion {row[ie]!r} is not an integer label") from None
            if not 0 <= label < len(CLASSES):
                raise DataError(f"{path}:{lineno}: emotion {label} is out of range 0..{len(CLASSES) - 1}")
            try:
                pixels = np.array(row[ip].split(), dtype=np.int32)
            except ValueError:
                raise DataError(f"{path}:{lineno}: the pixels field holds a non-integer value") from None
            if pixels.size != 48 * 48:
                raise DataError(f"{path}:{lineno}: {pixels.size} pixel values, expected 2304 (48x48)")
            if pixels.min() < 0 or pixels.max() > 255:
                raise DataError(f"{path}:{lineno}: pixel values outside 0..255")
            images.append(pixels.astype(np.uint8).reshape(48, 48, 1))
            labels.append(label)
            origins.append(f"{path}:{lineno}")
    table = ExampleTable(labels=labels, class_names=CLASSES,
                         images=np.stack(images) if images else np.zeros((0, 48, 48, 1), np.uint8),
                         origins=origins, name=NAME, info={"layout": "csv", "path": path})
    return empty_check(table, NAME, split, path)


def _prefix_filter(prefix):
    return lambda name: name.startswith(prefix)


def read_folders(root: str, split: str | None) -> ExampleTable:
    train_dir = find_child(root, ["train", "training"])
    val_dir = find_child(root, ["val", "valid", "validation", "publictest"])
    test_dir = find_child(root, ["test", "privatetest"])
    parts: list[tuple[str, object]] = []  # (folder, file filter)
    if split is None:
        parts = [(d, None) for d in (train_dir, val_dir, test_dir) if d]
        if not parts:
            raise DataError(f"{NAME}: {root!r} has none of the folders train/, val/, test/")
    if split == "train":
        if train_dir is None:
            raise DataError(f"{NAME}: {root!r} has no train/ folder")
        parts.append((train_dir, None))
    if split == "val":
        if val_dir is not None:
            parts.append((val_dir, None))
        elif test_dir is not None:
            parts.append((test_dir, _prefix_filter("PublicTest_")))
        else:
            raise DataError(f"{NAME}: {root!r} has neither a val/ folder nor a test/ folder with PublicTest_ files")
    if split == "test":
        if test_dir is not None:
            parts.append((test_dir, _prefix_filter("PrivateTest_")))
        else:
            raise DataError(f"{NAME}: {root!r} has no test/ folder (the PrivateTest_ images)")
    files, labels, ignored = [], [], []
    for folder, filt in parts:
        f, lab, ign = read_class_tree(folder, CLASSES, NAME, file_filter=filt)
        if folder == test_dir and split in ("val", "test"):
            _check_test_prefixes(folder)
        files += f
        labels += lab
        ignored += ign
    if split is None and val_dir is not None and test_dir is not None:
        # the same PublicTest images may sit in both val/ and test/: keep one copy
        seen, keep = set(), []
        for i, p in enumerate(files):
            key = (os.path.basename(p), labels[i])
            if os.path.basename(p).startswith("PublicTest_") and key in seen:
                continue
            seen.add(key)
            keep.append(i)
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    if ignored:
        print(f"{NAME}: ignored {len(ignored)} non-image file(s), e.g. {ignored[0]}", file=sys.stderr)
    table = ExampleTable(labels=labels, class_names=CLASSES, files=files, origins=None, name=NAME,
                         info={"layout": "folder", "ignored_files": ignored})
    where = ", ".join(p for p, _ in parts) or root
    return empty_check(table, NAME, split, where)


def _check_test_prefixes(folder: str) -> None:
    """Every test image must say whether it is PublicTest or PrivateTest; otherwise the split is ambiguous."""
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub)
        if not os.path.isdir(path) or sub.startswith("."):
            continue
        from ferzoo.data.source import list_images

        for name in list_images(path)[0]:
            if not name.startswith(("PublicTest_", "PrivateTest_")):
                raise DataError(f"{NAME}: {os.path.join(path, name)} is in test/ but its name starts with neither "
                                f"PublicTest_ nor PrivateTest_, so its split is unknown (use split=None)")
