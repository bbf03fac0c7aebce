"""The canonical expression label space.

Every data set maps its native labels to these names explicitly; models carry the names of their outputs,
so a model trained on one data set is evaluated on another by name, never by bare index.
The order follows FER-2013's label ids, then contempt (CK+, AffectNet-8).

:data:`NATIVE` records each release's own label order (as canonical names, index = the release's label id
where the release uses ids), so a reader never relies on an implicit order.
"""

from __future__ import annotations

from typing import Sequence

CANONICAL = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
BASIC7 = CANONICAL[:7]

#: common spellings found in data set releases -> canonical name
ALIASES = {
    "anger": "angry", "angry": "angry", "an": "angry", "ang": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear", "fea": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy", "hap": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise", "sur": "surprise",
    "neutral": "neutral", "ne": "neutral", "neu": "neutral",
    "contempt": "contempt", "contemptuous": "contempt", "co": "contempt", "con": "contempt",
}

#: native label orders of the releases, as canonical names. For releases with numeric labels the list index
#: is the id in the release (RAF-DB's file uses 1..7: id - 1 indexes the list).
NATIVE = {
    # fer2013.csv `emotion` column 0..6
    "fer2013": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    # RAF-DB list_patition_label.txt: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral
    "rafdb": ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"),
    # AffectNet `expression` 0..7 (8 None, 9 Uncertain, 10 Non-Face are not expression labels)
    "affectnet": ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"),
    # SFEW 2.0 class folders, alphabetical (the order DAN's code and most re-implementations use)
    "sfew": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    # CK+ Emotion/*_emotion.txt 0..7
    "ckplus": ("neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"),
    # JAFFE file-name codes AN DI FE HA NE SA SU (alphabetical by code)
    "jaffe": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    # FERG-DB folders <character>_<anger|disgust|fear|joy|neutral|sadness|surprise> (alphabetical)
    "ferg": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    # MMI session.xml Emotion metatag 1..6 (1 Anger, 2 Disgust, 3 Fear, 4 Happiness, 5 Sadness, 6 Surprise)
    "mmi": ("angry", "disgust", "fear", "happy", "sad", "surprise"),
    # Oulu-CASIA expression folders Anger Disgust Fear Happiness Sadness Surprise
    "oulu_casia": ("angry", "disgust", "fear", "happy", "sad", "surprise"),
}


def canonical_name(name: str) -> str:
    """Map a release's class spelling to the canonical name; unknown names raise ``ValueError``."""
    key = str(name).strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    raise ValueError(f"unknown expression class {name!r}; known: {sorted(set(ALIASES))}")


def is_expression_name(name: str) -> bool:
    return str(name).strip().lower() in ALIASES


def label_mapping(source: list[str] | tuple[str, ...], target: list[str] | tuple[str, ...]) -> list[int]:
    """Index map so that ``target.index(source[i]) == mapping[i]``; every source class must be in target."""
    missing = [n for n in source if n not in target]
    if missing:
        raise ValueError(f"classes {missing} of the data are not among the model's classes {list(target)}")
    return [list(target).index(n) for n in source]


def resolve_class_order(native: Sequence[str], class_order="native") -> list[str]:
    """The class names a reader reports: ``"native"`` (the release's order), ``"canonical"`` (the order of
    :data:`CANONICAL`, restricted to the classes present) or an explicit list of names (every native class
    must be in it; the list may hold more classes, e.g. a model's 8 classes for 7-class data)."""
    native = [canonical_name(n) for n in native]
    if class_order is None or class_order == "native":
        return native
    if class_order == "canonical":
        return [n for n in CANONICAL if n in native]
    if isinstance(class_order, str):
        raise ValueError(f"class_order must be 'native', 'canonical' or a list of class names, got {class_order!r}")
    target = [canonical_name(n) for n in class_order]
    if len(set(target)) != len(target):
        raise ValueError(f"class_order {list(class_order)} names a class twice")
    missing = [n for n in native if n not in target]
    if missing:
        raise ValueError(f"class_order {list(class_order)} lacks the data set's classes {missing}")
    return target
