"""Photos, folders, videos and images in memory in, one record per face out: :func:`predict_files` (``ferzoo
predict``), :func:`detect` (images in memory), :func:`stream` (``ferzoo predict --stream``: a camera, a video file
or a stream URL, record by record as the frames arrive) and :func:`explain_files` (``ferzoo explain``).

Every input yields at least one record ``{file, frame, face, box, class, probabilities, status,
face_confidence}``. ``status`` is ``"ok"`` for a classified face; ``"no face"`` / ``"no face (blank image)"`` for
a readable image without one; anything else says why an input failed (:data:`FAILURE_STATUSES` lists the
kinds). One bad input never stops a batch; :func:`failed` tells the failures apart.

Faces are detected in batches of photos of one size, cropped by the rule the weights' card states
(:mod:`ferzoo.faces`), and classified in batches across photos and video frames.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from . import faces as F

OK = "ok"
NO_FACE = "no face"
BLANK = "no face (blank image)"
#: the kinds of failure a record's status starts with
FAILURE_STATUSES = ("not found", "broken link", "empty file", "empty folder", "is a folder", "not a regular file",
                    "not an image", "unreadable", "unreadable video", "too small", "too large", "empty image")
#: default video sampling: every this many frames (printed when it stands in)
DEFAULT_EVERY = 10
#: endings ``output=`` may have
OUTPUT_FORMATS = (".json", ".csv")
#: images up to this long side without a detected face get a hint that --no-detect exists (printed once)
SMALL_SIDE = 96
#: size (long side, px) of the face pictures ``explain_files`` writes
EXPLAIN_SIZE = 256


def failed(status: str) -> bool:
    """Whether a record's status means its input failed (everything but ``ok`` and ``no face ...``)."""
    return not (status == OK or status.startswith(NO_FACE))


def _say_default(line: str) -> None:
    print(f"ferzoo: {line}", file=sys.stderr)


# -- inputs -------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """One input: a file (``kind`` image or video), or a problem found while listing (``status``)."""

    file: str                   # as reported in the records
    path: Path | None
    kind: str                   # "image", "video", "array" (in memory), "stream" or "problem"
    name: str                   # relative name for files written about it (annotations, explanations)
    status: str | None = None
    image: object = None        # the array or PIL image of an in-memory input; the OpenCV source of a stream


def is_image_object(value) -> bool:
    """Whether ``value`` is an image in memory (a numpy array or a PIL image) rather than a path."""
    if isinstance(value, np.ndarray):
        return True
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(value, Image.Image)


def as_input_list(inputs) -> list:
    """One input or several as a list: a path, an image array (2-D gray or 3-D H x W x C) or a PIL image is one
    input; a 4-D array is a batch of images; anything else iterable is a list of inputs."""
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        return list(inputs) if inputs.ndim == 4 else [inputs]
    if is_image_object(inputs):
        return [inputs]
    return list(inputs)


def array_to_rgb8(image) -> np.ndarray:
    """An image in memory as an RGB ``uint8`` array: a PIL image of any mode (as :func:`ferzoo.faces.to_rgb8`);
    an array H x W, H x W x 1 (gray), H x W x 3 (RGB) or H x W x 4 (RGBA, composited over white) of values
    0..255 (float arrays whose maximum is at most 1 are taken as 0..1). Raises :class:`ferzoo.faces.InputProblem`
    for anything else."""
    if not isinstance(image, np.ndarray):
        return F.to_rgb8(image)
    arr = image
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or arr.size == 0:
        raise F.InputProblem(f"not an image: an array of shape {tuple(image.shape)} (give H x W, H x W x 1, "
                             f"H x W x 3 or H x W x 4)")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise F.InputProblem(f"not an image: an array of {arr.dtype} (give numbers 0..255)")
    if arr.dtype != np.uint8:
        arr = np.nan_to_num(arr.astype(np.float64))
        if np.issubdtype(image.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        return np.round(arr[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(arr)


def expand_inputs(paths: Iterable[str | os.PathLike], say: Callable[[str], None] | None = None) -> list[Source]:
    """Files, folders (recursively: files with an image or video ending, hidden ones left out) and videos, in
    the order given (folders sorted). A folder with nothing to read is one ``"empty folder"`` source."""
    say = say or _say_default
    out: list[Source] = []
    for index, given in enumerate(paths):
        if is_image_object(given):  # an image in memory, named by its place in the list
            out.append(Source(f"<image {index}>", None, "array", f"image_{index}", image=given))
            continue
        text = os.fspath(given)
        p = Path(text)
        if p.is_dir():
            found, skipped = _folder_files(p)
            if skipped:
                say(f"{text}: skipped {len(skipped)} file(s) without an image or video ending "
                    f"(e.g. {skipped[0]}); name a file to read it anyway")
            if not found:
                out.append(Source(text, p, "problem", p.name or "folder", "empty folder"))
            for f in found:
                rel = f.relative_to(p)
                out.append(Source(os.path.join(text, str(rel)), f, F.input_kind(f),
                                  str(Path(p.name or "folder") / rel)))
        else:
            out.append(Source(text, p, F.input_kind(p), p.name or text))
    return out


def _folder_files(folder: Path) -> tuple[list[Path], list[str]]:
    found, skipped = [], []
    wanted = F.IMAGE_EXTENSIONS | F.VIDEO_EXTENSIONS
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            (found if Path(name).suffix.lower() in wanted else skipped).append(Path(root) / name)
    found.sort(key=lambda f: f.relative_to(folder).parts)
    return found, sorted(str(s.relative_to(folder)) for s in skipped)


def iter_frames(source: Source, every: int, max_side: int | None | str = "default"
                ) -> Iterator[tuple[int | None, np.ndarray | None, str | None, tuple[int, int] | None]]:
    """``(frame, image, problem, full_size)`` for each image of ``source``: one for a photo (frame ``None``),
    every ``every``-th frame of a video; ``problem`` is a failure status, with ``image`` ``None``;
    ``full_size`` is the ``(width, height)`` of the image before it was reduced to ``max_side``
    (``"default"``: :data:`ferzoo.faces.WORK_MAX_SIDE`)."""
    if max_side == "default":
        max_side = F.WORK_MAX_SIDE
    if source.kind == "problem":
        yield None, None, source.status, None
        return
    if source.kind == "array":
        try:
            image = array_to_rgb8(source.image)
        except F.InputProblem as exc:
            yield None, None, exc.status, None
            return
        yield None, F.downscale(image, max_side), None, (image.shape[1], image.shape[0])
        return
    if source.kind == "stream":
        yield from _stream_frames(source, every, max_side)
        return
    if source.kind == "image":
        try:
            image, full = F.read_image_sized(source.path, max_side=max_side)
        except F.InputProblem as exc:
            yield None, None, exc.status, None
            return
        yield None, image, None, full
        return
    try:
        F.check_path(source.path)
    except F.InputProblem as exc:
        yield None, None, exc.status, None
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own complaints: the status says it
    import cv2

    cap = cv2.VideoCapture(str(source.path))
    try:
        if not cap.isOpened():
            yield None, None, "unreadable video: OpenCV cannot open it", None
            return
        index, read = 0, 0
        while True:
            if not cap.grab():
                break
            if index % every == 0:
                ok, frame = cap.retrieve()
                if ok and frame is not None and frame.size:
                    read += 1
                    rgb = (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3
                           else np.repeat(frame[..., None], 3, -1))
                    yield index, F.downscale(rgb, max_side), None, (rgb.shape[1], rgb.shape[0])
            index += 1
        if read == 0:
            yield None, None, "unreadable video: no frame could be decoded", None
    finally:
        cap.release()


def stream_source(text: str):
    """What OpenCV opens for ``--stream SOURCE``: a camera index for a whole number, else the text (a video file or
    a stream URL)."""
    text = str(text).strip()
    return int(text) if text.isdigit() else text


def _stream_frames(source: Source, every: int, max_side):
    """Every ``every``-th frame of a live source as it arrives (frame ``None`` problems when it cannot be opened)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    cap = cv2.VideoCapture(source.image)
    try:
        if not cap.isOpened():
            yield None, None, f"unreadable stream: OpenCV cannot open {source.file}", None
            return
        index = 0
        while cap.grab():
            if index % every == 0:
                ok, frame = cap.retrieve()
                if ok and frame is not None and frame.size:
                    rgb = (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3
                           else np.repeat(frame[..., None], 3, -1))
                    yield index, F.downscale(rgb, max_side), None, (rgb.shape[1], rgb.shape[0])
            index += 1
    finally:
        cap.release()


# -- models ---------------------------------------------------------------------------------------------------
#: how many loaded models :func:`load_model` keeps for ``cache=True`` (least recently used go first)
CACHE_SIZE = 3
_CACHE: dict = {}


def _cache_key(model, weights):
    """A key for a model name and weights: for a weights file its resolved path, size and modification time (a
    file trained again is loaded again)."""
    from . import weights as W

    if weights is None and model in (None, W.DEFAULT_MODEL):  # the default, named or not
        model, weights = W.DEFAULT_MODEL, W.DEFAULT_WEIGHTS
    if weights is not None and W._looks_like_path(weights):
        try:
            path = Path(weights).expanduser().resolve()
            st = path.stat()
            return (model, str(path), st.st_size, st.st_mtime_ns)
        except OSError:
            return None
    return (model, weights)


def clear_cache() -> None:
    """Forget the models :func:`load_model` keeps (``cache=True``)."""
    _CACHE.clear()


def load_model(model=None, weights=None, say: Callable[[str], None] | None = None, *, cache: bool = False):
    """The classifier for ``model`` / ``weights``: a built model passes through; no model and no weights is the
    embedded default (:data:`ferzoo.weights.DEFAULT_MODEL`, printed); weights that are a file without a model
    name use the model their card names; a model without weights is an error unless it is the default model.

    ``cache=True`` keeps the loaded model for the next call with the same name and weights in this process (up to
    :data:`CACHE_SIZE` models; what is printed is printed on the first load only). The model is shared: change
    it (e.g. ``model.tta``) only on a model from :func:`ferzoo.load`."""
    from . import weights as W

    say = say or _say_default
    if model is not None and not isinstance(model, str):
        if weights is not None:
            raise ValueError("weights: give a model name with weights, or a built model without them")
        return model
    key = _cache_key(model, weights) if cache else None
    if key is not None and key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # most recently used last
        return _CACHE[key]
    loaded = _load_model(model, weights, say)
    if key is not None:
        _CACHE[key] = loaded
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
    return loaded


def _load_model(model, weights, say):
    from . import weights as W

    if model is None and weights is None:
        model, weights = W.DEFAULT_MODEL, W.DEFAULT_WEIGHTS
        say(f"model: {model}, weights: {weights} (the default; --model and --weights choose)")
    elif model is None:
        if W._looks_like_path(weights):
            path = W.weights_file(weights, "--weights")
            model = W.read_card(path)["model"]
            say(f"model: {model} (named by the card of {path})")
        else:
            model = W.DEFAULT_MODEL
            say(f"model: {model} (the default; --model chooses)")
    elif weights is None:
        if model != W.DEFAULT_MODEL:
            raise ValueError(f"--weights: model {model!r} needs weights (a tag or a .weights.h5 file); known tags: "
                             f"{sorted(W.known_tags(model))}")
        weights = W.DEFAULT_WEIGHTS
        say(f"weights: {weights} (the default for {model}; --weights chooses)")
    import ferzoo

    loaded = ferzoo.load(model, weights=weights)
    loaded.weights_label = str(weights) if W._looks_like_path(weights) else f"{model}.{weights}"
    return loaded


def weights_label(model) -> str:
    """How notes name a model's weights: ``model.tag``, the file, or the model's name."""
    label = getattr(model, "weights_label", None)
    if label:
        return label
    card = getattr(model, "weights_card", None) or {}
    return f"{model.model_name} ({card['file']})" if card.get("file") else f"{model.model_name} (unsaved weights)"


# -- the pipeline -------------------------------------------------------------------------------------------
@dataclass
class _Item:
    """One image on its way through detection and classification."""

    source: Source
    frame: int | None
    image: np.ndarray
    slot: int
    full_size: tuple[int, int] | None = None  # (width, height) of the file's image; image may be reduced
    faces: list | None = None
    status: str | None = None


class _Pipeline:
    """Reading, detection and cropping shared by :func:`predict_files` and :func:`explain_files`."""

    def __init__(self, model, *, detect: bool, crop, every: int | None, detector, say, progress, flush_size: int):
        self.model = model
        self.detect = bool(detect)
        self.say = say
        self.every = every
        self.progress = progress
        self.flush_size = flush_size
        self.detector = detector
        self.hinted = False
        self.crop = None
        if self.detect:
            if crop is None:
                crop, note = F.crop_for_card(getattr(model, "weights_card", None), weights_label(model))
                if note:
                    say(note)
            elif isinstance(crop, dict):
                crop = F.FaceCrop.from_dict(crop, "crop")
            elif not isinstance(crop, F.FaceCrop):
                raise ValueError(f"crop must be a ferzoo.faces.FaceCrop or a dict, got {type(crop).__name__}")
            self.crop = crop
            if self.detector is None:
                self.detector = F.FaceDetector()
        h, w = model.input_shape_hwc[:2]
        self.model_size = tuple(model.eval_crop) if getattr(model, "eval_crop", None) else (h, w)
        self.aspect = w / h

    def run(self, sources: Sequence[Source]) -> Iterator[tuple[list[_Item], list[tuple[int, str]]]]:
        """Batches ``(items, problems)``: images with their faces found (``item.faces``: list of
        ``(Face, model crop)``) or their no-face / too-small status, and ``(slot, status)`` of failed inputs."""
        every = self.every
        if every is None and any(s.kind == "video" for s in sources):
            every = DEFAULT_EVERY
            self.say(f"video: every {every}th frame is read (the default; --every chooses)")
        every = every or DEFAULT_EVERY
        bar = self._bar(sources)
        slot = 0
        pending: list[_Item] = []
        problems: list[tuple[int, str]] = []
        try:
            for source in sources:
                for frame, image, problem, full in iter_frames(source, every):
                    if problem is not None:
                        problems.append((slot, (source, frame, problem)))
                    else:
                        pending.append(_Item(source, frame, image, slot, full))
                    slot += 1
                    if len(pending) >= self.flush_size:
                        yield self._process(pending), problems
                        pending, problems = [], []
                if bar is not None:
                    bar.update(1)
            if pending or problems:
                yield self._process(pending), problems
        finally:
            if bar is not None:
                bar.close()

    def _bar(self, sources):
        if self.progress is False:
            return None
        if self.progress is None and len(sources) < 2 and not any(s.kind == "video" for s in sources):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=len(sources), unit="input", desc=f"ferzoo {self.model.model_name}", file=sys.stderr,
                    leave=False, disable=None if self.progress is None else not self.progress)

    def _process(self, items: list[_Item]) -> list[_Item]:
        to_detect = []
        for item in items:
            h, w = item.image.shape[:2]
            least = F.MIN_DETECT_SIDE if self.detect else F.MIN_FACE_SIDE
            if min(h, w) < least:
                item.status = (f"too small: {w}x{h} pixels (at least {least}x{least} "
                               f"{'to look for a face' if self.detect else 'for a face crop'})")
            elif F.is_blank(item.image):
                item.status = BLANK
            elif self.detect:
                to_detect.append(item)
            else:
                item.faces = [(F.whole_image_face(item.image), item.image)]
        if to_detect:
            found = self.detector.detect([item.image for item in to_detect])
            for item, faces in zip(to_detect, found):
                if not faces:
                    item.status = NO_FACE
                    if max(item.image.shape[:2]) <= SMALL_SIDE and not self.hinted:
                        self.hinted = True
                        self.say(f"{item.source.file}: no face found in a {item.image.shape[1]}x"
                                 f"{item.image.shape[0]} image; images this small are usually already cropped "
                                 f"faces: --no-detect classifies them as they are")
                    continue
                item.faces = [(face, F.align_crop(item.image, face, self.crop, self.model_size))
                              for face in F.reading_order(faces)]
        return items

    def display_crop(self, item: _Item, face, size: int = EXPLAIN_SIZE) -> np.ndarray:
        """A colour picture of what the model sees of ``face``, ``size`` px high."""
        shape = (size, max(1, round(size * self.aspect)))
        if self.detect:
            return F.align_crop(item.image, face, self.crop, shape)
        import cv2

        return cv2.resize(item.image, shape[::-1], interpolation=cv2.INTER_AREA if
                          min(item.image.shape[:2]) > size else cv2.INTER_LINEAR)


def _classify(model, crops: list[np.ndarray], batch_size: int) -> np.ndarray:
    import keras

    probs = []
    for start in range(0, len(crops), batch_size):
        batch = model.preprocess(list(crops[start:start + batch_size]))
        probs.append(np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(batch)), np.float64))
    return np.concatenate(probs) if probs else np.zeros((0, model.num_classes))


def _record(source: Source, frame, status, *, face=None, box=None, cls=None, probs=None, confidence=None) -> dict:
    return {"file": source.file, "frame": frame, "face": face, "box": box, "class": cls, "probabilities": probs,
            "status": status, "face_confidence": confidence}


def predict_files(paths: Iterable[str | os.PathLike] | str | os.PathLike, model=None, weights=None, *,
                  detect: bool = True, every: int | None = None, output: str | os.PathLike | None = None,
                  annotate: str | os.PathLike | None = None, crop=None, batch_size: int = 64,
                  detector: F.FaceDetector | None = None, progress: bool | None = None,
                  say: Callable[[str], None] | None = None, cache: bool = False) -> list[dict]:
    """Classify every face in photos, folders (recursively), videos and images in memory; returns the records
    (module doc).

    ``paths``: paths, numpy arrays (H x W gray, H x W x 3 RGB, H x W x 4 RGBA; values 0..255) or PIL images, one
    or a list; an image in memory is reported as ``file`` ``"<image N>"``, N its place in the list.
    ``model`` / ``weights``: a model name and a tag or file (no model and no weights: the embedded default, see
    :func:`load_model`; ``cache=True`` keeps it loaded for the next call), or a built model. ``detect=False``
    takes each image as an already cropped face (as in FER-2013 or CK+48). ``every``: read every N-th video
    frame (default :data:`DEFAULT_EVERY`, printed). ``output``: also write the records as ``.json`` (a list) or
    ``.csv`` (one column per class probability), atomically. ``annotate``: a folder to write each photo into as
    a PNG with boxes and labels drawn, and each video as a video (its container where OpenCV can write it, else
    MP4) whose every frame shows the labels of the last sampled frame. ``crop``: a
    :class:`ferzoo.faces.FaceCrop` (or dict) instead of the card's. ``progress``: ``None`` shows a bar on a
    terminal for several inputs or a video; ``False`` never. ``say`` receives the printed notes."""
    say = say or _say_default
    _check_int("every", every)
    _check_int("batch_size", batch_size)
    out_path = _check_output(output)
    paths = as_input_list(paths)
    if not paths:
        raise ValueError("give at least one photo, folder or video")
    model = load_model(model, weights, say, cache=cache)
    sources = expand_inputs(paths, say)
    pipe = _Pipeline(model, detect=detect, crop=crop, every=every, detector=detector, say=say, progress=progress,
                     flush_size=max(8, detector.batch_size if detector else 8))
    annotate_dir = Path(annotate) if annotate is not None else None
    names = _Names()
    slots: dict[int, list[dict]] = {}
    video_marks: dict[int, dict[int, list[dict]]] = {}  # id(source) -> frame -> marks (in the file's pixels)
    for items, problems in pipe.run(sources):
        for slot, (source, frame, status) in problems:
            slots[slot] = [_record(source, frame, status)]
        slots.update(_classify_items(items, model, pipe, batch_size))
        if annotate_dir is None:
            continue
        for item in items:
            if item.source.kind == "video":
                video_marks.setdefault(id(item.source), {})[item.frame] = _marks(item, slots[item.slot], pipe,
                                                                                 in_file=True)
            elif item.faces or not failed(item.status or NO_FACE):
                _annotate(item, slots[item.slot], pipe, annotate_dir, names)
    if annotate_dir is not None:
        for source in sources:
            if id(source) in video_marks:
                suffix = source.path.suffix.lower()
                stem = annotate_dir / names.get(source.name, None, suffix)[: -len(suffix) or None]
                target = write_annotated_video(source.path, video_marks[id(source)], stem, say=say)
                if target is None:
                    say(f"{source.file}: OpenCV could not write an annotated video")
                else:
                    names.used.add(str(target.relative_to(annotate_dir)))
    records = [r for slot in sorted(slots) for r in slots[slot]]
    if out_path is not None:
        write_records(records, out_path, model.class_names)
    return records


def _classify_items(items: list[_Item], model, pipe: _Pipeline, batch_size: int) -> dict[int, list[dict]]:
    """The records of a batch of images from :meth:`_Pipeline.run`, by slot: one per face found (numbered in
    reading order), or one saying why there is none."""
    crops, owners = [], []
    for item in items:
        for k, (face, crop_image) in enumerate(item.faces or []):
            crops.append(crop_image)
            owners.append((item, k, face))
    probs = _classify(model, crops, batch_size)
    slots = {item.slot: [] if item.faces else [_record(item.source, item.frame, item.status or NO_FACE)]
             for item in items}
    for (item, k, face), p in zip(owners, probs):
        j = int(np.argmax(p))
        slots[item.slot].append(_record(
            item.source, item.frame, OK, face=k, box=_box_in_file(item, face), cls=model.class_names[j],
            probs={n: round(float(v), 6) for n, v in zip(model.class_names, p)},
            confidence=round(float(face.confidence), 6) if pipe.detect else None))
    return slots


def detect(images, model=None, weights=None, **options) -> list[dict]:
    """Classify the faces in images in memory (numpy arrays or PIL images, one or a list, or a 4-D batch): the
    records of :func:`predict_files`, ``file`` being ``"<image N>"``. The model (the default when none is named)
    stays loaded for the next call in this process (``cache=False`` loads it afresh)."""
    inputs = as_input_list(images)
    bad = [i for i, im in enumerate(inputs) if not is_image_object(im)]
    if bad:
        raise ValueError(f"images: item {bad[0]} is a {type(inputs[bad[0]]).__name__}, not a numpy array or PIL "
                         f"image (ferzoo.predict_files reads files)")
    options.setdefault("cache", True)
    options.setdefault("progress", False)
    return predict_files(inputs, model=model, weights=weights, **options)


def stream(source, model=None, weights=None, *, detect: bool = True, every: int | None = None, crop=None,
           detector: F.FaceDetector | None = None, say: Callable[[str], None] | None = None,
           cache: bool = False) -> Iterator[dict]:
    """Records (as :func:`predict_files`) of every ``every``-th frame of a live source as the frames arrive: a
    camera index (``0`` or ``"0"``), a video file read from start to end, or a stream URL that OpenCV opens. One
    record per face, or one saying there is none, per sampled frame; ``file`` is the source as given. Ends with
    the stream; a source OpenCV cannot open gives one record with the status ``"unreadable stream: ..."``."""
    say = say or _say_default
    _check_int("every", every)
    text = str(source)
    target = source if isinstance(source, int) else stream_source(text)
    model = load_model(model, weights, say, cache=cache)
    if every is None:
        every = DEFAULT_EVERY
        say(f"stream: every {every}th frame is read (the default; --every chooses)")
    src = Source(text, None, "stream", "stream", image=target)
    pipe = _Pipeline(model, detect=detect, crop=crop, every=every, detector=detector, say=say, progress=False,
                     flush_size=1)
    for items, problems in pipe.run([src]):
        for _, (s, frame, status) in problems:
            yield _record(s, frame, status)
        for item in items:
            yield from _classify_items([item], model, pipe, 64)[item.slot]


def _box_in_file(item: _Item, face) -> list[int]:
    """The face's box in pixels of the file's (upright) image: photos read reduced are scaled back."""
    h, w = item.image.shape[:2]
    fw, fh = item.full_size or (w, h)
    return face.scaled(fw / w).clipped_box(fw, fh)


def _check_int(name: str, value, minimum: int = 1) -> None:
    if value is None:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_output(output) -> Path | None:
    if output is None:
        return None
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"--output {path}: the file must end in {' or '.join(OUTPUT_FORMATS)}")
    if path.is_dir():
        raise ValueError(f"--output {path}: is a folder; give a file ending in {' or '.join(OUTPUT_FORMATS)}")
    return path


def csv_columns(class_names: Sequence[str]) -> list[str]:
    """The CSV header: the record's fields, ``probabilities`` as one ``p_<class>`` column per class."""
    return ["file", "frame", "face", "box", "class"] + [f"p_{n}" for n in class_names] + ["status", "face_confidence"]


def write_records(records: Sequence[dict], path: str | os.PathLike, class_names: Sequence[str]) -> Path:
    """Write ``records`` to ``path`` (``.json``: a list of the records; ``.csv``: :func:`csv_columns`), atomically."""
    from .weights import atomic_path

    path = _check_output(path)
    if path.suffix.lower() == ".json":  # one record a line
        text = "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n" if records else "[]\n"
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(csv_columns(class_names))
        for r in records:
            probs = r.get("probabilities") or {}
            box = r.get("box")
            writer.writerow([r["file"], _blank(r.get("frame")), _blank(r.get("face")),
                             " ".join(str(v) for v in box) if box else "", r.get("class") or ""]
                            + [_blank(probs.get(n)) for n in class_names]
                            + [r["status"], _blank(r.get("face_confidence"))])
        text = buf.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _blank(value) -> str:
    return "" if value is None else str(value)


def read_records_csv(path: str | os.PathLike) -> list[dict]:
    """Read a CSV written by :func:`write_records` back into records (probabilities as a dict)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        probs = {k[2:]: float(v) for k, v in row.items() if k.startswith("p_") and v != ""}
        out.append({"file": row["file"], "frame": int(row["frame"]) if row["frame"] else None,
                    "face": int(row["face"]) if row["face"] else None,
                    "box": [int(v) for v in row["box"].split()] if row["box"] else None,
                    "class": row["class"] or None, "probabilities": probs or None, "status": row["status"],
                    "face_confidence": float(row["face_confidence"]) if row["face_confidence"] else None})
    return out


# -- drawing ------------------------------------------------------------------------------------------------
class _Names:
    """Unique file names for what is written about each input."""

    def __init__(self):
        self.used: set[str] = set()

    def get(self, name: str, frame: int | None, suffix: str) -> str:
        stem = str(Path(name).with_suffix("")) + (f"_frame{frame:06d}" if frame is not None else "")
        candidate, n = stem + suffix, 2
        while candidate in self.used:
            candidate, n = f"{stem}_{n}{suffix}", n + 1
        self.used.add(candidate)
        return candidate


def _font(size: int):
    from .plots import default_font

    return default_font(size)


def _marks(item: _Item, records: list[dict], pipe: _Pipeline, in_file: bool = False) -> list[dict]:
    """What :func:`ferzoo.plots.draw_faces` draws for an image's records: box, label, face number and crop
    polygon, in the pixels of the picture read (or of the file, ``in_file``)."""
    h, w = item.image.shape[:2]
    fw, fh = item.full_size or (w, h)
    factor = fw / w if in_file else 1.0
    marks = []
    for (face, _), record in zip(item.faces or [], records):
        p = record["probabilities"][record["class"]]
        box = record["box"] if in_file else face.clipped_box(w, h)
        corners = None
        if pipe.detect:
            corners = [(x * factor, y * factor) for x, y in F.crop_corners(face, pipe.crop, pipe.aspect)]
        marks.append({"box": box, "text": f"{record['class']} {p:.2f}", "face": record["face"],
                      "corners": corners})
    return marks


def _annotate(item: _Item, records: list[dict], pipe: _Pipeline, folder: Path, names: _Names) -> None:
    from .plots import draw_faces

    drawn = draw_faces(item.image, _marks(item, records, pipe), note=None if item.faces else item.status or NO_FACE)
    _save_png(drawn, folder / names.get(item.source.name, item.frame, ".png"))


#: the codecs tried for an annotated video, by the input's ending (the first OpenCV opens is used); any other
#: ending, or one where none opens, is written as MP4 (``mp4v``)
VIDEO_CODECS = {".avi": ("MJPG", "XVID"), ".mp4": ("mp4v",), ".m4v": ("mp4v",), ".mov": ("mp4v",),
                ".mkv": ("MJPG", "XVID"), ".webm": ("VP80", "VP90"), ".mpg": ("MPG1",), ".mpeg": ("MPG1",),
                ".wmv": ("WMV2",), ".flv": ("FLV1",), ".3gp": ("mp4v",), ".ogv": ("THEO",)}


class _quiet_stderr:
    """File descriptor 2 sent to /dev/null for a moment (what C libraries print there; Python's own is flushed)."""

    def __enter__(self):
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            self.saved = None

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)


def _open_writer(stem: Path, suffix: str, fps: float, size: tuple[int, int]):
    """A ``cv2.VideoWriter`` on a temporary file ``stem + suffix``-like, its path and the suffix used: the input's
    container where OpenCV can write it, else MP4."""
    import cv2

    tried = [(suffix, c) for c in VIDEO_CODECS.get(suffix, ())]
    if suffix != ".mp4":
        tried.append((".mp4", "mp4v"))
    stem.parent.mkdir(parents=True, exist_ok=True)
    for ext, codec in tried:
        tmp = stem.parent / f".{stem.name}.partial{os.getpid()}{ext}"
        with _quiet_stderr():  # FFmpeg prints to the process's stderr when a codec does not fit a container
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer, tmp, ext
        writer.release()
        tmp.unlink(missing_ok=True)
    return None, None, None


def write_annotated_video(path: Path, marks: dict[int, list[dict]], stem: Path,
                          say: Callable[[str], None] | None = None) -> Path | None:
    """Read the video ``path`` again and write every frame with the boxes and labels of the last sampled frame at
    or before it (``marks``: frame index -> :func:`_marks` in the file's pixels) to ``stem`` plus the input's
    ending (or ``.mp4`` where OpenCV cannot write that container), atomically. Returns the path, or ``None``."""
    import cv2

    from .plots import draw_faces

    cap = cv2.VideoCapture(str(path))
    writer = tmp = None
    try:
        if not cap.isOpened():
            return None
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else 25.0
        sampled = sorted(marks)
        current, nxt, index, ext = None, 0, 0, None
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            if writer is None:
                writer, tmp, ext = _open_writer(stem, path.suffix.lower(), fps, (frame.shape[1], frame.shape[0]))
                if writer is None:
                    return None
            while nxt < len(sampled) and sampled[nxt] <= index:
                current, nxt = marks[sampled[nxt]], nxt + 1
            if current:
                frame = np.ascontiguousarray(draw_faces(frame[..., ::-1], current)[..., ::-1])
            writer.write(frame)
            index += 1
        if writer is None:
            return None
        writer.release()
        writer = None
        target = stem.with_name(stem.name + ext)
        if ext != path.suffix.lower() and say is not None:
            say(f"{path}: OpenCV cannot write {path.suffix or 'this container'}; the annotated video is {target.name}")
        os.replace(tmp, target)
        tmp = None
        return target
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# -- explanations ---------------------------------------------------------------------------------------------
def explain_files(paths, model=None, weights=None, *, output: str | os.PathLike, methods: Sequence[str] | None = None,
                  detect: bool = True, every: int | None = None, crop=None, size: int = EXPLAIN_SIZE,
                  detector: F.FaceDetector | None = None, progress: bool | None = None,
                  say: Callable[[str], None] | None = None) -> list[dict]:
    """Per face, a ``size``-px picture per method of where the model looks, into the folder ``output``: the face
    as the model sees it (gray for a gray model) with the map over it, the predicted class, a line saying what
    the map shows, and the colour scale. ``methods`` default to one that localises and the model's own (paper)
    method (:func:`ferzoo.explain.default_methods`); with several, a picture with all of them side by side too.
    Returns the predict records, each with ``explanations``: ``{method: file}``, and ``explanation``: the side by
    side picture (several methods) or the one picture."""
    say = say or _say_default
    _check_int("size", size, 64)
    paths = as_input_list(paths)
    if not paths:
        raise ValueError("give at least one photo, folder or video")
    model = load_model(model, weights, say)
    methods = _explain_methods(model, methods, say)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = expand_inputs(paths, say)
    pipe = _Pipeline(model, detect=detect, crop=crop, every=every, detector=detector, say=say, progress=progress,
                     flush_size=8)
    names = _Names()
    slots: dict[int, list[dict]] = {}
    for items, problems in pipe.run(sources):
        for slot, (source, frame, status) in problems:
            slots[slot] = [_record(source, frame, status)]
        for item in items:
            if not item.faces:
                slots[item.slot] = [_record(item.source, item.frame, item.status or NO_FACE)]
                continue
            slots[item.slot] = _explain_item(model, pipe, item, methods, out_dir=out_dir,
                                             base=names.get(item.source.name, item.frame, ""), size=size,
                                             detect=detect, say=say)
    return [r for slot in sorted(slots) for r in slots[slot]]


def _explain_methods(model, methods: Sequence[str] | None, say) -> list[str]:
    """The methods asked for, checked against the model's; by default one that localises and the model's own."""
    from .explain import default_methods, list_explainers

    known = list_explainers(model.model_name)
    if methods is None:
        methods = default_methods(model.model_name)
        own = model.spec.default_explainer
        what = ("the model's own, which localises" if methods == [own] else
                f"{methods[0]} localises here; {own} is the model's own" if len(methods) > 1 else "")
        say(f"methods: {', '.join(methods)} ({what}; --method chooses from {', '.join(known)})")
    methods = list(methods)
    bad = [m for m in methods if m not in known]
    if bad:
        raise ValueError(f"--method {bad[0]!r}: model {model.model_name!r} has the methods {', '.join(known)}")
    return methods


def _explain_item(model, pipe, item, methods: list[str], *, out_dir: Path, base: str, size: int, detect: bool,
                  say) -> list[dict]:
    """The records of one photo or frame's faces, each face's pictures written (one per method, and the methods
    side by side when there are several)."""
    from .explain import caption

    crops = [c for _, c in item.faces]
    probs = _classify(model, crops, 64)
    classes = probs.argmax(-1)
    maps = {m: np.asarray(model.explain(crops, method=m, class_index=classes)) for m in methods}
    rows = []
    for k, (face, _) in enumerate(item.faces):
        j = int(classes[k])
        rec = _record(item.source, item.frame, OK, face=k, box=_box_in_file(item, face),
                      cls=model.class_names[j],
                      probs={n: round(float(v), 6) for n, v in zip(model.class_names, probs[k])},
                      confidence=round(float(face.confidence), 6) if detect else None)
        picture = model_view(pipe.display_crop(item, face, size), model.input_shape_hwc[-1])
        label = f"{model.class_names[j]} {probs[k, j]:.2f}"
        captions = {m: caption(model.model_name, m, model.class_names[j]) for m in methods}
        lines = max(len(wrap_text(c, _panel_width(picture, maps[m][k]), size)) for m, c in captions.items())
        rec["explanations"], panels = {}, []
        for m in methods:
            if not np.any(maps[m][k] > 0):
                say(f"{item.source.file}: face {k}: the {m} map is zero everywhere (no part of the face "
                    f"raised the {model.class_names[j]} score at the layer it maps); its picture says so")
            panels.append(explain_panel(picture, maps[m][k], label, m, captions[m], caption_lines=lines))
            rec["explanations"][m] = str(_save_png(panels[-1], out_dir / f"{base}_face{k}_{_safe(m)}.png"))
        rec["explanation"] = rec["explanations"][methods[0]]
        if len(panels) > 1:
            gap = np.zeros((panels[0].shape[0], max(4, size // 32), 3), np.uint8)
            sheet = np.concatenate([x for pnl in panels for x in (pnl, gap)][:-1], axis=1)
            rec["explanation"] = str(_save_png(sheet, out_dir / f"{base}_face{k}.png"))
        rows.append(rec)
    return rows


def _save_png(pixels: np.ndarray, target: Path) -> Path:
    from PIL import Image

    from .weights import atomic_path

    with atomic_path(target, suffix=".png") as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return target


def _safe(method: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "pp" if c == "+" else "_" for c in method).replace("pppp", "pp")


def model_view(picture: np.ndarray, channels: int) -> np.ndarray:
    """``picture`` (RGB) as a model with ``channels`` input channels sees it: gray (luma) for one channel."""
    if channels != 1:
        return picture
    import cv2

    return np.repeat(cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)


def _heat_tiles(picture: np.ndarray, maps: np.ndarray, alpha: float = 0.6) -> list[np.ndarray]:
    import cv2
    from matplotlib import colormaps

    h, w = picture.shape[:2]
    cmap = colormaps["jet"]
    tiles = []
    for m in maps:
        up = cv2.resize(np.clip(m, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        tiles.append(_blend(picture, up, cmap, alpha))
    return tiles


def _blend(picture: np.ndarray, values: np.ndarray, cmap, alpha: float = 0.6) -> np.ndarray:
    """The colour of ``values`` (in [0, 1]) over ``picture``: cool regions stay see-through, hot ones show the map."""
    colour = (cmap(values)[..., :3] * 255.0).astype(np.float32)
    weight = (alpha * (0.25 + 0.75 * values))[..., None]
    return np.clip((1 - weight) * picture.astype(np.float32) + weight * colour, 0, 255).astype(np.uint8)


def _panel_width(picture: np.ndarray, heat) -> int:
    heat = np.asarray(heat)
    return picture.shape[1] * (1 if heat.ndim == 2 else heat.shape[0])


def _caption_font(size: int):
    return _font(max(10, size // 22))


def wrap_text(text: str, width: int, size: int = EXPLAIN_SIZE) -> list[str]:
    """``text`` broken at spaces into lines that fit ``width`` px in the caption font of a ``size``-px picture."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _caption_font(size)
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(lines[-1] + " " + word, font=font) <= width - 8:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def explain_panel(picture: np.ndarray, heat: np.ndarray, label: str, method: str, caption: str,
                  caption_lines: int | None = None, alpha: float = 0.6) -> np.ndarray:
    """One method's picture: a title bar (``label`` and ``method``, see :func:`panel_title`), ``caption`` (what the
    map shows, wrapped; ``caption_lines`` pads it to that many lines), ``picture`` with ``heat`` over it (several
    maps side by side) and the colour scale (0: least, 1: the map's own maximum)."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    heat = np.asarray(heat, np.float32)
    maps = heat[None] if heat.ndim == 2 else heat
    h = picture.shape[0]
    body = np.concatenate(_heat_tiles(picture, maps, alpha), axis=1)
    width = body.shape[1]
    title_font, small = _font(max(12, h // 14)), _caption_font(h)
    lines = wrap_text(caption, width, h)
    lines += [""] * max(0, (caption_lines or 0) - len(lines))
    bar_h = max(18, h // 9)
    line_h = max(12, h // 20)
    top = bar_h + len(lines) * line_h + 4
    scale_h = max(8, h // 24)
    bottom = 4 + scale_h + 2 + line_h
    canvas = Image.new("RGB", (width, top + h + bottom), (0, 0, 0))
    canvas.paste(Image.fromarray(body), (0, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, max(1, bar_h // 8)), panel_title(label, method, maps), font=title_font, fill=(255, 255, 255))
    for i, line in enumerate(lines):
        draw.text((4, bar_h + i * line_h), line, font=small, fill=(210, 210, 210))
    ramp = np.tile(np.linspace(0.0, 1.0, max(2, width - 8), dtype=np.float32)[None], (scale_h, 1))
    strip = _blend(np.full(ramp.shape + (3,), 128, np.uint8), ramp, colormaps["jet"], alpha)
    y = top + h + 4
    canvas.paste(Image.fromarray(strip), (4, y))
    y += scale_h + 2
    draw.text((4, y), "0 low", font=small, fill=(210, 210, 210))
    right = "high 1 (scaled to the map's maximum)" if width >= 3 * h // 2 else "high 1"
    draw.text((width - 4 - draw.textlength(right, font=small), y), right, font=small, fill=(210, 210, 210))
    return np.asarray(canvas)


def overlay_panel(picture: np.ndarray, heat: np.ndarray, label: str, method: str, alpha: float = 0.6) -> np.ndarray:
    """``picture`` (H, W, 3) with ``heat`` ((h, w) or (K, h, w) in [0, 1], upsampled to it) drawn over it in a
    colour map, and a title bar with ``label`` and ``method``. Several maps (K) are laid side by side."""
    from PIL import Image, ImageDraw

    heat = np.asarray(heat, np.float32)
    maps = heat[None] if heat.ndim == 2 else heat
    h = picture.shape[0]
    body = np.concatenate(_heat_tiles(picture, maps, alpha), axis=1)
    font = _font(max(12, h // 14))
    bar_h = max(18, h // 9)
    canvas = Image.new("RGB", (body.shape[1], h + bar_h), (0, 0, 0))
    canvas.paste(Image.fromarray(body), (0, bar_h))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, max(1, bar_h // 8)), panel_title(label, method, maps), font=font, fill=(255, 255, 255))
    return np.asarray(canvas)


def panel_title(label: str, method: str, maps: np.ndarray) -> str:
    """The title bar's text: the label, the method, the number of maps, and a warning for an all-zero map (e.g.
    Grad-CAM++ on a tiny last feature map where no channel raises the class score: no colour is not "nowhere")."""
    maps = np.asarray(maps)
    maps = maps[None] if maps.ndim == 2 else maps
    text = f"{label} | {method}" + (f" ({len(maps)} maps)" if len(maps) > 1 else "")
    zero = [i for i, m in enumerate(maps) if not np.any(m > 0)]
    if zero:
        text += " | map all zero" if len(maps) == 1 else f" | maps {', '.join(str(i + 1) for i in zero)} all zero"
    return text
