"""FERG-DB (Facial Expression Research Group 2D database of stylised characters): ``data_dir`` is
``FERG_DB_256/`` (or its parent): ``<character>/<character>_<expression>/<character>_<expression>_<n>.png``
with the characters aia, bonnie, jules, malcolm, mery, ray and the expressions anger, disgust, fear, joy,
neutral, sadness, surprise (256x256 RGBA PNG renders; the alpha channel is dropped).

There is no official split. Default: Deep-Emotion's seeded protocol (``protocol="random"``: 1,000 random
images per expression for test, then a stratified 14,000 of the rest for val, the remainder for train;
``split_seed``). ``protocol="kfold"`` gives character-independent folds (``folds`` <= 6).
"""

from __future__ import annotations

import os

from ferzoo.labels import NATIVE, canonical_name

from ._common import DataError, ExampleTable, find_child, finish, list_images, require_dir, split_lab

NAME = "ferg"
CLASSES = list(NATIVE["ferg"])


def load(data_dir=None, split: str | None = None, **options):
    root = require_dir(data_dir, "the FERG_DB_256 folder", NAME)
    base = find_child(root, ["FERG_DB_256"]) or root
    files, labels, subjects, ignored = [], [], [], []
    characters = sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))
    if not characters:
        raise DataError(f"{NAME}: no character folders in {base!r}")
    for ch in characters:
        cdir = os.path.join(base, ch)
        for sub in sorted(e.name for e in os.scandir(cdir) if e.is_dir() and not e.name.startswith(".")):
            prefix = ch + "_"
            if not sub.lower().startswith(prefix.lower()):
                raise DataError(f"{NAME}: folder {os.path.join(cdir, sub)!r} is not named {ch}_<expression>")
            try:
                name = canonical_name(sub[len(prefix):])
            except ValueError:
                raise DataError(f"{NAME}: unknown expression folder {os.path.join(cdir, sub)!r}") from None
            if name not in CLASSES:
                raise DataError(f"{NAME}: {os.path.join(cdir, sub)!r} ({name}) is not a FERG class")
            images, other = list_images(os.path.join(cdir, sub))
            ignored += other
            for n in images:
                files.append(os.path.join(cdir, sub, n))
                labels.append(CLASSES.index(name))
                subjects.append(ch)
    if not files:
        raise DataError(f"{NAME}: no images in {base!r}")
    table = ExampleTable(labels=labels, class_names=CLASSES, files=files, subjects=subjects, name=NAME,
                         info={"ignored_files": ignored})
    table = split_lab(table, split, options, protocol="random", test_per_class=1000, val_size=14000, split_seed=0,
                      folds=6, fold=0)
    return finish(table, native_channels=3, **options)
