"""Helpers shared by the data set readers: the common options and the last step, table -> tf.data."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ferzoo.data.source import (DataError, ExampleTable, build_dataset, channels_for, is_image_file,  # noqa: F401
                                list_images, require_dir, require_file)
from ferzoo.labels import canonical_name, resolve_class_order

#: options every reader accepts (see plugins/datasets/README.md)
COMMON_OPTIONS = ("color", "image_size", "shuffle", "seed", "deterministic", "cache", "prefetch", "on_error",
                  "class_order")


def finish(table: ExampleTable, *, native_channels: int, color=None, image_size: Sequence[int] | None = None,
           shuffle: bool = False, seed: int | None = None, deterministic: bool = True, cache=False,
           prefetch: bool = True, on_error: str = "raise", class_order="native"):
    """Apply the class order, then build the decoding pipeline (:func:`ferzoo.data.source.build_dataset`)."""
    if class_order not in (None, "native"):
        table = table.with_class_names(resolve_class_order(table.class_names, class_order))
    return build_dataset(table, channels=channels_for(color, native_channels), image_size=image_size,
                         shuffle=shuffle, seed=seed, deterministic=deterministic, cache=cache, prefetch=prefetch,
                         on_error=on_error, dataset=table.name)


def class_folders(folder: str, dataset: str, allowed: Sequence[str] | None = None) -> dict[str, str]:
    """Sub-folders of ``folder`` -> canonical class name; an unknown folder name is an error naming it."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            name = canonical_name(entry.name)
        except ValueError:
            raise DataError(f"{dataset}: unknown class folder {entry.path!r}; expected one of "
                            f"{list(allowed) if allowed else 'the expression names'}") from None
        if allowed is not None and name not in allowed:
            raise DataError(f"{dataset}: class folder {entry.path!r} ({name}) is not a class of {dataset}: "
                            f"{list(allowed)}")
        if name in seen:
            raise DataError(f"{dataset}: folders {seen[name]!r} and {entry.path!r} are both class {name!r}")
        seen[name] = entry.path
        out[entry.name] = name
    return out


def read_class_tree(folder: str, class_names: Sequence[str], dataset: str, *, file_filter=None):
    """``folder/<class>/<image>`` -> (files, labels, ignored non-image files) in sorted order."""
    mapping = class_folders(folder, dataset, class_names)
    files, labels, ignored = [], [], []
    for sub, name in mapping.items():
        images, other = list_images(os.path.join(folder, sub))
        ignored += [os.path.join(folder, sub, o) for o in other]
        for f in images:
            if file_filter is not None and not file_filter(f):
                continue
            files.append(os.path.join(folder, sub, f))
            labels.append(list(class_names).index(name))
    return files, labels, ignored


def find_child(folder: str, names: Sequence[str]) -> str | None:
    """The first existing sub-folder of ``folder`` among ``names`` (case-insensitive)."""
    try:
        entries = {e.name.lower(): e.path for e in os.scandir(folder) if e.is_dir()}
    except FileNotFoundError:
        return None
    for n in names:
        if n.lower() in entries:
            return entries[n.lower()]
    return None


def empty_check(table: ExampleTable, dataset: str, split, where: str) -> ExampleTable:
    if len(table) == 0:
        raise DataError(f"{dataset}: split {split!r} has no images in {where}")
    return table


def labels_array(labels) -> np.ndarray:
    return np.asarray(labels, dtype=np.int32)


#: options of the lab data sets that choose a split (see ferzoo.data.folds.select_split)
SPLIT_OPTIONS = ("protocol", "folds", "fold", "val_folds", "split_seed", "test_size", "val_size", "test_per_class",
                 "val_per_class")


def split_lab(table: ExampleTable, split, options: dict, **defaults) -> ExampleTable:
    """Pop the split options from ``options`` (defaults per data set) and select ``split`` of ``table``."""
    from ferzoo.data.folds import select_split

    kw = {k: options.pop(k, defaults.get(k)) for k in SPLIT_OPTIONS}
    kw = {k: v for k, v in kw.items() if v is not None}
    if "split_seed" in kw:
        kw["seed"] = kw.pop("split_seed")
    return select_split(table, split, **kw)


def frames_of(sorted_frames: list, last: int | None = None, first: int = 0, middle: int | None = None):
    """Pick frames of a sequence: the ``last`` n, the ``middle`` n, or all (``None``); plus the first ``first``."""
    n = len(sorted_frames)
    if middle is not None:
        start = max(0, (n - middle) // 2)
        peak = sorted_frames[start:start + middle]
    elif last is not None:
        peak = sorted_frames[max(0, n - last):]
    else:
        peak = list(sorted_frames)
    head = [f for f in sorted_frames[:first] if f not in peak]
    return peak, head
