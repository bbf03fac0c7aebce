"""A generic image-folder data set: ``data_dir/<split>/<class>/<image>`` or ``data_dir/<class>/<image>``.

Class folders named with an expression (``angry``, ``Anger``, ``happiness``, ``joy``, ``SU``, ...) get
canonical names; any other names are kept as they are (``canonical="auto"``). The class order is the
alphabetical order of the folder names unless ``class_names`` fixes it.
"""

from __future__ import annotations

import os

from ferzoo.labels import canonical_name, is_expression_name

from ._common import DataError, ExampleTable, empty_check, find_child, finish, list_images, require_dir

NAME = "folder"
SPLIT_FOLDERS = {"train": ["train", "training"], "val": ["val", "valid", "validation"], "test": ["test", "testing"]}


def load(data_dir=None, split: str | None = None, *, class_names=None, canonical="auto", color=None, **options):
    """Read an image-folder tree (see the module doc).

    ``split``: ``train``/``val``/``test`` read ``data_dir/<split>/`` (``val`` also ``valid``/``validation``);
    ``None`` reads every split folder there is, or ``data_dir`` itself when it holds class folders directly.
    ``class_names``: the class order (folder names or their canonical names); a class folder not in it is
    an error. ``canonical``: ``"auto"`` / ``True`` (map folder names to canonical expression names, an
    unknown name is an error) / ``False`` (keep folder names). ``color``: None = from the first image.
    """
    root = require_dir(data_dir, "data_dir", NAME)
    split_dirs = {s: find_child(root, names) for s, names in SPLIT_FOLDERS.items()}
    has_splits = any(split_dirs.values())
    if split is None:
        folders = [d for d in split_dirs.values() if d] if has_splits else [root]
    else:
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"{NAME}: unknown split {split!r}; known: {list(SPLIT_FOLDERS)} or None")
        if not split_dirs[split]:
            raise DataError(f"{NAME}: {root!r} has no {split}/ folder (looked for {SPLIT_FOLDERS[split]})")
        folders = [split_dirs[split]]
    # the label space comes from every split, so train/val/test share one class order
    all_folders = [d for d in split_dirs.values() if d] if has_splits else [root]
    raw = sorted({e.name for d in all_folders for e in os.scandir(d) if e.is_dir() and not e.name.startswith(".")})
    if not raw:
        raise DataError(f"{NAME}: no class folders in {', '.join(all_folders)}")
    if canonical == "auto":
        canonical = all(is_expression_name(n) for n in raw)
    if canonical:
        to_name = {}
        for n in raw:
            try:
                to_name[n] = canonical_name(n)
            except ValueError:
                raise DataError(f"{NAME}: class folder {n!r} is not an expression name (pass canonical=False "
                                f"to keep folder names)") from None
        clash = {v for v in to_name.values() if list(to_name.values()).count(v) > 1}
        if clash:
            raise DataError(f"{NAME}: several folders name the same class {sorted(clash)}: "
                            f"{[k for k, v in to_name.items() if v in clash]}")
    else:
        to_name = {n: n for n in raw}
    if class_names is not None:
        names = [canonical_name(n) if canonical else str(n) for n in class_names]
        unknown = sorted(n for n, c in to_name.items() if c not in names)
        if unknown:
            raise DataError(f"{NAME}: class folder(s) {unknown} in {root!r} are not among class_names {names}")
    else:
        names = sorted(set(to_name.values()), key=lambda c: sorted(k for k, v in to_name.items() if v == c)[0])
    files, labels, ignored = [], [], []
    for d in folders:
        for sub in sorted(os.listdir(d)):
            path = os.path.join(d, sub)
            if not os.path.isdir(path) or sub.startswith("."):
                continue
            images, other = list_images(path)
            ignored += other
            files += [os.path.join(path, f) for f in images]
            labels += [names.index(to_name[sub])] * len(images)
    table = ExampleTable(labels=labels, class_names=names, files=files, name=NAME,
                         info={"ignored_files": ignored})
    empty_check(table, NAME, split, ", ".join(folders))
    if color is None:
        color = _native_color(files[0])
    return finish(table, native_channels=1, color=color, **options)


def _native_color(path: str) -> str:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return "grayscale" if im.mode in ("L", "LA", "1", "I", "I;16", "F") else "rgb"
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{NAME}: cannot read image {path}: {exc}") from exc
