"""Weights-only storage: ``NAME.weights.h5`` + ``NAME.json`` (the card), the local store, ``load``.

The card holds what is needed to rebuild the model (model name, class names in output order, input shape,
build config) and what the weights are worth (data set, metrics, command). Files are written atomically:
into a temporary file in the same folder, then renamed, so an interrupted write never leaves a file a
later call would trust. Resolution of published tags (registry, sha256, downloads, cache) is in this module too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

CARD_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".weights.h5"


def home() -> Path:
    return Path(os.environ.get("FERZOO_HOME") or Path.home() / ".cache" / "ferzoo")


def store_dir(model: str, tag: str) -> Path:
    return home() / "store" / model / tag


def card_path_for(weights_path: str | os.PathLike) -> Path:
    p = Path(weights_path)
    if not p.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"{p}: weights files must end with {WEIGHTS_SUFFIX!r}")
    return p.with_name(p.name[: -len(WEIGHTS_SUFFIX)] + CARD_SUFFIX)


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``final``; on success it replaces ``final`` atomically, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".partial{suffix}", dir=final.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def save(model, weights_path: str | os.PathLike, **card_fields) -> Path:
    """Write ``model``'s weights and card atomically; returns the weights path."""
    weights_path = Path(weights_path)
    card_path = card_path_for(weights_path)
    with atomic_path(weights_path, suffix=WEIGHTS_SUFFIX) as tmp:
        model.save_weights(str(tmp))
        digest = sha256_of(tmp)
        size = tmp.stat().st_size
    import ferzoo

    card = {**model.describe(), "file": weights_path.name, "sha256": digest, "size": size,
            "ferzoo_version": ferzoo.__version__, **card_fields}
    write_json_atomic(card_path, card)
    return weights_path


def read_card(weights_path: str | os.PathLike) -> dict:
    card_path = card_path_for(weights_path)
    if not card_path.exists():
        raise FileNotFoundError(f"{weights_path}: no card {card_path.name} beside the weights file")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{card_path}: not valid JSON ({exc})") from None
    for key in ("model", "class_names", "input_spec"):
        if key not in card:
            raise ValueError(f"{card_path}: the card has no field {key!r}")
    return card


def load_file(name: str | None, weights_path: str | os.PathLike, card: Mapping | None = None, verify: bool = True):
    """Build the model a card describes and load its weights file; errors name the file and the mismatch."""
    import ferzoo

    weights_path = Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"weights file {weights_path} does not exist")
    card = dict(card or read_card(weights_path))
    if name is not None and card["model"] != name:
        raise ValueError(f"{weights_path}: these weights are for model {card['model']!r}, not {name!r}")
    if verify and card.get("sha256") and sha256_of(weights_path) != card["sha256"]:
        raise ValueError(f"{weights_path}: sha256 does not match the card ({card['sha256'][:12]}...); "
                         "the file is corrupt or was replaced")
    spec = card["input_spec"]
    model = ferzoo.build(card["model"], num_classes=len(card["class_names"]),
                         input_shape=(spec["height"], spec["width"], spec["channels"]),
                         class_names=card["class_names"], **card.get("config", {}))
    try:
        model.load_weights(str(weights_path))
    except Exception as exc:  # noqa: BLE001 - h5py / keras raise many types for a bad file
        raise ValueError(f"{weights_path}: cannot load these weights into {card['model']!r} "
                         f"({len(card['class_names'])} classes): {type(exc).__name__}: {exc}") from None
    model.weights_card = card
    return model


def known_tags(name: str) -> dict[str, str]:
    """tag -> where it comes from ("store" or the registering plugin), for model ``name``."""
    from .registry import get_registry

    reg = get_registry()
    reg.ensure_loaded()
    tags = {tag: f"plugin {card.get('plugin')}" for (model, tag), card in reg.weights.items() if model == name}
    store = home() / "store" / name
    if store.is_dir():
        for d in sorted(store.iterdir()):
            if (d / f"{name}{WEIGHTS_SUFFIX}").exists():
                tags.setdefault(d.name, "local store")
    return tags


def load(name: str, weights: str | os.PathLike | None = None, **build_kwargs):
    import ferzoo

    ferzoo.model_info(name)  # unknown model -> error listing the known ones
    if weights is None:
        return ferzoo.build(name, **build_kwargs)
    text = str(weights)
    if text.endswith(WEIGHTS_SUFFIX) or os.sep in text or Path(text).exists():
        return load_file(name, text)
    tag = text
    local = store_dir(name, tag) / f"{name}{WEIGHTS_SUFFIX}"
    if local.exists():
        return load_file(name, local)
    tags = known_tags(name)
    if tag not in tags:
        raise ValueError(f"model {name!r} has no weights tagged {tag!r}; known tags: {sorted(tags) or '(none)'}")
    raise NotImplementedError(f"model {name!r}, tag {tag!r}: fetching registered weights is not implemented yet")
