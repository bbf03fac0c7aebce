"""Data sets as tables of examples: labels are known up front (cheap), images are decoded lazily and in
parallel inside a ``tf.data`` pipeline.

A reader builds an :class:`ExampleTable` (file paths or in-memory pixels, int labels into ``class_names``,
optional face boxes, subjects, where each label came from) and turns it into a data set with
:func:`build_dataset`. The returned ``tf.data.Dataset`` yields ``(image uint8 H x W x C, label int32)`` and
carries, as Python attributes:

* ``class_names``: canonical names, ``class_names[label]`` is every example's class name;
* ``labels`` (``np.int32`` array), ``files`` (paths or ``None``), ``subjects`` (or ``None``);
* ``table``: the :class:`ExampleTable`; ``source``: a :class:`DecodeSource` that rebuilds the decoding
  pipeline from any stream of example indices (the samplers in :mod:`ferzoo.data.augment` use it, so they
  never decode an image just to read its label);
* ``skipped``: ``[(file, reason), ...]`` for unreadable images dropped on request (``on_error="skip"``).

Transformations (``map``, ``take``, ...) drop Python attributes, so the presence of ``source`` means the
data set is exactly what the reader returned.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import tensorflow as tf

log = logging.getLogger("ferzoo.data")

#: formats ``tf.io.decode_image`` reads
TF_FORMATS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: formats read with Pillow (palette modes and 16-bit handled explicitly)
PIL_FORMATS = (".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm")
IMAGE_EXTENSIONS = TF_FORMATS + PIL_FORMATS


class DataError(ValueError):
    """Bad data on disk: missing folder or label file, unknown class, label out of range, empty split,
    unreadable image. The message names the file (and line where there is one)."""


def is_image_file(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def require_dir(path, what: str, dataset: str) -> str:
    if path is None:
        raise DataError(f"{dataset}: pass data_dir=, the folder of the release ({what})")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"{dataset}: {what} {path!r} does not exist or is not a folder")
    return path


def require_file(path, what: str, dataset: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{dataset}: {what} {path!r} does not exist")
    return path


def list_images(folder: str) -> tuple[list[str], list[str]]:
    """Sorted image files directly in ``folder`` and the other (ignored) entries that are files."""
    images, other = [], []
    with os.scandir(folder) as it:
        for e in it:
            if not e.is_file():
                continue
            (images if is_image_file(e.name) else other).append(e.name)
    return sorted(images), sorted(other)


@dataclass
class ExampleTable:
    """Every labelled example of (a split of) a data set, before any image is read."""

    labels: np.ndarray
    class_names: list[str]
    files: list[str] | None = None
    images: np.ndarray | None = None  # in-memory uint8 (N, H, W, C), e.g. fer2013.csv
    boxes: np.ndarray | None = None  # (N, 4) int32 y, x, height, width; crop after decoding
    subjects: list[str] | None = None
    sequences: list[str] | None = None
    origins: list[str] | None = None  # "file:line" (or the file) each label was read from
    extras: dict = field(default_factory=dict)  # per-example arrays (landmarks, valence, ...)
    name: str = ""
    info: dict = field(default_factory=dict)  # e.g. counts of examples excluded by a documented rule

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        n = len(self.labels)
        for key in ("files", "subjects", "sequences", "origins"):
            value = getattr(self, key)
            if value is not None and len(value) != n:
                raise ValueError(f"{key} has {len(value)} entries for {n} labels")
        if self.files is None and self.images is None:
            raise ValueError("an ExampleTable needs files or images")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must be in 0..{len(self.class_names) - 1}")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> "ExampleTable":
        index = np.asarray(index, dtype=np.int64).reshape(-1)

        def pick(seq):
            return None if seq is None else [seq[i] for i in index]

        return replace(self, labels=self.labels[index], files=pick(self.files),
                       images=None if self.images is None else self.images[index],
                       boxes=None if self.boxes is None else self.boxes[index], subjects=pick(self.subjects),
                       sequences=pick(self.sequences), origins=pick(self.origins),
                       extras={k: np.asarray(v)[index] for k, v in self.extras.items()}, info=dict(self.info))

    def with_class_names(self, class_names: Sequence[str]) -> "ExampleTable":
        """Re-index labels into ``class_names`` (by name; it must hold every class of this table)."""
        from ..labels import label_mapping

        class_names = list(class_names)
        if class_names == self.class_names:
            return self
        mapping = np.asarray(label_mapping(self.class_names, class_names), dtype=np.int32)
        return replace(self, labels=mapping[self.labels], class_names=class_names)

    def counts(self) -> dict:
        c = np.bincount(self.labels, minlength=len(self.class_names))
        return {n: int(v) for n, v in zip(self.class_names, c)}

    def class_name(self, i: int) -> str:
        return self.class_names[int(self.labels[i])]


# -- validity checks ---------------------------------------------------------------------------------------
_TAIL = 64


def _check_bytes_py(data: bytes) -> str | None:
    """Why ``data`` is not a complete image in a format tf.io.decode_image reads, or None."""
    if len(data) == 0:
        return "empty file"
    tail = data[-_TAIL:]
    if data[:2] == b"\xff\xd8":
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if data[:4] in (b"GIF8",):
        return None if b";" in tail else "truncated GIF"
    if data[:2] == b"BM":
        size = int.from_bytes(data[2:6], "little") if len(data) >= 6 else 1 << 40
        return None if size <= len(data) else "truncated BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = int.from_bytes(data[4:8], "little") + 8
        return None if size <= len(data) else "truncated WebP"
    return "not a JPEG/PNG/GIF/BMP/WebP image"


def _contains(tail: tf.Tensor, pattern: bytes) -> tf.Tensor:
    k = len(pattern)
    n = tf.shape(tail)[0]
    m = tf.maximum(n - k + 1, 0)
    hit = tf.ones([m], tf.bool)
    for j, b in enumerate(pattern):
        hit = hit & tf.equal(tail[j:j + m], b)
    return tf.reduce_any(hit)


def _check_bytes_tf(data: tf.Tensor) -> tf.Tensor:
    """Graph version of :func:`_check_bytes_py` (magic bytes and end marker): True when complete.

    Fast path: a JPEG ending in its end-of-image marker or a PNG ending in its IEND chunk (nearly all files)."""
    n = tf.strings.length(data)
    fast = ((tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")
             & tf.equal(tf.strings.substr(data, tf.maximum(n - 2, 0), 2), b"\xff\xd9"))
            | (tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG")
               & tf.equal(tf.strings.substr(data, tf.maximum(n - 8, 0), 4), b"IEND")))
    return tf.cond(fast, lambda: tf.constant(True), lambda: _check_bytes_tf_full(data))


def _check_bytes_tf_full(data: tf.Tensor) -> tf.Tensor:
    n = tf.strings.length(data)
    head = tf.strings.substr(data, 0, 12)
    tail = tf.io.decode_raw(tf.strings.substr(data, tf.maximum(n - _TAIL, 0), _TAIL), tf.uint8)

    def starts(p):
        return tf.equal(tf.strings.substr(head, 0, len(p)), p)

    jpeg = starts(b"\xff\xd8") & _contains(tail, b"\xff\xd9")
    png = starts(b"\x89PNG\r\n\x1a\n") & _contains(tail, b"IEND")
    gif = starts(b"GIF8") & _contains(tail, b";")
    # BMP / WebP: only the magic bytes (their size fields are checked by the decoder)
    bmp = starts(b"BM")
    webp = starts(b"RIFF") & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    return jpeg | png | gif | bmp | webp


def read_image_pil(path: str, channels: int) -> np.ndarray:
    """Read any Pillow format as uint8 ``H x W x channels``; palette images go through their palette,
    16-bit and float images are scaled to 0..255. Errors name the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
                arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                gray = Image.fromarray(arr, "L")
                im2 = gray if channels == 1 else gray.convert("RGB")
            elif mode == "P" or mode == "PA":
                rgb = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
                im2 = rgb.convert("L") if channels == 1 else rgb.convert("RGB")
            else:
                im2 = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im2, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return arr[..., None] if arr.ndim == 2 else arr


def scan_images(files: Sequence[str], channels: int = 1, workers: int = 8) -> list[tuple[int, str]]:
    """Fully read every file (header, end marker, Pillow decode); return ``[(index, reason)]`` of bad ones."""

    def check(i):
        path = files[i]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            return i, f"cannot open: {exc}"
        if path.lower().endswith(TF_FORMATS):
            why = _check_bytes_py(data)
            if why:
                return i, why
        try:
            read_image_pil(path, channels)
        except DataError as exc:
            return i, str(exc.__cause__ or exc)
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [r for r in pool.map(check, range(len(files))) if r is not None]


# -- the decoding pipeline ---------------------------------------------------------------------------------
class DecodeSource:
    """Turns a stream of example indices into ``(image, label)`` elements of one :class:`ExampleTable`."""

    def __init__(self, table: ExampleTable, *, channels: int, image_size: Sequence[int] | None = None,
                 check: bool = True, deterministic: bool | None = True):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.table = table
        self.channels = int(channels)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.check = bool(check)
        self.deterministic = deterministic
        self.labels = table.labels
        self.class_names = list(table.class_names)

    def __len__(self):
        return len(self.table)

    # one element ---------------------------------------------------------------------------------------
    def _decode_file(self, path: tf.Tensor, pil: tf.Tensor | None) -> tf.Tensor:
        c = self.channels

        def with_tf():
            data = tf.io.read_file(path)
            if self.check:
                ok = _check_bytes_tf(data)
                assert_op = tf.debugging.Assert(ok, ["corrupt or truncated image file:", path])
                with tf.control_dependencies([assert_op]):
                    data = tf.identity(data)
            if c == 3:
                img = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
            else:  # GIF, BMP and WebP decode only to RGB: convert those to gray (ITU-R 601 luma)
                head = tf.strings.substr(data, 0, 4)
                gray_ok = tf.equal(tf.strings.substr(head, 0, 2), b"\xff\xd8") | tf.equal(head, b"\x89PNG")

                def rgb_to_gray():
                    rgb = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
                    g = tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32))
                    return tf.cast(tf.clip_by_value(tf.round(g), 0.0, 255.0), tf.uint8)

                img = tf.cond(gray_ok, lambda: tf.ensure_shape(
                    tf.io.decode_image(data, channels=1, expand_animations=False, dtype=tf.uint8), [None, None, 1]),
                    rgb_to_gray)
            return tf.ensure_shape(img, [None, None, c])

        def with_pil():
            img = tf.numpy_function(lambda p: read_image_pil(p.decode(), c), [path], tf.uint8, stateful=False)
            return tf.ensure_shape(img, [None, None, c])

        if pil is None:
            return with_tf()
        if pil is True:
            return with_pil()
        return tf.cond(pil, with_pil, with_tf)

    def _finish(self, img: tf.Tensor, box: tf.Tensor | None, path) -> tf.Tensor:
        if box is not None:
            shape = tf.shape(img)
            y0 = tf.clip_by_value(box[0], 0, shape[0])
            x0 = tf.clip_by_value(box[1], 0, shape[1])
            y1 = tf.clip_by_value(box[0] + box[2], 0, shape[0])
            x1 = tf.clip_by_value(box[1] + box[3], 0, shape[1])
            has_box = box[2] > 0
            ok = tf.logical_not(has_box) | ((y1 > y0) & (x1 > x0))
            msg = ["face box outside the image:", path if path is not None else "(in-memory image)"]
            with tf.control_dependencies([tf.debugging.Assert(ok, msg)]):
                img = tf.cond(has_box, lambda: img[y0:y1, x0:x1], lambda: tf.identity(img))
        if self.image_size is not None:
            from . import convert_image  # the package's resize rule: area when shrinking, bilinear otherwise

            img = convert_image(img, (*self.image_size, self.channels))
            img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
        return img

    def element_fn(self):
        t = self.table
        labels = tf.constant(t.labels, tf.int32)
        boxes = None if t.boxes is None else tf.constant(np.asarray(t.boxes, np.int32))
        if t.images is not None:
            images = tf.constant(_as_channels(t.images, self.channels))

            def element(i):
                img = tf.gather(images, i)
                box = None if boxes is None else tf.gather(boxes, i)
                return self._finish(img, box, None), tf.gather(labels, i)

            return element
        files = tf.constant(list(t.files))
        use_pil = np.asarray([not f.lower().endswith(TF_FORMATS) for f in t.files], dtype=bool)
        if not use_pil.any():
            pil_t = None
        elif use_pil.all():
            pil_t = True
        else:
            pil_t = tf.constant(use_pil)

        def element(i):
            path = tf.gather(files, i)
            pil = pil_t if not isinstance(pil_t, tf.Tensor) else tf.gather(pil_t, i)
            img = self._decode_file(path, pil)
            box = None if boxes is None else tf.gather(boxes, i)
            return self._finish(img, box, path), tf.gather(labels, i)

        return element

    def dataset(self, indices: tf.data.Dataset | None = None, *, shuffle: bool = False, seed: int | None = None,
                cache=False, prefetch: bool = True) -> tf.data.Dataset:
        """``indices`` (int64 stream) -> decoded ``(image, label)``; default: every example once, in order."""
        n = len(self.table)
        if indices is None:
            indices = tf.data.Dataset.range(n)
            if shuffle and not cache:
                indices = indices.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        ds = indices.map(self.element_fn(), num_parallel_calls=tf.data.AUTOTUNE, deterministic=self.deterministic)
        if cache:
            ds = ds.cache("" if cache is True else os.fspath(cache))
            if shuffle:
                ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
        if prefetch:
            ds = ds.prefetch(tf.data.AUTOTUNE)
        return ds

    def attach(self, ds: tf.data.Dataset, **extra) -> tf.data.Dataset:
        """Attach class names, labels, files, subjects, the table and this source to ``ds``."""
        t = self.table
        ds.class_names = list(t.class_names)
        ds.labels = t.labels
        ds.files = t.files
        ds.subjects = t.subjects
        ds.table = t
        ds.source = self
        ds.info = dict(t.info)
        for k, v in extra.items():
            setattr(ds, k, v)
        return ds


def _as_channels(images: np.ndarray, channels: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    have = images.shape[-1]
    if have == channels:
        return images.astype(np.uint8, copy=False)
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1).astype(np.uint8)
    if have in (3, 4) and channels == 1:
        g = images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.round(g), 0, 255).astype(np.uint8)[..., None]
    if have == 4 and channels == 3:
        return images[..., :3].astype(np.uint8)
    raise ValueError(f"cannot convert images with {have} channels to {channels}")


COLORS = {None: None, "native": None, "grayscale": 1, "gray": 1, "l": 1, "rgb": 3}


def channels_for(color, native: int) -> int:
    """``color`` option of the readers: ``None``/"native" (the release's own), "grayscale" or "rgb"."""
    if isinstance(color, int) and color in (1, 3):
        return color
    key = color.lower() if isinstance(color, str) else color
    if key not in COLORS:
        raise ValueError(f"color must be 'grayscale', 'rgb' or None (the release's own), got {color!r}")
    return COLORS[key] or native


def build_dataset(table: ExampleTable, *, channels: int, image_size: Sequence[int] | None = None,
                  shuffle: bool = False, seed: int | None = None, deterministic: bool = True, cache=False,
                  prefetch: bool = True, on_error: str = "raise", dataset: str = "") -> tf.data.Dataset:
    """An unbatched ``(image, label)`` data set of ``table`` with the attributes listed in the module doc.

    ``on_error``: ``"raise"`` (default; a truncated or non-image file stops iteration with an error naming
    the file), ``"check"`` (read every file now and raise naming the bad ones) or ``"skip"`` (read every
    file now, leave the unreadable ones out, warn with their count and list them in ``ds.skipped``).
    ``deterministic``: keep the table's order through the parallel decode (and shuffle by ``seed``).
    """
    name = dataset or table.name
    if len(table) == 0:
        raise DataError(f"{name}: the requested split has no examples")
    skipped: list[tuple[str, str]] = []
    if on_error not in ("raise", "check", "skip"):
        raise ValueError(f"on_error must be 'raise', 'check' or 'skip', got {on_error!r}")
    if on_error in ("check", "skip") and table.files is not None:
        bad = scan_images(table.files, channels)
        if bad:
            listing = "; ".join(f"{table.files[i]}: {why}" for i, why in bad[:5])
            if on_error == "check":
                raise DataError(f"{name}: {len(bad)} unreadable image(s): {listing}"
                                + (" ..." if len(bad) > 5 else ""))
            skipped = [(table.files[i], why) for i, why in bad]
            keep = np.setdiff1d(np.arange(len(table)), [i for i, _ in bad])
            table = table.take(keep)
            msg = (f"{name}: skipped {len(skipped)} unreadable image(s) of {len(skipped) + len(table)} "
                   f"(listed in ds.skipped): {listing}" + (" ..." if len(bad) > 5 else ""))
            warnings.warn(msg, stacklevel=3)
            log.warning(msg)
            if len(table) == 0:
                raise DataError(f"{name}: every image of the split is unreadable")
    src = DecodeSource(table, channels=channels, image_size=image_size, check=on_error == "raise",
                       deterministic=deterministic)
    ds = src.dataset(shuffle=shuffle, seed=seed, cache=cache, prefetch=prefetch)
    if not deterministic:
        opts = tf.data.Options()
        opts.deterministic = False
        ds = ds.with_options(opts)
    return src.attach(ds, skipped=skipped)
