"""The canonical expression label space.

Every data set maps its native labels to these names explicitly; models carry the names of their outputs,
so a model trained on one data set is evaluated on another by name, never by bare index.
The order follows FER-2013's label ids, then contempt (CK+, AffectNet-8).
"""

from __future__ import annotations

CANONICAL = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
BASIC7 = CANONICAL[:7]

#: common spellings found in data set releases -> canonical name
ALIASES = {
    "anger": "angry", "angry": "angry", "an": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "neutral": "neutral", "ne": "neutral",
    "contempt": "contempt",
}


def canonical_name(name: str) -> str:
    """Map a release's class spelling to the canonical name; unknown names raise ``ValueError``."""
    key = str(name).strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    raise ValueError(f"unknown expression class {name!r}; known: {sorted(set(ALIASES))}")


def label_mapping(source: list[str] | tuple[str, ...], target: list[str] | tuple[str, ...]) -> list[int]:
    """Index map so that ``target.index(source[i]) == mapping[i]``; every source class must be in target."""
    missing = [n for n in source if n not in target]
    if missing:
        raise ValueError(f"classes {missing} of the data are not among the model's classes {list(target)}")
    return [list(target).index(n) for n in source]
