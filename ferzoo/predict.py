"""Photos, folders and videos in, one record per face out: :func:`predict_files` (``ferzoo predict``) and
:func:`explain_files` (``ferzoo explain``).

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
    kind: str                   # "image", "video" or "problem"
    name: str                   # relative name for files written about it (annotations, explanations)
    status: str | None = None


def expand_inputs(paths: Iterable[str | os.PathLike], say: Callable[[str], None] | None = None) -> list[Source]:
    """Files, folders (recursively: files with an image or video ending, hidden ones left out) and videos, in
    the order given (folders sorted). A folder with nothing to read is one ``"empty folder"`` source."""
    say = say or _say_default
    out: list[Source] = []
    for given in paths:
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


# -- models ---------------------------------------------------------------------------------------------------
def load_model(model=None, weights=None, say: Callable[[str], None] | None = None):
    """The classifier for ``model`` / ``weights``: a built model passes through; no model and no weights is the
    embedded default (:data:`ferzoo.weights.DEFAULT_MODEL`, printed); weights that are a file without a model
    name use the model their card names; a model without weights is an error unless it is the default model."""
    from . import weights as W

    say = say or _say_default
    if model is not None and not isinstance(model, str):
        if weights is not None:
            raise ValueError("weights: give a model name with weights, or a built model without them")
        return model
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
                item.faces = [(face, F.align_crop(item.image, face, self.crop, self.model_size)) for face in faces]
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
                  say: Callable[[str], None] | None = None) -> list[dict]:
    """Classify every face in photos, folders (recursively) and videos; returns the records (module doc).

    ``model`` / ``weights``: a model name and a tag or file (no model and no weights: the embedded default, see
    :func:`load_model`), or a built model. ``detect=False`` takes each image as an already cropped face (as in
    FER-2013 or CK+48). ``every``: read every N-th video frame (default :data:`DEFAULT_EVERY`, printed).
    ``output``: also write the records as ``.json`` (a list) or ``.csv`` (one column per class probability),
    atomically. ``annotate``: a folder to write each photo / sampled frame into with boxes and labels drawn.
    ``crop``: a :class:`ferzoo.faces.FaceCrop` (or dict) instead of the card's. ``progress``: ``None`` shows a
    bar on a terminal for several inputs or a video; ``False`` never. ``say`` receives the printed notes."""
    say = say or _say_default
    _check_int("every", every)
    _check_int("batch_size", batch_size)
    out_path = _check_output(output)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("give at least one photo, folder or video")
    model = load_model(model, weights, say)
    sources = expand_inputs(paths, say)
    pipe = _Pipeline(model, detect=detect, crop=crop, every=every, detector=detector, say=say, progress=progress,
                     flush_size=max(8, detector.batch_size if detector else 8))
    annotate_dir = Path(annotate) if annotate is not None else None
    names = _Names()
    slots: dict[int, list[dict]] = {}
    for items, problems in pipe.run(sources):
        for slot, (source, frame, status) in problems:
            slots[slot] = [_record(source, frame, status)]
        crops, owners = [], []
        for item in items:
            for k, (face, crop_image) in enumerate(item.faces or []):
                crops.append(crop_image)
                owners.append((item, k, face))
        probs = _classify(model, crops, batch_size)
        for item in items:
            slots[item.slot] = [] if item.faces else [_record(item.source, item.frame, item.status or NO_FACE)]
        for (item, k, face), p in zip(owners, probs):
            box = _box_in_file(item, face)
            j = int(np.argmax(p))
            slots[item.slot].append(_record(
                item.source, item.frame, OK, face=k, box=box, cls=model.class_names[j],
                probs={n: round(float(v), 6) for n, v in zip(model.class_names, p)},
                confidence=round(float(face.confidence), 6) if detect else None))
        if annotate_dir is not None:
            for item in items:
                if item.faces or not failed(item.status or NO_FACE):
                    _annotate(item, slots[item.slot], pipe, annotate_dir, names)
    records = [r for slot in sorted(slots) for r in slots[slot]]
    if out_path is not None:
        write_records(records, out_path, model.class_names)
    return records


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
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(draw, xy, text: str, font, fill=(255, 255, 255), background=(0, 0, 0)) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    pad = max(2, (bottom - top) // 6)
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=background)
    draw.text((x, y), text, font=font, fill=fill)


def _annotate(item: _Item, records: list[dict], pipe: _Pipeline, folder: Path, names: _Names) -> None:
    from PIL import Image, ImageDraw

    from .weights import atomic_path

    im = Image.fromarray(item.image)
    draw = ImageDraw.Draw(im)
    h, w = item.image.shape[:2]
    width = max(2, round(max(h, w) / 300))
    font = _font(max(12, round(max(h, w) / 40)))
    colours = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 120, 255)]
    for (face, _), record in zip(item.faces or [], records):
        colour = colours[record["face"] % len(colours)]
        if pipe.detect:
            corners = F.crop_corners(face, pipe.crop, pipe.aspect)
            draw.polygon(corners, outline=(200, 200, 200))
        x, y, bw, bh = face.clipped_box(w, h)  # in the (possibly reduced) picture drawn on
        draw.rectangle((x, y, x + bw, y + bh), outline=colour, width=width)
        p = record["probabilities"][record["class"]]
        text = f"{record['class']} {p:.2f}"
        _, top, _, bottom = draw.textbbox((0, 0), text, font=font)
        ty = y - (bottom - top) - 3 * width if y - (bottom - top) - 3 * width > 0 else y + bh + width
        _label(draw, (x, ty), text, font, background=colour, fill=(0, 0, 0))
    if not item.faces:
        _label(draw, (width * 2, width * 2), item.status or NO_FACE, font)
    target = folder / names.get(item.source.name, item.frame, ".png")
    with atomic_path(target, suffix=".png") as tmp:
        im.save(tmp, format="PNG")


# -- explanations ---------------------------------------------------------------------------------------------
def explain_files(paths, model=None, weights=None, *, output: str | os.PathLike, methods: Sequence[str] | None = None,
                  detect: bool = True, every: int | None = None, crop=None, size: int = EXPLAIN_SIZE,
                  detector: F.FaceDetector | None = None, progress: bool | None = None,
                  say: Callable[[str], None] | None = None) -> list[dict]:
    """Per face, a ``size``-px picture per method of where the model looks, with the predicted class written in
    it, into the folder ``output``. ``methods`` default to the model's own (paper) method and ``gradcam++``.
    Returns the predict records, each with ``explanations``: ``{method: file}``."""
    from PIL import Image

    from .explain import list_explainers
    from .weights import atomic_path

    say = say or _say_default
    _check_int("size", size, 64)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("give at least one photo, folder or video")
    model = load_model(model, weights, say)
    known = list_explainers(model.model_name)
    if methods is None:
        methods = list(dict.fromkeys([model.spec.default_explainer, "gradcam++"]))
        say(f"methods: {', '.join(methods)} (the model's own and Grad-CAM++; --method chooses from {', '.join(known)})")
    methods = list(methods)
    bad = [m for m in methods if m not in known]
    if bad:
        raise ValueError(f"--method {bad[0]!r}: model {model.model_name!r} has the methods {', '.join(known)}")
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
            crops = [c for _, c in item.faces]
            probs = _classify(model, crops, 64)
            classes = probs.argmax(-1)
            maps = {m: np.asarray(model.explain(crops, method=m, class_index=classes)) for m in methods}
            rows = []
            base = names.get(item.source.name, item.frame, "")
            for k, (face, _) in enumerate(item.faces):
                j = int(classes[k])
                rec = _record(item.source, item.frame, OK, face=k, box=_box_in_file(item, face),
                              cls=model.class_names[j],
                              probs={n: round(float(v), 6) for n, v in zip(model.class_names, probs[k])},
                              confidence=round(float(face.confidence), 6) if detect else None)
                picture = pipe.display_crop(item, face, size)
                rec["explanations"] = {}
                for m in methods:
                    if not np.any(maps[m][k] > 0):
                        say(f"{item.source.file}: face {k}: the {m} map is zero everywhere (no part of the face "
                            f"raised the {model.class_names[j]} score at the layer it maps); its picture says so")
                    panel = overlay_panel(picture, maps[m][k], f"{model.class_names[j]} {probs[k, j]:.2f}", m)
                    target = out_dir / f"{base}_face{k}_{_safe(m)}.png"
                    with atomic_path(target, suffix=".png") as tmp:
                        Image.fromarray(panel).save(tmp, format="PNG")
                    rec["explanations"][m] = str(target)
                rows.append(rec)
            slots[item.slot] = rows
    records = [r for slot in sorted(slots) for r in slots[slot]]
    return records


def _safe(method: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "pp" if c == "+" else "_" for c in method).replace("pppp", "pp")


def overlay_panel(picture: np.ndarray, heat: np.ndarray, label: str, method: str, alpha: float = 0.6) -> np.ndarray:
    """``picture`` (H, W, 3) with ``heat`` ((h, w) or (K, h, w) in [0, 1], upsampled to it) drawn over it in a
    colour map, and a title bar with ``label`` and ``method``. Several maps (K) are laid side by side."""
    import cv2
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    heat = np.asarray(heat, np.float32)
    maps = heat[None] if heat.ndim == 2 else heat
    h, w = picture.shape[:2]
    cmap = colormaps["jet"]
    tiles = []
    for m in maps:
        up = cv2.resize(np.clip(m, 0, 1), (w, h), interpolation=cv2.INTER_LINEAR)
        colour = (cmap(up)[..., :3] * 255.0).astype(np.float32)
        weight = (alpha * (0.25 + 0.75 * up))[..., None]  # cool regions stay see-through, hot ones show the map
        tiles.append(np.clip((1 - weight) * picture.astype(np.float32) + weight * colour, 0, 255).astype(np.uint8))
    body = np.concatenate(tiles, axis=1)
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
