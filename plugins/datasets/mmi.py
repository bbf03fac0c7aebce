"""MMI Facial Expression Database: ``data_dir`` is the ``Sessions/`` folder of a download (or its parent).

Each session folder holds ``session.xml`` and its media: a video ``S###-###.avi`` (onset-apex-offset, from a
neutral face back to neutral) or the frames of the session as images. The label is the ``Emotion`` metatag of
``session.xml`` (``<Metatag Name="Emotion" Value="k"/>``, k = 1 Anger, 2 Disgust, 3 Fear, 4 Happiness,
5 Sadness, 6 Surprise); sessions without one (AU-only sessions) are not expression-labelled and are counted
in ``ds.info["unlabelled_sessions"]``. The subject is the session's ``subjectId``/``<subject id>`` or the
``S###`` of its media file name.

Frames per labelled session: the ``peak_frames`` frames around the apex (the middle of the sequence, 3 by
default, or ``frames="last"``), plus with ``neutral_frames=k`` the first k frames labelled neutral. Videos
are read with OpenCV (``pip install opencv-python-headless``), and the chosen frames are written once as PNG
files under ``$FERZOO_HOME/cache/mmi_frames/``. Splits: subject-independent k-fold (``folds=10``) or
``protocol="random"``.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

from ferzoo.labels import NATIVE

from ._common import DataError, ExampleTable, find_child, finish, frames_of, list_images, require_dir, split_lab

NAME = "mmi"
CLASSES = list(NATIVE["mmi"])
VIDEO_EXT = (".avi", ".wmv", ".mp4", ".mov")
SUBJECT = re.compile(r"^S(\d+)[-_]", re.IGNORECASE)


def load(data_dir=None, split: str | None = None, *, frames: str = "apex", peak_frames: int = 3,
         neutral_frames: int = 0, unknown_emotion: str = "error", **options):
    if frames not in ("apex", "last"):
        raise ValueError(f"{NAME}: frames must be 'apex' or 'last', got {frames!r}")
    root = require_dir(data_dir, "the Sessions folder", NAME)
    base = find_child(root, ["Sessions"]) or root
    names = CLASSES + (["neutral"] if neutral_frames else [])
    files, labels, subjects, sequences, origins = [], [], [], [], []
    unlabelled, unknown = [], []
    sessions = sorted((e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith(".")),
                      key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))
    if not sessions:
        raise DataError(f"{NAME}: no session folders in {base!r}")
    for session in sessions:
        sdir = os.path.join(base, session)
        xml_path = os.path.join(sdir, "session.xml")
        if not os.path.isfile(xml_path):
            raise DataError(f"{NAME}: session folder {sdir} has no session.xml")
        emotion, subject = _parse_session(xml_path)
        if emotion is None:
            unlabelled.append(session)
            continue
        if not 1 <= emotion <= 6:
            if unknown_emotion == "skip":
                unknown.append(session)
                continue
            raise DataError(f"{xml_path}: Emotion {emotion} is out of range 1..6 (pass unknown_emotion='skip' to "
                            f"leave such sessions out, counted)")
        images, other = list_images(sdir)
        videos = [n for n in other if n.lower().endswith(VIDEO_EXT)]
        if subject is None:
            media = (images or videos or [""])[0]
            m = SUBJECT.match(media)
            if not m:
                raise DataError(f"{xml_path}: no subject id in session.xml nor in the media name {media!r}")
            subject = str(int(m.group(1)))
        if images:
            seq = [os.path.join(sdir, n) for n in images]
        elif videos:
            seq = _VideoFrames(os.path.join(sdir, videos[0]), session)
        else:
            raise DataError(f"{NAME}: session folder {sdir} holds neither a video nor image frames")
        peak, head = _pick(seq, frames, peak_frames, neutral_frames)
        for path, lab in [(p, CLASSES[emotion - 1]) for p in peak] + [(p, "neutral") for p in head]:
            files.append(path)
            labels.append(names.index(lab))
            subjects.append(subject)
            sequences.append(session)
            origins.append(xml_path)
    if not files:
        raise DataError(f"{NAME}: no session in {base!r} carries an Emotion label")
    table = ExampleTable(labels=labels, class_names=names, files=files, subjects=subjects, sequences=sequences,
                         origins=origins, name=NAME,
                         info={"unlabelled_sessions": len(unlabelled), "skipped_unknown_emotion": unknown,
                               "frames": frames, "peak_frames": peak_frames, "neutral_frames": neutral_frames})
    table = split_lab(table, split, options, protocol="kfold", folds=10, fold=0, split_seed=0)
    return finish(table, native_channels=3, **options)


def _parse_session(path: str):
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise DataError(f"{path}:{exc.position[0]}: not valid XML: {exc}") from None
    emotion = subject = None
    for el in tree.iter():
        attrs = {k.lower(): v for k, v in el.attrib.items()}
        if el.tag.lower() == "metatag" and attrs.get("name", "").lower() == "emotion":
            try:
                emotion = int(float(attrs.get("value", "")))
            except ValueError:
                raise DataError(f"{path}: Emotion metatag value {attrs.get('value')!r} is not a number") from None
        if subject is None:
            if "subjectid" in attrs:
                subject = attrs["subjectid"].strip()
            elif el.tag.lower() == "subject" and "id" in attrs:
                subject = attrs["id"].strip()
    return emotion, subject


def _pick(seq, frames: str, peak: int, neutral: int):
    n = len(seq)
    idx = list(range(n))
    p, h = frames_of(idx, middle=peak if frames == "apex" else None, last=peak if frames == "last" else None,
                     first=neutral)
    if isinstance(seq, _VideoFrames):
        paths = seq.extract(p + h)
        return [paths[i] for i in p], [paths[i] for i in h]
    return [seq[i] for i in p], [seq[i] for i in h]


class _VideoFrames:
    """Frames of one video, extracted on demand to PNG files in the ferzoo cache."""

    def __init__(self, path: str, session: str):
        self.path, self.session = path, session
        self._n = None

    def _cv2(self):
        try:
            import cv2
        except ImportError:
            raise DataError(f"{NAME}: reading the video {self.path} needs OpenCV (pip install opencv-python-headless), "
                            f"or extract its frames as images into {os.path.dirname(self.path)}") from None
        return cv2

    def __len__(self):
        if self._n is None:
            cv2 = self._cv2()
            cap = cv2.VideoCapture(self.path)
            n = 0
            while cap.grab():
                n += 1
            cap.release()
            if n == 0:
                raise DataError(f"{NAME}: cannot read any frame of the video {self.path}")
            self._n = n
        return self._n

    def extract(self, indices) -> dict:
        from ferzoo.weights import home

        cv2 = self._cv2()
        out_dir = home() / "cache" / "mmi_frames" / self.session
        out_dir.mkdir(parents=True, exist_ok=True)
        want = set(indices)
        paths = {i: str(out_dir / f"frame_{i:05d}.png") for i in want}
        if all(os.path.isfile(p) for p in paths.values()):
            return paths
        cap = cv2.VideoCapture(self.path)
        i = 0
        while want and cap.isOpened():
            ok, frame = cap.read()
            if not ok:
                break
            if i in want:
                tmp = paths[i] + ".partial.png"
                cv2.imwrite(tmp, frame)
                os.replace(tmp, paths[i])
                want.discard(i)
            i += 1
        cap.release()
        if want:
            raise DataError(f"{NAME}: the video {self.path} ended before frame(s) {sorted(want)}")
        return paths
