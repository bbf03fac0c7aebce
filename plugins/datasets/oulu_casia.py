"""Oulu-CASIA NIR&VIS: ``data_dir`` is the release folder holding ``OriginalImg/`` (or the cropped
``Preprocess Img/`` set, chosen with ``variant``), laid out as
``<variant>/<VL|NI>/<Strong|Weak|Dark>/P###/<Anger|Disgust|Fear|Happiness|Sadness|Surprise>/###.jpeg``.

Each sequence (subject x expression, from neutral to apex) gives its ``last_frames`` last frames (3) with
the expression label, plus with ``neutral_frames=k`` its first k frames labelled neutral. Defaults:
``modality="VL"``, ``illumination="Strong"`` (the 80 x 6 = 480 sequences papers use). Splits:
subject-independent k-fold (``folds=10``) or ``protocol="random"``.
"""

from __future__ import annotations

import os

from ferzoo.labels import NATIVE, canonical_name

from ._common import DataError, ExampleTable, find_child, finish, frames_of, list_images, require_dir, split_lab

NAME = "oulu_casia"
CLASSES = list(NATIVE["oulu_casia"])
VARIANTS = ("OriginalImg", "Preprocess Img", "PreProcess Img", "Cropped")


def load(data_dir=None, split: str | None = None, *, variant: str | None = None, modality: str = "VL",
         illumination: str = "Strong", last_frames: int = 3, neutral_frames: int = 0, **options):
    root = require_dir(data_dir, "the Oulu-CASIA folder", NAME)
    base = _find_base(root, variant)
    folder = find_child(base, [modality])
    if folder is None:
        raise DataError(f"{NAME}: no {modality}/ folder in {base!r}")
    folder2 = find_child(folder, [illumination])
    if folder2 is None:
        raise DataError(f"{NAME}: no {illumination}/ folder in {folder!r}")
    files, labels, subjects, sequences = [], [], [], []
    names = CLASSES + (["neutral"] if neutral_frames else [])
    for person in sorted(e.name for e in os.scandir(folder2) if e.is_dir() and not e.name.startswith(".")):
        pdir = os.path.join(folder2, person)
        for expr in sorted(e.name for e in os.scandir(pdir) if e.is_dir() and not e.name.startswith(".")):
            try:
                name = canonical_name(expr)
            except ValueError:
                raise DataError(f"{NAME}: unknown expression folder {os.path.join(pdir, expr)!r}") from None
            if name not in CLASSES:
                raise DataError(f"{NAME}: {os.path.join(pdir, expr)!r} is not an Oulu-CASIA expression")
            frames, _ = list_images(os.path.join(pdir, expr))
            if not frames:
                raise DataError(f"{NAME}: the sequence folder {os.path.join(pdir, expr)} holds no frames")
            peak, head = frames_of(frames, last=last_frames, first=neutral_frames)
            for n, lab in [(n, name) for n in peak] + [(n, "neutral") for n in head]:
                files.append(os.path.join(pdir, expr, n))
                labels.append(names.index(lab))
                subjects.append(person)
                sequences.append(f"{person}/{expr}")
    if not files:
        raise DataError(f"{NAME}: no sequences in {folder2!r}")
    table = ExampleTable(labels=labels, class_names=names, files=files, subjects=subjects, sequences=sequences,
                         name=NAME, info={"modality": modality, "illumination": illumination,
                                          "last_frames": last_frames, "neutral_frames": neutral_frames})
    table = split_lab(table, split, options, protocol="kfold", folds=10, fold=0, split_seed=0)
    return finish(table, native_channels=3 if modality.upper() == "VL" else 1, **options)


def _find_base(root: str, variant: str | None) -> str:
    if variant is not None:
        base = find_child(root, [variant])
        if base is None:
            if os.path.basename(os.path.normpath(root)).lower() == variant.lower():
                return root
            raise DataError(f"{NAME}: no {variant}/ folder in {root!r}")
        return base
    if find_child(root, ["VL", "NI"]):
        return root
    for v in VARIANTS:
        base = find_child(root, [v])
        if base is not None:
            return base
    raise DataError(f"{NAME}: {root!r} holds neither OriginalImg/ nor VL/ or NI/ folders")
