"""SFEW 2.0 (Static Facial Expressions in the Wild, EmotiW): ``data_dir`` holds ``Train/`` and ``Val/`` (and
the unlabelled ``Test/``), each with the class folders Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise of
RGB frames (``.png`` in the original release, ``.jpg`` in the aligned-face release).

Splits: ``train`` = Train, ``val`` = Val (the labelled held-out set papers report on), ``test`` = Val too only
when ``test_is_val=True`` (the official Test labels are not public). Class order: alphabetical (native).
"""

from __future__ import annotations

from ferzoo.labels import NATIVE

from ._common import DataError, ExampleTable, empty_check, find_child, finish, read_class_tree, require_dir

NAME = "sfew"
CLASSES = list(NATIVE["sfew"])
FOLDERS = {"train": ["Train", "train", "Train_Aligned_Faces"], "val": ["Val", "val", "Val_Aligned_Faces", "Validation"]}


def load(data_dir=None, split: str | None = None, *, test_is_val: bool = False, **options):
    if split not in (None, "train", "val", "test"):
        raise ValueError(f"{NAME}: unknown split {split!r}; known: train, val, test (with test_is_val) or None")
    root = require_dir(data_dir, "the SFEW 2.0 folder", NAME)
    if split == "test":
        if not test_is_val:
            raise DataError(f"{NAME}: the SFEW 2.0 Test labels are not public; pass test_is_val=True to "
                            f"evaluate on Val as papers do")
        split_key = "val"
    else:
        split_key = split
    wanted = ["train", "val"] if split_key is None else [split_key]
    files, labels, ignored = [], [], []
    for s in wanted:
        folder = find_child(root, FOLDERS[s])
        if folder is None:
            raise DataError(f"{NAME}: {root!r} has no {FOLDERS[s][0]}/ folder")
        f, lab, ign = read_class_tree(folder, CLASSES, NAME)
        files += f
        labels += lab
        ignored += ign
    table = ExampleTable(labels=labels, class_names=CLASSES, files=files, name=NAME, info={"ignored_files": ignored})
    empty_check(table, NAME, split, root)
    return finish(table, native_channels=3, **options)
