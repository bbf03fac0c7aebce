"""From a photo to model inputs: reading any image file safely, finding faces, aligning and cropping them.

* :func:`read_image` turns a file into an RGB ``uint8`` array or raises :class:`InputProblem`, whose ``status``
  says what is wrong with the file (``"empty file"``, ``"not an image"``, ``"unreadable: ..."``, ...). Gray,
  16-bit, palette, RGBA, CMYK and EXIF-rotated images are converted; huge images are decoded at a reduced
  size (JPEG draft mode) or refused with ``"too large: ..."``, never left to Pillow's decompression-bomb error.
* :class:`FaceDetector` finds faces with MTCNN (the ``mtcnn`` package, whose weights ship inside the wheel:
  nothing is downloaded at run time) and returns :class:`Face` objects: box, confidence, five landmarks.
* :class:`FaceCrop` is the crop rule a set of weights expects: a square around the detector's box with a
  margin, rotated so that the eyes are level (or not). A weights card states it as
  ``input_spec.face_crop``; :func:`crop_for_card` reads it, or returns :data:`DEFAULT_CROP` with a note.
* :func:`align_crop` cuts one face out of an image by that rule, at any output size.

TensorFlow is imported only when a detector is first used.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

#: file name endings taken from folders as photos (a file named explicitly is tried whatever its ending)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                              ".pgm", ".pbm", ".pnm", ".jfif", ".ico"})
#: file name endings read as videos (OpenCV); taken from folders too
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp", ".ogv"})

#: the long side, in pixels, of the copy of each photo that is kept for cropping and annotation; larger
#: photos are reduced to it when they are read (JPEG files are decoded at a reduced scale directly)
WORK_MAX_SIDE = 2048
def max_decode_pixels() -> int:
    """Images with more pixels than this are not decoded in full: JPEG files are still read in draft mode
    (1/2 to 1/8 scale), other formats get the status "too large". It is Pillow's own limit, twice its
    ``Image.MAX_IMAGE_PIXELS``, read when a file is read."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return 2 * int(limit) if limit else 2 ** 62


#: the smallest side, in pixels, of an image the detector is run on (MTCNN finds faces of 20 px and more)
MIN_DETECT_SIDE = 20
#: the smallest side of an image taken as an already cropped face (``detect=False``)
MIN_FACE_SIDE = 8


class InputProblem(Exception):
    """A file that yields no image; ``status`` is the record's status (e.g. ``"empty file"``)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


# -- the crop rule -------------------------------------------------------------------------------------------
ALIGNMENTS = ("eyes", "none")
DETECTORS = ("mtcnn",)
MARGIN_RANGE = (-0.3, 1.0)


@dataclass(frozen=True)
class FaceCrop:
    """How a face is cut out of a photo for a set of weights (``input_spec.face_crop`` of its card).

    ``margin``    the crop is a square centred on the detector's box, whose side is the box's longer side
                  times ``1 + 2 * margin`` (0: the longer side itself; 0.25: a quarter of it added on every
                  side). A model whose input is not square keeps its aspect ratio, the height being that side.
    ``align``     ``"eyes"``: the square is rotated with the line through the eyes, so the eyes are level in
                  the crop; ``"none"``: the square is upright, as the photo is.
    ``detector``  whose boxes ``margin`` refers to; ``"mtcnn"`` (boxes of other detectors are not the same size).
    """

    margin: float = 0.0
    align: str = "eyes"
    detector: str = "mtcnn"

    def __post_init__(self):
        lo, hi = MARGIN_RANGE
        if not isinstance(self.margin, (int, float)) or isinstance(self.margin, bool) or not lo <= self.margin <= hi:
            raise ValueError(f"face_crop.margin must be a number in [{lo}, {hi}], got {self.margin!r}")
        if self.align not in ALIGNMENTS:
            raise ValueError(f"face_crop.align must be one of {', '.join(ALIGNMENTS)}; got {self.align!r}")
        if self.detector not in DETECTORS:
            raise ValueError(f"face_crop.detector must be one of {', '.join(DETECTORS)}; got {self.detector!r}")

    def to_dict(self) -> dict:
        return {"detector": self.detector, "margin": float(self.margin), "align": self.align}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "face_crop") -> "FaceCrop":
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be an object with keys detector, margin, align; got {data!r}")
        unknown = sorted(set(data) - {"detector", "margin", "align"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; known: detector, margin, align")
        try:
            return cls(**{k: data[k] for k in ("margin", "align", "detector") if k in data})
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def describe(self) -> str:
        return (f"{self.detector} box, margin {self.margin:g}, "
                f"{'eyes level' if self.align == 'eyes' else 'not rotated'}")


#: The crop of FER-2013's registered 48x48 faces. Measured here on 487 PublicTest images (padded so that no box
#: is clipped, upsampled 4x): MTCNN's box has a longer side of 49.8 px (median; 48 / side = 0.965) and is
#: centred on the image (23.5, 24.3); the eyes are 4.8 degrees from level (median). So: a square of the box's
#: longer side (margin 0) on the box centre, eyes level.
DEFAULT_CROP = FaceCrop(margin=0.0, align="eyes", detector="mtcnn")
DEFAULT_CROP_NAME = "FER-2013-style registered crop"


def crop_for_card(card: Mapping | None, label: str = "the weights") -> tuple[FaceCrop, str | None]:
    """The crop rule of a weights card (``input_spec.face_crop``, else a top-level ``face_crop``), or
    :data:`DEFAULT_CROP` and a note saying that the default stands in."""
    card = card or {}
    spec = card.get("input_spec") if isinstance(card.get("input_spec"), Mapping) else {}
    for where, data in (("input_spec.face_crop", spec.get("face_crop")), ("face_crop", card.get("face_crop"))):
        if data is not None:
            return FaceCrop.from_dict(data, f"{label}: card field {where}"), None
    note = (f"face crop: {DEFAULT_CROP.describe()} (the default, for {DEFAULT_CROP_NAME}s; the card of {label} "
            f"has no input_spec.face_crop)")
    alignment = spec.get("face_alignment")
    if alignment:
        note += f"; the card says the weights were trained on: {alignment}"
    return DEFAULT_CROP, note


def dataset_framing(dataset: str) -> dict:
    """How ``dataset``'s faces are framed, as the card's ``input_spec`` fields: ``face_alignment`` in words (the
    reader's ``DatasetSpec.face_alignment``, else a line naming the data set: the model's own text describes
    the paper's data, not what these weights saw) and ``face_crop``, the checked crop rule
    (``DatasetSpec.face_crop``) where the reader knows one."""
    from .registry import get_registry

    spec = get_registry().dataset(dataset)
    out = {"face_alignment": spec.face_alignment or f"the images of the {dataset!r} data set, as its reader gives them"}
    if spec.face_crop is not None:
        out["face_crop"] = FaceCrop.from_dict(spec.face_crop, f"data set {dataset!r}: face_crop").to_dict()
    return out


# -- reading images ------------------------------------------------------------------------------------------
def check_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` if it names a non-empty readable file; else :class:`InputProblem`."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise InputProblem("broken link")
    if not p.exists():
        raise InputProblem("not found")
    if p.is_dir():
        raise InputProblem("is a folder")
    if not p.is_file():
        raise InputProblem("not a regular file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputProblem(f"unreadable: {exc.strerror or exc}") from None
    if size == 0:
        raise InputProblem("empty file")
    if not os.access(p, os.R_OK):
        raise InputProblem("unreadable: permission denied")
    return p


def read_image(path: str | os.PathLike, max_side: int | None | str = "default") -> np.ndarray:
    """The image in ``path`` as an ``(H, W, 3)`` RGB ``uint8`` array, upright (EXIF orientation applied),
    reduced so that its long side is at most ``max_side`` (``"default"``: :data:`WORK_MAX_SIDE`; ``None``: full
    size). Raises
    :class:`InputProblem` with the record's status."""
    return read_image_sized(path, max_side)[0]


def read_image_sized(path: str | os.PathLike, max_side: int | None | str = "default"
                     ) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` and the ``(width, height)`` of the full upright image (boxes found in the reduced
    array scale to the file's pixels by ``width / array width``)."""
    from PIL import Image, UnidentifiedImageError

    if max_side == "default":
        max_side = WORK_MAX_SIDE

    p = check_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(p)
            except Image.DecompressionBombError:
                im = _open_huge_jpeg(p)
            with im:
                full = im.size
                try:
                    if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that swap width and height
                        full = full[::-1]
                except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
                    pass
                im = _reduce_on_open(im, max_side)
                im.load()
                array = to_rgb8(im)
    except InputProblem:
        raise
    except UnidentifiedImageError:
        raise InputProblem("not an image") from None
    except PermissionError:
        raise InputProblem("unreadable: permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower():
            raise InputProblem(f"unreadable: truncated file ({text})") from None
        raise InputProblem(f"unreadable: {text}") from None
    return downscale(array, max_side), (int(full[0]), int(full[1]))


def _open_huge_jpeg(p: Path):
    """A JPEG beyond Pillow's pixel limit is still readable at 1/8 scale (draft mode decodes it so); any other
    format beyond the limit is refused."""
    from PIL import JpegImagePlugin

    with open(p, "rb") as fh:
        magic = fh.read(3)
    if magic != b"\xff\xd8\xff":
        raise InputProblem(_too_large_status(p))
    im = JpegImagePlugin.JpegImageFile(str(p))  # the constructor reads the header only
    return im


def _too_large_status(p: Path, size=None) -> str:
    if size is None:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    with Image.open(p) as im:
                        size = im.size
                finally:
                    Image.MAX_IMAGE_PIXELS = limit
        except Exception:  # noqa: BLE001 - the size is only for the message
            size = None
    what = f"{size[0]}x{size[1]} pixels" if size else "the image"
    return f"too large: {what} (more than {max_decode_pixels():,} pixels, and not a JPEG that can be decoded reduced)"


def _reduce_on_open(im, max_side: int | None):
    """Ask the decoder for a reduced image when it can (JPEG draft: 1/2, 1/4, 1/8 scale) and refuse images too
    large to decode in full."""
    w, h = im.size
    if w < 1 or h < 1:
        raise InputProblem("empty image: 0 pixels")
    if getattr(im, "format", None) == "JPEG" and max_side and max(w, h) > 2 * max_side:
        scale = max(w, h) / max_side
        im.draft(im.mode if im.mode in ("RGB", "L") else None, (math.ceil(w / scale), math.ceil(h / scale)))
        w, h = im.size
    if w * h > max_decode_pixels():
        raise InputProblem(_too_large_status(Path(getattr(im, "filename", "") or "."), (w, h)))
    return im


def to_rgb8(im) -> np.ndarray:
    """A Pillow image of any mode as RGB ``uint8``: EXIF orientation applied; 16-bit and 32-bit gray scaled to
    8 bits (not clipped); alpha composited over white; palette, CMYK, YCbCr, LAB, 1-bit converted."""
    from PIL import Image, ImageOps

    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        pass
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "I" and arr.max(initial=0) > 65535:
            top = float(arr.max())
        gray = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, np.float64))
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        gray = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "P" and "transparency" in im.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


def downscale(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` reduced (area interpolation) so that its long side is at most ``max_side``."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    import cv2

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def is_blank(image: np.ndarray, tolerance: float = 2.0) -> bool:
    """True when every pixel is within ``tolerance`` grey levels of one colour (no face can be in it)."""
    if image.size == 0:
        return True
    flat = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
    return bool((flat.max(axis=0).astype(np.int32) - flat.min(axis=0)).max() <= tolerance)


# -- detection ------------------------------------------------------------------------------------------------
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    """A detected face. ``box`` is ``(x, y, width, height)`` in pixels of the image it was found in (it may
    reach past the image border); ``landmarks`` maps the five MTCNN points (``left_eye`` is the eye on the
    image's left) to ``(x, y)``."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)

    def scaled(self, factor: float) -> "Face":
        return Face(tuple(v * factor for v in self.box), self.confidence,
                    {k: (x * factor, y * factor) for k, (x, y) in self.landmarks.items()})

    def clipped_box(self, width: int, height: int) -> list[int]:
        """The box inside a ``width x height`` image, as integers ``[x, y, w, h]``."""
        x, y, w, h = self.box
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        return [int(round(x0)), int(round(y0)), int(round(max(0.0, x1 - x0))), int(round(max(0.0, y1 - y0)))]

    def eye_angle(self) -> float:
        """Angle of the line from the left to the right eye, in radians (0: level; positive: clockwise)."""
        if "left_eye" not in self.landmarks or "right_eye" not in self.landmarks:
            return 0.0
        (lx, ly), (rx, ry) = self.landmarks["left_eye"], self.landmarks["right_eye"]
        return math.atan2(ry - ly, rx - lx)


DEFAULT_MIN_CONFIDENCE = 0.9  # FaceDetector's: see its docstring and docs/photos.md


class FaceDetector:
    """MTCNN (Zhang et al. 2016, package ``mtcnn`` >= 1.0) on TensorFlow: boxes and five landmarks.

    ``min_confidence``: faces the network scores lower are dropped (``None``: :data:`DEFAULT_MIN_CONFIDENCE`;
    MTCNN's own last-stage threshold is 0.8;
    0.9 drops most false positives on textures). ``max_side``: photos are reduced to this long side for
    detection (boxes are returned in the photo's own pixels); faces smaller than about 20 px at that size are
    not found. ``batch_size``: photos of the same size are detected together, this many at a time."""

    def __init__(self, min_confidence: float | None = None, max_side: int = 1024, batch_size: int = 8,
                 min_face_size: int = 20):
        if min_confidence is None:
            min_confidence = DEFAULT_MIN_CONFIDENCE
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        if int(max_side) < MIN_DETECT_SIDE:
            raise ValueError(f"max_side must be >= {MIN_DETECT_SIDE}, got {max_side!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.min_confidence = float(min_confidence)
        self.max_side = int(max_side)
        self.batch_size = int(batch_size)
        self.min_face_size = int(min_face_size)
        self._mtcnn = None

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            self._mtcnn = _shared_mtcnn()
        return self._mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each of ``images`` (RGB ``uint8`` arrays), best first."""
        out: list[list[Face] | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        small: list[np.ndarray] = []
        factors: list[float] = []
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            if min(h, w) < MIN_DETECT_SIDE:
                out[i] = []
                small.append(image)
                factors.append(1.0)
                continue
            reduced = downscale(image, self.max_side)
            small.append(reduced)
            factors.append(w / reduced.shape[1])
            groups.setdefault(reduced.shape, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                found = self._detect_batch([small[i] for i in chunk])
                for i, faces in zip(chunk, found):
                    out[i] = [f.scaled(factors[i]) for f in faces]
        return [faces or [] for faces in out]

    def _detect_batch(self, batch: list[np.ndarray]) -> list[list[Face]]:
        rows = self.mtcnn.detect_faces(list(batch), output_type="numpy", box_format="xyxy", fit_to_image=False,
                                       postprocess=True, min_face_size=self.min_face_size)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
        faces: list[list[Face]] = [[] for _ in batch]
        for row in rows:
            index, x1, y1, x2, y2, score = int(row[0]), *row[1:6]
            if score < self.min_confidence or not 0 <= index < len(batch):
                continue
            points = row[6:16].reshape(2, 5).T  # MTCNN's rows hold the five x, then the five y
            faces[index].append(Face((x1, y1, x2 - x1, y2 - y1), float(score),
                                     {name: (float(px), float(py)) for name, (px, py) in zip(LANDMARKS, points)}))
        for found in faces:
            found.sort(key=lambda f: -f.confidence)
        return faces


def reading_order(faces: Sequence[Face], tolerance: float = 0.5) -> list[Face]:
    """``faces`` left to right, top to bottom, as text is read: sorted by box centre from the top, a face joins
    the row above when its centre is lower than the row's first centre by at most ``tolerance`` times the
    smaller of the two boxes' heights; each row is then sorted by centre from the left."""
    def centre(f):
        x, y, w, h = f.box
        return x + w / 2.0, y + h / 2.0

    rows: list[list[Face]] = []
    for f in sorted(faces, key=lambda f: (centre(f)[1], centre(f)[0])):
        if rows:
            first = rows[-1][0]
            if centre(f)[1] - centre(first)[1] <= tolerance * min(f.box[3], first.box[3]):
                rows[-1].append(f)
                continue
        rows.append([f])
    return [f for row in rows for f in sorted(row, key=lambda f: centre(f)[0])]


_MTCNN = None


def _shared_mtcnn():
    """One MTCNN per process (building its three networks takes a few seconds)."""
    global _MTCNN
    if _MTCNN is None:
        try:
            from mtcnn import MTCNN
        except ImportError as exc:
            raise ImportError(f"face detection needs the 'mtcnn' package (pip install 'mtcnn>=1.0,<2'): "
                              f"{exc}") from None
        _MTCNN = MTCNN()
    return _MTCNN


# -- cropping -------------------------------------------------------------------------------------------------
def crop_geometry(face: Face, crop: FaceCrop, aspect: float = 1.0) -> tuple[tuple[float, float], float, float, float]:
    """``(centre, height, width, angle)`` of the crop rectangle of ``face`` in the photo's pixels (angle in
    radians, the rotation of the crop's x axis)."""
    x, y, w, h = face.box
    side = max(w, h) * (1.0 + 2.0 * crop.margin)
    angle = face.eye_angle() if crop.align == "eyes" else 0.0
    return (x + w / 2.0, y + h / 2.0), side, side * aspect, angle


def crop_corners(face: Face, crop: FaceCrop, aspect: float = 1.0) -> list[tuple[float, float]]:
    """The four corners of the crop in the photo (for drawing), clockwise from the crop's top left."""
    (cx, cy), ch, cw, angle = crop_geometry(face, crop, aspect)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + c * dx - s * dy, cy + s * dx + c * dy)
            for dx, dy in ((-cw / 2, -ch / 2), (cw / 2, -ch / 2), (cw / 2, ch / 2), (-cw / 2, ch / 2))]


#: callables ``observer(face, crop, size)`` told of every :func:`align_crop` call (a debugging hook: the photo
#: path benchmark records which crop rule each detected face was cut by); append and remove your own
CROP_OBSERVERS: list = []


def align_crop(image: np.ndarray, face: Face, crop: FaceCrop, size: tuple[int, int]) -> np.ndarray:
    """The crop of ``face`` (rule ``crop``) from ``image`` as a ``size = (height, width)`` array of the same
    dtype and channels. Parts of the crop outside the photo repeat its border pixels."""
    import cv2

    for observer in list(CROP_OBSERVERS):
        observer(face, crop, size)

    out_h, out_w = (int(v) for v in size)
    (cx, cy), ch, cw, angle = crop_geometry(face, crop, out_w / out_h)
    # warp to an intermediate size near the crop's own resolution, then reduce with area averaging (a
    # direct bilinear warp from a large face to 48 px would alias)
    inter_h = int(max(out_h, min(round(ch), 4 * out_h, 512)))
    inter_w = max(1, round(inter_h * out_w / out_h))
    scale = ch / inter_h
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    # output (u, v) -> source (x, y): centre + R(angle) * scale * ((u, v) - half size); pixel centres at +0.5
    hu, hv = inter_w / 2.0, inter_h / 2.0
    matrix = np.array([[c, -s, cx - c * hu + s * hv + 0.5 * (c - s) - 0.5],
                       [s, c, cy - s * hu - c * hv + 0.5 * (s + c) - 0.5]], dtype=np.float64)
    src = image if image.ndim == 3 else image[..., None]
    warped = cv2.warpAffine(src, matrix, (inter_w, inter_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    if warped.ndim == 2:
        warped = warped[..., None]
    if (inter_h, inter_w) != (out_h, out_w):
        warped = cv2.resize(warped, (out_w, out_h), interpolation=cv2.INTER_AREA)
        if warped.ndim == 2:
            warped = warped[..., None]
    return warped if image.ndim == 3 else warped[..., 0]


def whole_image_face(image: np.ndarray) -> Face:
    """The whole image as one face (``detect=False``: the image is an already cropped face)."""
    h, w = image.shape[:2]
    return Face((0.0, 0.0, float(w), float(h)), 1.0, {})


def input_kind(path: str | os.PathLike) -> str:
    """``"video"`` for a video file ending, else ``"image"``."""
    return "video" if Path(path).suffix.lower() in VIDEO_EXTENSIONS else "image"


def describe_detector() -> dict[str, Any]:
    """Name and version of the detector (for reports and benchmarks)."""
    try:
        from importlib.metadata import version

        v = version("mtcnn")
    except Exception:  # noqa: BLE001
        v = None
    return {"detector": "mtcnn", "version": v}
