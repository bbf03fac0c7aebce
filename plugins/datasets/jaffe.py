"""JAFFE (Japanese Female Facial Expression): ``data_dir`` is the flat folder of the release (or its parent
holding ``jaffe/`` / ``jaffedbase/``) with 213 files ``XX.YYn.NNN.tiff``: XX the subject (KA, KL, KM, KR, MK,
NA, NM, TM, UY, YM), YY the expression code (AN, DI, FE, HA, NE, SA, SU), n the repetition, NNN the image id.

The TIFFs are 256x256 8-bit palette ("P" mode) images: they are read through their palette with Pillow, never
as raw palette indices. Splits: subject-independent k-fold (``protocol="kfold"``, default ``folds=10`` =
leave one subject out) or ``protocol="random"`` (a seeded stratified split, e.g. Deep-Emotion's 10 per class
for test: ``test_per_class=10, val_size=23``).
"""

from __future__ import annotations

import os
import re

from ferzoo.labels import NATIVE

from ._common import DataError, ExampleTable, find_child, finish, require_dir, split_lab

NAME = "jaffe"
CLASSES = list(NATIVE["jaffe"])
CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise"}
PATTERN = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)\.tiff?$", re.IGNORECASE)


def load(data_dir=None, split: str | None = None, **options):
    root = require_dir(data_dir, "the JAFFE folder", NAME)
    base = find_child(root, ["jaffe", "jaffedbase"]) or root
    files, labels, subjects, ignored = [], [], [], []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if not os.path.isfile(path) or name.startswith("."):
            continue
        if not name.lower().endswith((".tiff", ".tif")):
            ignored.append(name)
            continue
        m = PATTERN.match(name)
        if not m:
            raise DataError(f"{NAME}: {path} is not named XX.YYn.NNN.tiff (subject, expression code, id)")
        code = m.group(2).upper()
        if code not in CODES:
            raise DataError(f"{NAME}: {path}: unknown expression code {code!r}; known: {sorted(CODES)}")
        files.append(path)
        labels.append(CLASSES.index(CODES[code]))
        subjects.append(m.group(1).upper())
    if not files:
        raise DataError(f"{NAME}: no XX.YYn.NNN.tiff images in {base!r}")
    table = ExampleTable(labels=labels, class_names=CLASSES, files=files, subjects=subjects, name=NAME,
                         info={"ignored_files": ignored})
    table = split_lab(table, split, options, protocol="kfold", folds=10, fold=0, split_seed=0)
    return finish(table, native_channels=1, **options)
