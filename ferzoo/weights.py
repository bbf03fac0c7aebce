"""Weights-only storage: ``NAME.weights.h5`` + ``NAME.json`` (the card), the registry, the local store, ``load``.

The card holds what is needed to rebuild the model (model name, class names in output order, input spec,
build config) and what the weights are worth (data set, split, metrics, the command that measured them).
Files are written atomically: into a temporary file in the same folder, then renamed, so an interrupted
write never leaves a file that a later call would trust.

Where weights come from, for ``ferzoo.load(name, weights=tag)``:

1. the local store ``$FERZOO_HOME/store/<model>/<tag>/<model>.weights.h5`` (what ``ferzoo train`` writes);
2. a registry entry: ``zoo_registry.json`` (shipped inside the package) or a plugin's ``register_weights``
   hook. Its ``sources`` are tried in order: a file embedded in an installed package, or a URL whose
   download lands in ``$FERZOO_HOME/cache/<model>/<tag>/``. Every file is checked against the card's sha256
   before it is used; ``FERZOO_OFFLINE=1`` forbids downloads.

``$FERZOO_HOME`` defaults to ``~/.cache/ferzoo``.

Storage formats (the card's ``storage_dtype``; computation is float32 whatever the storage):

* ``"float32"``: the file Keras' ``save_weights`` writes.
* ``"float16"``: the same layout with every float32 array stored in half precision; Keras casts on load.
* ``"int8-per-channel"``: ferzoo's own variant of the ``.weights.h5`` layout (Keras 3's ``quantize("int8")``
  covers ``Dense`` but not ``Conv2D``). Every float32 array of rank >= 2 (conv / dense kernels, embeddings) is
  quantized symmetrically per output channel, the last axis: ``scale[c] = max|w[..., c]| / 127``,
  ``q = round(w / scale)`` (int8 in [-127, 127]; a channel of zeros has scale 0), so each element comes back
  within ``scale[c] / 2``. Its dataset ``P`` (e.g. ``layers/conv2d/vars/0``) leaves the Keras layout and is
  stored as ``ferzoo_int8/P/q`` (int8, the kernel's shape) and ``ferzoo_int8/P/scale`` (float32, one per
  channel); vectors (biases, batch-norm statistics) and non-float arrays stay where they were, in float32.
  The root attribute ``ferzoo_storage = "int8-per-channel"`` marks the file. :func:`load_weights_into` (used by
  :func:`load_file`, hence ``ferzoo.load``) rebuilds the float32 Keras file in a temporary folder and loads
  that, so the model is the plain float32 model; a missing or misshapen scale is an error naming the file.
  Keras' own ``load_weights`` refuses such a file (the moved kernels are missing) rather than loading codes
  as weights. About one byte per parameter, a quarter of float32 (written in HDF5 1.10's format, whose compact
  groups keep the overhead of the extra groups small).

``ferzoo weights pack`` (:func:`pack`) measures a trained file on a data set's validation split in float32
and int8 storage and ships int8 where the accuracy drops by less than 0.3 points, else float16.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

#: The embedded default: the model and weights ``ferzoo predict`` / ``ferzoo explain`` use when none are named
#: (shipped inside the package, so they work offline on a fresh machine). Defined here only; a line is printed
#: whenever they stand in.
DEFAULT_MODEL = "daf_cnn_compact"
DEFAULT_WEIGHTS = "fer2013_kd"

CARD_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".weights.h5"
REGISTRY_FILE = "zoo_registry.json"
SCHEMA_FILE = "zoo_registry.schema.json"


class WeightsError(ValueError):
    """Weights that cannot be resolved or loaded; the message names the model, the tag and what failed."""


# -- paths and atomic files ----------------------------------------------------------------------------------
def home() -> Path:
    return Path(os.environ.get("FERZOO_HOME") or Path.home() / ".cache" / "ferzoo")


def store_dir(model: str, tag: str) -> Path:
    return home() / "store" / model / tag


def store_file(model: str, tag: str) -> Path:
    """The weights file of ``model.tag`` in the local store (found before any registered file of that name)."""
    return store_dir(model, tag) / f"{model}{WEIGHTS_SUFFIX}"


def store_shadow(model: str, tag: str, sha256: str) -> Path | None:
    """The local store's file for ``model.tag`` when it holds other weights than ``sha256``: ``resolve`` finds it
    first, so it hides the registered file of that name. ``None`` otherwise."""
    local = store_file(model, tag)
    return local if local.is_file() and sha256_of(local) != sha256 else None


def cache_dir(model: str, tag: str) -> Path:
    return home() / "cache" / model / tag


def offline() -> bool:
    return os.environ.get("FERZOO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


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


# -- cards ---------------------------------------------------------------------------------------------------
CARD_ATTR = "ferzoo_card"


INT8 = "int8-per-channel"
STORAGE_DTYPES = ("float32", "float16", INT8)
STORAGE_ATTR = "ferzoo_storage"
INT8_GROUP = "ferzoo_int8"


def save(model, weights_path: str | os.PathLike, *, storage_dtype: str = "float32", **card_fields) -> Path:
    """Write ``model``'s weights and card as one atomic unit; returns the weights path.

    ``storage_dtype="float16"`` stores every float32 array in half precision (half the file; loading casts
    back to the variables' float32), ``"int8-per-channel"`` stores kernels as int8 with a scale per output
    channel (see the module doc); the card records ``storage_dtype``."""
    import ferzoo

    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {list(STORAGE_DTYPES)}, got {storage_dtype!r}")
    card = {**model.describe(), "file": Path(weights_path).name, "ferzoo_version": ferzoo.__version__,
            **card_fields, "storage_dtype": storage_dtype}
    return save_weights_and_card(model, weights_path, card, storage_dtype=storage_dtype)


def _halved_copy(source: Path, target: Path) -> None:
    """Copy an HDF5 weights file with every float32 dataset stored as float16 (groups and attributes kept).
    A fresh file, because HDF5 does not give back the space of datasets deleted in place."""
    import h5py
    import numpy as np

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        dst.attrs.update(dict(src.attrs))

        def copy(name, obj):
            if _optimizer_state(name):
                return
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            if obj.dtype == np.float32:
                data = np.asarray(data, np.float16)
            dst.create_dataset(name, data=data)
            dst[name].attrs.update(dict(obj.attrs))

        src.visititems(copy)


def quantize_per_channel(w) -> tuple:
    """Symmetric int8 quantization of ``w`` per slice of its last axis: ``(q, scale)`` with
    ``scale[c] = max|w[..., c]| / 127`` (float32, 0 for a channel of zeros) and ``q = round(w / scale)`` (int8),
    so that ``|w - q * scale| <= scale / 2`` element-wise."""
    import numpy as np

    w = np.asarray(w)
    if w.ndim < 1 or w.shape[-1] == 0:
        raise ValueError(f"cannot quantize an array of shape {w.shape} per channel")
    w64 = w.astype(np.float64)
    peak = np.abs(w64).reshape(-1, w.shape[-1]).max(axis=0) if w.size else np.zeros(w.shape[-1])
    scale = (peak / 127.0).astype(np.float32)
    s64 = scale.astype(np.float64)
    q = np.divide(w64, s64, out=np.zeros_like(w64), where=s64 > 0)
    return np.clip(np.rint(q), -127, 127).astype(np.int8), scale


def dequantize_per_channel(q, scale):
    """float32 ``q * scale`` (``scale`` broadcast over the last axis): the inverse of
    :func:`quantize_per_channel` up to ``scale / 2``."""
    import numpy as np

    return (np.asarray(q, np.float32) * np.asarray(scale, np.float32)).astype(np.float32)


def _quantizable(obj) -> bool:
    import numpy as np

    return obj.dtype == np.float32 and obj.ndim >= 2 and obj.shape[-1] > 0


def _quantized_copy(source: Path, target: Path) -> None:
    """A Keras weights file -> the ``int8-per-channel`` layout of the module doc (a fresh file)."""
    import h5py

    # HDF5 1.10's compact groups: the old format's group overhead (about 1 kB a group) would be felt in small models
    with h5py.File(source, "r") as src, h5py.File(target, "w", libver=("v110", "latest")) as dst:
        dst.attrs.update(dict(src.attrs))
        dst.attrs[STORAGE_ATTR] = INT8

        def copy(name, obj):
            if _optimizer_state(name):
                return
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(dict(obj.attrs))
                return
            if _quantizable(obj):
                q, scale = quantize_per_channel(obj[()])
                dst.create_dataset(f"{INT8_GROUP}/{name}/q", data=q)
                dst.create_dataset(f"{INT8_GROUP}/{name}/scale", data=scale)
                dst[f"{INT8_GROUP}/{name}"].attrs.update(dict(obj.attrs))
                return
            dst.create_dataset(name, data=obj[()])
            dst[name].attrs.update(dict(obj.attrs))

        src.visititems(copy)


def _dequantized_copy(source: Path, target: Path) -> None:
    """An ``int8-per-channel`` file -> the float32 Keras file it stands for; a damaged file raises
    ``ValueError`` naming ``source`` and the array."""
    import h5py
    import numpy as np

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        dst.attrs.update({k: v for k, v in src.attrs.items() if k not in (STORAGE_ATTR, CARD_ATTR)})
        quant = src.get(INT8_GROUP)
        if not isinstance(quant, h5py.Group):
            raise ValueError(f"{source}: marked {INT8!r} but has no {INT8_GROUP!r} group")

        def copy(name, obj):
            if name == INT8_GROUP or name.startswith(INT8_GROUP + "/"):
                return
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(dict(obj.attrs))
            else:
                dst.create_dataset(name, data=obj[()])
                dst[name].attrs.update(dict(obj.attrs))

        src.visititems(copy)
        kernels = []
        quant.visititems(lambda name, obj: kernels.append(name[:-2]) if name.endswith("/q") or name == "q" else None)
        for name in kernels:
            group = quant[name]
            q, scale = group.get("q"), group.get("scale")
            if not isinstance(scale, h5py.Dataset):
                raise ValueError(f"{source}: int8 array {name!r} has no scale dataset")
            if q.dtype != np.int8 or q.ndim < 2:
                raise ValueError(f"{source}: int8 array {name!r} has dtype {q.dtype} and shape {q.shape}")
            if scale.shape != (q.shape[-1],) or not np.issubdtype(scale.dtype, np.floating):
                raise ValueError(f"{source}: the scale of {name!r} has shape {scale.shape} ({scale.dtype}); "
                                 f"expected ({q.shape[-1]},) floats, one per output channel of {q.shape}")
            values = scale[()]
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ValueError(f"{source}: the scale of {name!r} holds negative or non-finite values")
            dst.create_dataset(name, data=dequantize_per_channel(q[()], values))
            dst[name].attrs.update(dict(group.attrs))


def storage_of(weights_path: str | os.PathLike) -> str:
    """How a ``.weights.h5`` file stores its arrays: ``"int8-per-channel"``, ``"float16"`` or ``"float32"``."""
    import h5py
    import numpy as np

    with h5py.File(weights_path, "r") as fh:
        marked = fh.attrs.get(STORAGE_ATTR)
        if marked is not None:
            marked = marked.decode() if isinstance(marked, bytes) else str(marked)
            if marked != INT8:
                raise ValueError(f"{weights_path}: unknown storage {marked!r} (known: {list(STORAGE_DTYPES)})")
            return INT8
        dtypes = set()
        fh.visititems(lambda _n, o: dtypes.add(o.dtype) if isinstance(o, h5py.Dataset) else None)
    return "float16" if np.dtype("float16") in dtypes and np.dtype("float32") not in dtypes else "float32"


def write_weights(model, path: str | os.PathLike, storage_dtype: str = "float32") -> None:
    """``model``'s weights (arrays only, no card) at ``path`` in one of :data:`STORAGE_DTYPES`."""
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {list(STORAGE_DTYPES)}, got {storage_dtype!r}")
    path = Path(path)
    full = path.with_name(path.name + ".float32.weights.h5")
    try:
        model.save_weights(str(full))
        {"float32": _model_only_copy, "float16": _halved_copy}.get(storage_dtype, _quantized_copy)(full, path)
    finally:
        full.unlink(missing_ok=True)


def _optimizer_state(name: str) -> bool:
    """Whether an HDF5 path of a Keras weights file is the optimizer's state. A compiled model's ``save_weights``
    writes it too (Adam's two moments: twice the model's size); weights files never keep it: loading weights
    never uses it, and a run resumes from its checkpoint (``optimizer.npz``)."""
    return name == "optimizer" or name.startswith("optimizer/")


def _model_only_copy(source: Path, target: Path) -> None:
    """Copy a Keras weights file without the optimizer's state (:func:`_optimizer_state`)."""
    import h5py

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        dst.attrs.update(dict(src.attrs))
        for key in src:
            if not _optimizer_state(key):
                src.copy(key, dst)


def load_weights_into(model, weights_path: str | os.PathLike) -> None:
    """``model.load_weights`` for every storage format (int8 files are dequantized to float32 first)."""
    weights_path = Path(weights_path)
    if storage_of(weights_path) != INT8:
        model.load_weights(str(weights_path))
        return
    with tempfile.TemporaryDirectory(prefix="ferzoo-int8-") as scratch:
        plain = Path(scratch) / f"dequantized{WEIGHTS_SUFFIX}"
        _dequantized_copy(weights_path, plain)
        model.load_weights(str(plain))


def save_weights_and_card(model, weights_path: str | os.PathLike, card: Mapping, *,
                          storage_dtype: str = "float32", arrays_from: str | os.PathLike | None = None) -> Path:
    """Weights and card as one atomic unit: the card is written *inside* the ``.weights.h5`` file (an HDF5
    attribute) before the file is renamed into place, then ``NAME.json`` beside it, with the file's sha256 and
    size, is written. Both carry the same random ``save_id``; :func:`read_card` uses the JSON card when its
    ``save_id`` matches the file's, and the embedded card when a save was interrupted between the two writes.
    ``arrays_from``: copy the arrays of this weights file (already in ``storage_dtype``) instead of ``model``'s."""
    import uuid

    import h5py

    weights_path = Path(weights_path)
    card = {k: v for k, v in dict(card).items() if k not in ("sha256", "size")}
    card["save_id"] = uuid.uuid4().hex
    with atomic_path(weights_path, suffix=WEIGHTS_SUFFIX) as tmp:
        if arrays_from is not None:
            shutil.copyfile(arrays_from, tmp)
        else:
            write_weights(model, tmp, storage_dtype)
        with h5py.File(tmp, "a") as fh:
            fh.attrs[CARD_ATTR] = json.dumps(card)
        digest = sha256_of(tmp)
        size = tmp.stat().st_size
    write_json_atomic(card_path_for(weights_path), {**card, "sha256": digest, "size": size})
    return weights_path


def embedded_card(weights_path: str | os.PathLike) -> dict | None:
    """The card stored inside a ``.weights.h5`` file by :func:`save`, or ``None`` (older files, other files)."""
    try:
        import h5py

        with h5py.File(weights_path, "r") as fh:
            text = fh.attrs.get(CARD_ATTR)
    except (OSError, ImportError):
        return None
    if text is None:
        return None
    try:
        card = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None


def read_card(weights_path: str | os.PathLike) -> dict:
    """The card of a weights file: ``NAME.json`` beside it (its sha256 guards the file's bytes), unless the file
    embeds a card from a later save (a save interrupted before the JSON was rewritten): then the embedded one."""
    card_path = card_path_for(weights_path)
    embedded = embedded_card(weights_path) if Path(weights_path).is_file() else None
    side = None
    if card_path.exists():
        try:
            side = json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            if embedded is None:
                raise ValueError(f"{card_path}: not valid JSON ({exc})") from None
    if embedded is not None and (not isinstance(side, dict) or side.get("save_id") != embedded.get("save_id")):
        card, where = embedded, f"{weights_path} (embedded card)"
        card.update(sha256=sha256_of(weights_path), size=Path(weights_path).stat().st_size)
    elif side is None:
        raise FileNotFoundError(f"{weights_path}: no card {card_path.name} beside the weights file")
    else:
        card, where = side, str(card_path)
    if not isinstance(card, dict):
        raise ValueError(f"{where}: the card must be a JSON object")
    for key in ("model", "class_names", "input_spec"):
        if key not in card:
            raise ValueError(f"{where}: the card has no field {key!r}")
    return card


# -- the registry (zoo_registry.json + plugins) ---------------------------------------------------------------
def registry_path() -> Path:
    """The catalogue shipped inside the package (the repository's top-level ``zoo_registry.json`` links here)."""
    return Path(__file__).resolve().parent / REGISTRY_FILE


def schema_path() -> Path:
    return Path(__file__).resolve().parent / SCHEMA_FILE


@functools.lru_cache(maxsize=None)
def _schema() -> dict:
    return json.loads(schema_path().read_text())


def _validator(ref: str | None = None):
    import jsonschema

    schema = _schema()
    if ref is not None:
        schema = {**schema, "$ref": f"#/$defs/{ref}"}
        schema.pop("required", None), schema.pop("properties", None), schema.pop("additionalProperties", None)
        schema.pop("type", None)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(data: Any, ref: str | None = None) -> list[str]:
    """Every schema violation of ``data`` (the whole registry, or one ``$defs`` item such as ``"card"``)."""
    errors = sorted(_validator(ref).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]


def validate_registry(data: Any, where: str = REGISTRY_FILE) -> dict:
    errors = schema_errors(data)
    if not errors and isinstance(data, dict):
        for model, entry in data["models"].items():
            for tag, card in entry["weights"].items():
                if card["model"] != model:
                    errors.append(f"models/{model}/weights/{tag}/model: the card is for {card['model']!r}")
                num = card.get("num_classes")
                if num is not None and num != len(card["class_names"]):
                    errors.append(f"models/{model}/weights/{tag}: num_classes={num} but "
                                  f"{len(card['class_names'])} class names")
    if errors:
        raise WeightsError(f"{where} does not match {SCHEMA_FILE}:\n  " + "\n  ".join(errors))
    return data


@functools.lru_cache(maxsize=None)
def _zoo_registry_cached(path: str, mtime_ns: int) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None
    return validate_registry(data, path)


def zoo_registry() -> dict:
    """The parsed, schema-checked ``zoo_registry.json`` (a copy; edit the file, not this)."""
    path = registry_path()
    if not path.exists():
        return {"format_version": 1, "models": {}}
    return copy.deepcopy(_zoo_registry_cached(str(path), path.stat().st_mtime_ns))


def entries(model: str | None = None) -> dict[tuple[str, str], dict]:
    """Registered weight entries ``(model, tag) -> card``, from ``zoo_registry.json`` and the plugins' hooks.

    Each card gets an ``origin`` field. A plugin entry that repeats a ``zoo_registry.json`` name is reported
    under the tag with a ``clash`` field (resolving it is an error naming both)."""
    from .registry import get_registry

    out: dict[tuple[str, str], dict] = {}
    for name, entry in zoo_registry()["models"].items():
        if model is not None and name != model:
            continue
        for tag, card in entry["weights"].items():
            out[(name, tag)] = {**card, "origin": REGISTRY_FILE}
    reg = get_registry()
    reg.ensure_loaded()
    for (name, tag), card in reg.weights.items():
        if model is not None and name != model:
            continue
        plugin = card.get("plugin")
        if (name, tag) in out:
            out[(name, tag)]["clash"] = f"plugin {plugin!r} registers it too"
            continue
        out[(name, tag)] = {**copy.deepcopy(card), "origin": f"plugin {plugin}"}
    return out


def local_tags(name: str) -> list[str]:
    store = home() / "store" / name
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if (d / f"{name}{WEIGHTS_SUFFIX}").is_file())


def known_tags(name: str) -> dict[str, str]:
    """tag -> where it comes from ("local store", "zoo_registry.json" or "plugin X"), for model ``name``.

    A local-store tag shadows a registered tag of the same name (``ferzoo train`` results win)."""
    tags = {tag: card["origin"] for (_, tag), card in entries(name).items()}
    for tag in local_tags(name):
        tags[tag] = "local store" + (f" (shadows {tags[tag]})" if tag in tags else "")
    return tags


def availability(name: str, tag: str, card: Mapping) -> str:
    """Where a registered entry can be had right now: embedded, cached, download or missing."""
    for src in card.get("sources", []):
        if "package" in src and _package_file(src) is not None:
            return "embedded"
    if (cache_dir(name, tag) / str(card.get("file", ""))).is_file():
        return "cached"
    if any("url" in s for s in card.get("sources", [])):
        return "offline: not cached" if offline() else "download"
    return "missing"


# -- resolution -----------------------------------------------------------------------------------------------
def _fail(name: str, tag: str, what: str) -> WeightsError:
    try:
        known = sorted(known_tags(name))
    except Exception:  # noqa: BLE001 - listing must never hide the real error
        known = []
    return WeightsError(f"model {name!r}, weights {tag!r}: {what}; known tags: {known}")


def _package_file(src: Mapping) -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(src["package"])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / src["path"]
        if candidate.is_file():
            return candidate
    return None


def _missing_weights_hint(name: str, tag: str, local: Path) -> str:
    """What produces weights ``name.tag`` that do not exist: the ``ferzoo train`` command (which stores its
    result under the data set's name) when the tag names a registered data set, or is ``<data set>-local``, and
    the store path where a published file with its card would be found."""
    from .registry import get_registry

    try:
        reg = get_registry()
        reg.ensure_loaded()
        datasets = dict(reg.datasets)
        # the authors' own weights for the recipe of that name, as its plugin records them (published_weights)
        pub = dict(dict(reg.model(name).recipe_table().get(tag) or {}).get("published_weights") or {})
    except Exception:  # noqa: BLE001 - a hint must never hide the error it belongs to
        datasets, pub = {}, {}
    dataset = tag if tag in datasets else (tag[:-len("-local")] if tag.endswith("-local") else None)
    place = (f"a published file goes to {local} with its card {card_path_for(local).name} beside it "
             f"(`ferzoo weights add` registers one in {REGISTRY_FILE})")
    if pub.get("convert"):
        place = (f"the authors publish them as {pub.get('file', 'a checkpoint')} ({pub.get('where', '?')}): "
                 f"`{pub['convert']} --tag {tag}` converts it into {name}.{tag}; or {place}")
    if dataset in datasets:
        needs_dir = dataset != "synthetic"
        command = (f"ferzoo train {name} --dataset {dataset}" + (" --data-dir DIR" if needs_dir else "")
                   + (f" --tag {tag}" if tag != dataset else ""))
        where = ""
        if needs_dir:
            what = datasets[dataset].description
            where = f", DIR being the folder the {dataset!r} reader takes" + (f" ({what})" if what else "")
        return f"`{command}` produces them{where}; {place}"
    return (f"{tag!r} is not a data set name, so train with an explicit tag: `ferzoo train {name} --dataset DATASET "
            f"--data-dir DIR --tag {tag}` (data sets: {', '.join(sorted(datasets)) or 'none registered'}); {place}")


def resolve(name: str, tag: str, *, timeout: float = 30.0) -> tuple[Path, dict]:
    """The verified local file and card for ``name`` / ``tag`` (downloading it if needed and allowed)."""
    local = store_file(name, tag)
    if local.is_file():
        try:
            return local, read_card(local)
        except (OSError, ValueError) as exc:
            raise _fail(name, tag, f"the local store copy is unusable: {exc}") from None
    registered = entries(name)
    if (name, tag) not in registered:
        raise WeightsError(f"model {name!r} has no weights tagged {tag!r}; known tags: {sorted(known_tags(name))} "
                           f"(from {REGISTRY_FILE}, the plugins and the local store {home() / 'store' / name}); "
                           + _missing_weights_hint(name, tag, local))
    card = registered[(name, tag)]
    if "clash" in card:
        raise _fail(name, tag, f"registered twice: in {REGISTRY_FILE} and by {card['clash'].split(' registers')[0]}")
    errors = schema_errors({k: v for k, v in card.items() if k not in ("origin", "plugin", "clash")}, "card")
    if errors:
        raise _fail(name, tag, f"the card from {card['origin']} is invalid: " + "; ".join(errors))
    if card["model"] != name:
        raise _fail(name, tag, f"the card from {card['origin']} describes model {card['model']!r}")
    problems = []
    urls = []
    for src in card["sources"]:
        if "package" in src:
            path = _package_file(src)
            if path is None:
                problems.append(f"embedded file {src['path']!r} is not in package {src['package']!r}")
                continue
            digest = sha256_of(path)
            if digest != card["sha256"]:
                problems.append(f"sha256 mismatch for embedded {path}: file has {digest[:16]}..., "
                                f"the card says {card['sha256'][:16]}...")
                continue
            return path, card
        else:
            urls.append(src["url"])
    if urls:
        return _from_cache_or_download(name, tag, card, urls, problems, timeout)
    raise _fail(name, tag, "; ".join(problems) or "the entry has no usable source")


def _from_cache_or_download(name, tag, card, urls, problems, timeout) -> tuple[Path, dict]:
    target = cache_dir(name, tag) / card["file"]
    if target.is_file():
        digest = sha256_of(target)
        if digest == card["sha256"]:
            return target, card
        # never trust it again: a later call must not find a file that fails its card
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        problems.append(f"the cached copy {target} failed its sha256 check ({digest[:16]}... != "
                        f"{card['sha256'][:16]}...) and was removed")
    if offline():
        problems.append("FERZOO_OFFLINE is set and no verified copy is cached under "
                        f"{cache_dir(name, tag)}")
        raise _fail(name, tag, "; ".join(problems))
    for url in urls:
        try:
            download(url, target, sha256=card["sha256"], size=card.get("size"), timeout=timeout)
        except WeightsError as exc:
            problems.append(str(exc))
            continue
        write_json_atomic(card_path_for(target), {k: v for k, v in card.items() if k != "clash"})
        return target, card
    raise _fail(name, tag, "; ".join(problems))


def download(url: str, target: str | os.PathLike, *, sha256: str, size: int | None = None, timeout: float = 30.0,
             retries: int = 2) -> Path:
    """Download ``url`` to ``target`` atomically; the file appears only if its size and sha256 match.

    A dropped connection or a network error is retried ``retries`` times; wrong bytes are not (the server
    would send them again). Raises :class:`WeightsError` describing what failed."""
    import ferzoo

    target = Path(target)
    last = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(0.2 * attempt)
        try:
            with atomic_path(target, suffix=".download") as tmp:
                got, digest = _fetch(url, tmp, timeout, ferzoo.__version__)
                if size is not None and got != size:
                    raise _BadBytes(f"download of {url} gave {got} bytes, the card says {size}")
                if digest != sha256:
                    raise _BadBytes(f"sha256 mismatch for the download of {url}: got {digest[:16]}..., "
                                    f"the card says {sha256[:16]}...")
            return target
        except _BadBytes as exc:
            raise WeightsError(str(exc)) from None
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500:
                break
        except http.client.IncompleteRead as exc:
            last = f"the connection dropped after {len(exc.partial)} more bytes ({exc.expected} missing)"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            last = f"{type(reason).__name__}: {reason}"
    raise WeightsError(f"download of {url} failed after {attempt + 1} attempt(s): {last}")


class _BadBytes(Exception):
    pass


def _fetch(url: str, dest: Path, timeout: float, version: str) -> tuple[int, str]:
    h = hashlib.sha256()
    got = 0
    req = urllib.request.Request(url, headers={"User-Agent": f"ferzoo/{version}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as fh:
        expected = resp.headers.get("Content-Length")
        if sys.stderr.isatty():
            print(f"ferzoo: downloading {url}", file=sys.stderr)
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            fh.write(chunk)
            h.update(chunk)
            got += len(chunk)
    if expected is not None and got != int(expected):
        raise http.client.IncompleteRead(b"", int(expected) - got)
    return got, h.hexdigest()


# -- loading --------------------------------------------------------------------------------------------------
def _classifier_hint(model, weights_path: Path) -> str:
    """If the file's classifier has another width than the model's, say so (the usual cause of a failure)."""
    try:
        import h5py

        logits_layer = model._outputs_struct["logits"]._keras_history.operation
        kernel = next(v for v in logits_layer.weights if len(v.shape) == 2)
        fan_in, classes = (int(d) for d in kernel.shape)
        shapes = []
        with h5py.File(weights_path, "r") as fh:
            fh.visititems(lambda _, o: shapes.append(tuple(o.shape)) if isinstance(o, h5py.Dataset) else None)
        if (fan_in, classes) in shapes:
            return ""
        other = sorted({s[1] for s in shapes if len(s) == 2 and s[0] == fan_in and s[1] != classes})
        if other:
            return (f"wrong class count: the file's classifier has {other[0]} outputs, the model was built for "
                    f"{classes} classes; ")
    except Exception:  # noqa: BLE001 - only a hint
        pass
    return ""


def load_file(name: str | None, weights_path: str | os.PathLike, card: Mapping | None = None, verify: bool = True,
              *, tag: str | None = None, **build_kwargs):
    """Build the model a card describes and load its weights file; errors name the file and the mismatch.

    ``build_kwargs`` may repeat what the card says (``num_classes``, ``input_shape``, ``class_names``) and
    override build config; a contradiction with the card is an error."""
    import ferzoo

    weights_path = Path(weights_path)
    label = f"model {name or '?'!r}, weights {tag!r}" if tag else f"weights file {weights_path}"
    if not weights_path.is_file():
        raise FileNotFoundError(f"{label}: weights file {weights_path} does not exist")
    card = dict(card or read_card(weights_path))
    if name is not None and card["model"] != name:
        raise WeightsError(f"{label}: these weights are for model {card['model']!r}, not {name!r}")
    if verify and card.get("sha256"):
        digest = sha256_of(weights_path)
        if digest != card["sha256"]:
            raise WeightsError(f"{label}: sha256 mismatch: {weights_path} has {digest[:16]}..., the card says "
                               f"{card['sha256'][:16]}...; the file is corrupt or was replaced")
    spec = card["input_spec"]
    names = list(card["class_names"])
    shape = (int(spec["height"]), int(spec["width"]), int(spec["channels"]))
    kwargs = dict(build_kwargs)
    if "num_classes" in kwargs and int(kwargs.pop("num_classes")) != len(names):
        raise WeightsError(f"{label}: wrong class count: asked for {build_kwargs['num_classes']} classes, "
                           f"the weights have {len(names)} ({', '.join(names)})")
    if "input_shape" in kwargs and kwargs.get("input_shape") is not None and \
            tuple(int(v) for v in kwargs.pop("input_shape")) != shape:
        raise WeightsError(f"{label}: asked for input shape {tuple(build_kwargs['input_shape'])}, "
                           f"the weights were trained for {shape}")
    kwargs.pop("input_shape", None)
    if "class_names" in kwargs and kwargs.get("class_names") is not None and \
            list(kwargs.pop("class_names")) != names:
        raise WeightsError(f"{label}: asked for classes {list(build_kwargs['class_names'])}, "
                           f"the weights' classes are {names}")
    kwargs.pop("class_names", None)
    recipe = kwargs.pop("recipe", "default")
    init = set(ferzoo.model_info(card["model"]).init_config)
    config = {**{k: v for k, v in card.get("config", {}).items() if k not in init}, **kwargs}
    model = ferzoo.build(card["model"], num_classes=len(names), input_shape=shape, class_names=names,
                         recipe=recipe, **config)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_weights_into(model, weights_path)
        # Keras only warns for some partial loads (layers keep their fresh weights): treat them as failures
        partial = [str(w.message) for w in caught if any(
            s in str(w.message) for s in ("could not be loaded", "freshly-initialized", "Skipping"))]
        if partial:
            raise ValueError(partial[0])
    except Exception as exc:  # noqa: BLE001 - h5py / keras raise many types for a bad file
        hint = _classifier_hint(model, weights_path)
        raise WeightsError(f"{label}: cannot load {weights_path.name} into {card['model']!r} "
                           f"({len(names)} classes, input {shape}): {hint}{type(exc).__name__}: "
                           f"{_condense(exc)}") from None
    model.weights_card = card
    model.eval_crop = card.get("eval_crop")
    model.tta = card.get("tta")
    return model


def _condense(exc: BaseException) -> str:
    lines = [l.strip() for l in str(exc).strip().splitlines() if l.strip()]
    detail = next((l for l in lines[1:] if "shape" in l), None)
    return " ".join(x for x in (lines[0] if lines else "", detail) if x)[:600]


def _looks_like_path(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    text = str(weights)
    return text.endswith(WEIGHTS_SUFFIX) or "/" in text or os.sep in text


def weights_file(weights: str | os.PathLike, label: str) -> Path:
    """A weights path, or a folder holding exactly one weights file, -> that file; errors start with ``label``."""
    path = Path(weights)
    if path.is_dir():
        found = sorted(path.glob(f"*{WEIGHTS_SUFFIX}"))
        if len(found) != 1:
            raise FileNotFoundError(f"{label}: {path}: expected one {WEIGHTS_SUFFIX} file in the folder, found "
                                    f"{[p.name for p in found] or 'none'}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{label}: weights file {path} does not exist")
    return path


def load(name: str, weights: str | os.PathLike | None = None, **build_kwargs):
    """``ferzoo.load``: build ``name``; with ``weights`` a tag or a path, load those weights (see module doc)."""
    import ferzoo

    ferzoo.model_info(name)  # unknown model -> error listing the known ones
    if weights is None:
        return ferzoo.build(name, **build_kwargs)
    if _looks_like_path(weights):
        return load_file(name, weights_file(weights, f"model {name!r}"), **build_kwargs)
    tag = str(weights)
    path, card = resolve(name, tag)
    try:
        return load_file(name, path, card, tag=tag, **build_kwargs)
    except WeightsError as exc:
        raise WeightsError(f"{exc}; known tags: {sorted(known_tags(name))}") from None


# -- maintenance of zoo_registry.json -------------------------------------------------------------------------
def registry_card(weights_path: str | os.PathLike, *, sources: list[dict], license: str, dataset_terms: str,
                  **extra) -> dict:
    """A registry entry for a weights file written by :func:`save`: its card plus sources and terms, with
    sha256 and size taken from the file itself."""
    weights_path = Path(weights_path)
    card = read_card(weights_path)
    card.update(file=weights_path.name, sha256=sha256_of(weights_path), size=weights_path.stat().st_size,
                sources=sources, license=license, dataset_terms=dataset_terms, **extra)
    card.setdefault("num_classes", len(card["class_names"]))
    card.pop("origin", None)
    return card


def sync_registry(path: str | os.PathLike | None = None, models: list[str] | None = None) -> dict:
    """Refresh each model's plugin, description and paper in ``zoo_registry.json`` from the loaded plugins,
    keeping its weight entries; atomic. Returns the new catalogue. (Recipes are not copied here: they live
    in their plugin only, and each weight card records the recipe that trained it.)"""
    def refresh(data: dict) -> bool:
        _refresh_models(data, models)
        return True

    return update_registry(refresh, path)


def _refresh_models(data: dict, models: list[str] | None = None) -> None:
    """In place: each model's plugin, description and paper from the loaded plugins, weight entries kept."""
    import ferzoo

    for name in models or ferzoo.list_models():
        spec = ferzoo.model_info(name)
        entry = data["models"].setdefault(name, {"plugin": spec.plugin, "weights": {}})
        entry.update(plugin=spec.plugin, description=spec.description, paper=spec.paper)
        entry.setdefault("weights", {})
        data["models"][name] = {k: entry[k] for k in ("plugin", "description", "paper", "weights")}
    data["models"] = dict(sorted(data["models"].items()))


def half_precision_copy(source: str | os.PathLike, output: str | os.PathLike, check_images=None, *,
                        tta="card", note: str | None = None) -> Path:
    """``source`` (a weights file with its card) re-saved with float16 arrays at ``output``, card kept.

    The new card records ``storage_dtype: float16``, the source file's sha256 (``converted_from``) and
    ``half_check``: the top-1 agreement and max |dp| of the two files on ``check_images`` (default: 256
    generated images of the model's input shape). ``tta``: the copy's test-time augmentation (default: the
    source card's; ``None`` / ``"flip"`` / ``"tencrop"``); ``note`` is added to the card."""
    import numpy as np

    source, output = Path(source), Path(output)
    if output.suffixes[-2:] != [".weights", ".h5"]:
        raise ValueError(f"--output {output}: must end in {WEIGHTS_SUFFIX}")
    card = read_card(source)
    full = load_file(card["model"], source)
    if check_images is None:
        check_images = np.random.default_rng(0).uniform(0, 255, (256, *full.input_shape_hwc)).astype("float32")
    if tta != "card":
        full.tta = tta
    reference = np.asarray(full.predict(check_images, verbose=0))
    fields = {k: v for k, v in card.items() if k not in set(full.describe()) | {"file", "ferzoo_version",
                                                                                  "sha256", "size", "save_id",
                                                                                  "storage_dtype"}}
    fields["converted_from"] = {"file": source.name, "sha256": card.get("sha256") or sha256_of(source)}
    if note:
        fields["note"] = note
    with tempfile.TemporaryDirectory() as scratch:  # measure the halved file before it is written in place
        trial = save(full, Path(scratch) / output.name, storage_dtype="float16", **fields)
        half = load_file(card["model"], trial)
        probs = np.asarray(half.predict(check_images, verbose=0))
    fields["half_check"] = {"n": int(len(probs)), "max_abs_diff": float(np.abs(probs - reference).max()),
                            "top1_agreement": float(np.mean(probs.argmax(-1) == reference.argmax(-1)))}
    save(half, output, storage_dtype="float16", **fields)
    return output


def set_card_tta(weights_path: str | os.PathLike, tta: str | None, *, note: str | None = None) -> dict:
    """Rewrite the card beside ``weights_path`` (atomically) so that the weights load with test-time
    augmentation ``tta``; the weights file and its sha256 stay as they are. ``note`` replaces the card's note."""
    from .recipes import TTA_CHOICES

    if tta not in TTA_CHOICES:
        raise ValueError(f"--tta: must be one of none, {', '.join(c for c in TTA_CHOICES if c)}; got {tta!r}")
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: no such weights file")
    card = read_card(weights_path)
    if card.get("sha256") and card["sha256"] != sha256_of(weights_path):
        raise ValueError(f"{weights_path}: the file's sha256 does not match its card; not rewriting the card")
    card["tta"] = tta
    if note is not None:
        card["note"] = note
    write_json_atomic(card_path_for(weights_path), card)
    return card


def add_to_registry(weights_path: str | os.PathLike, tag: str, *, license: str, dataset_terms: str,
                    package: str | None = None, urls: list[str] | tuple[str, ...] = (),
                    metrics_command: str | None = None, registry: str | os.PathLike | None = None) -> dict:
    """Add or replace the entry ``MODEL.tag`` of ``registry`` (default: the package's ``zoo_registry.json``)
    for ``weights_path`` and its card (``ferzoo weights add``); atomic, schema-checked. ``package``: the file
    is embedded in this importable package (its path is taken relative to it); ``urls``: where it is
    published. Returns the entry."""
    import importlib.util

    target = Path(registry) if registry else registry_path()
    wp = Path(weights_path).resolve()
    if not wp.is_file():
        raise FileNotFoundError(f"WEIGHTS: {weights_path}: no such weights file")
    sources = []
    if package:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"--package: {package!r} is not an importable package")
        base = Path(next(iter(spec.submodule_search_locations))).resolve()
        try:
            sources.append({"package": package, "path": wp.relative_to(base).as_posix()})
        except ValueError:
            raise ValueError(f"--package: {wp} is not inside package {package!r} ({base})") from None
    sources += [{"url": u} for u in urls]
    if not sources:
        raise ValueError("--package/--url: give --package and/or --url: where the file can be had")
    card = registry_card(wp, sources=sources, license=license, dataset_terms=dataset_terms)
    if metrics_command and isinstance(card.get("metrics"), dict):
        card["metrics"]["command"] = metrics_command
    model = card["model"]

    def put(data: dict) -> bool:
        if model not in data["models"]:
            _refresh_models(data, [model])
        data["models"][model]["weights"][tag] = card
        return True

    update_registry(put, target)
    return card


def update_registry(change: Callable[[dict], bool], registry: str | os.PathLike | None = None) -> dict | None:
    """Read ``registry`` (default: the package's ``zoo_registry.json``), let ``change`` edit the data in place
    (it returns whether it changed anything), then schema-check and write it atomically and forget the cached
    copy. The one read-validate-write of the registry (``ferzoo weights add`` / ``sync``, ``ferzoo benchmark
    --record``). Returns the data written, or ``None`` when ``change`` changed nothing (nothing is written)."""
    target = Path(registry) if registry else registry_path()
    data = json.loads(target.read_text()) if target.exists() else {"format_version": 1, "models": {}}
    if not change(data):
        return None
    validate_registry(data, str(target))
    write_json_atomic(target, data)
    _zoo_registry_cached.cache_clear()
    return data


# -- packing trained weights for shipping ------------------------------------------------------------------------
#: the evaluation protocols ``pack`` measures: name -> ``FERModel.tta``
PROTOCOLS = {"single": None, "flip": "flip", "tencrop": "tencrop"}
PROTOCOL_TEXT = {
    "single": "one forward pass of the face as given",
    "flip": "mean probabilities of the face and its mirror image",
    "tencrop": "the face enlarged x13/12, mean probabilities over its four corner crops, centre crop and their "
               "mirror images",
}
#: ``pack`` ships int8 when the accuracy (with the card's tta) drops by less than this many points, else float16
PACK_MAX_DROP = 0.3


@contextlib.contextmanager
def quiet_retracing():
    """Silence TensorFlow's "triggered tf.function retracing" warning: each test-time augmentation and the last,
    smaller batch of a split trace the predict step anew, which is expected here, not a mistake to report."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def measure(model, data) -> dict[str, dict]:
    """Accuracy, balanced accuracy, macro-F1 (and the rest of ``model.evaluate``'s report) of ``model`` on
    ``data`` (a batched, labelled ``tf.data`` pipeline) under each of :data:`PROTOCOLS`."""
    with quiet_retracing():
        return {name: dict(model.evaluate(data, verbose=0, tta=tta)) for name, tta in PROTOCOLS.items()}


def _protocol_of(tta) -> str:
    return next(name for name, t in PROTOCOLS.items() if t == tta)


def pack(source: str | os.PathLike, into: str | os.PathLike, *, tag: str, dataset: str, data_dir=None,
         split: str = "val", dataset_options: Mapping | None = None, model: str | None = None,
         max_drop: float = PACK_MAX_DROP, batch_size: int = 64, tta="card", command: str | None = None,
         say=None) -> Path:
    """Ship trained weights (``ferzoo weights pack``): measure ``source`` (a ``.weights.h5`` with its card, or a
    run folder holding one) on ``dataset``'s ``split`` with every protocol of :data:`PROTOCOLS`; store it as
    ``int8-per-channel``, measure that file again, and keep it if the accuracy with the card's test-time
    augmentation drops by less than ``max_drop`` points, else store (and measure) ``float16``. Writes
    ``into/<model>_<tag>.weights.h5`` and its card atomically: the card's ``metrics`` are the measurement of
    that very file (``command``: this one), and ``packing`` records each storage's accuracies and size, the
    rule and the protocols. ``tta``: the shipped card's test-time augmentation (``None`` / ``"flip"`` /
    ``"tencrop"``; default ``"card"``, the source card's), which is also the protocol the int8 rule is judged on.
    Returns the path. Arguments are checked before any model loads."""
    say = say or (lambda line: print(f"ferzoo: {line}", file=sys.stderr))
    src, card, out = _check_pack(source, into, tag=tag, model=model, max_drop=max_drop, tta=tta)
    ds = open_split(dataset, data_dir, split, dataset_options)
    from .data import prepare

    full = load_file(card["model"], src, card)
    if tta != "card":
        full.tta = tta
    crop = {"load_size": full.eval_crop, "crop": "center"} if full.eval_crop else {}
    data = prepare(ds, full.input_shape_hwc, batch_size=batch_size, **crop)
    protocol = _protocol_of(full.tta)
    with tempfile.TemporaryDirectory(prefix="ferzoo-pack-") as scratch:
        trials = _PackTrials(full, src, card, data, Path(scratch), say)
        trials.run(INT8)
        drop = 100 * (trials.results[trials.source_storage][protocol]["accuracy"]
                      - trials.results[INT8][protocol]["accuracy"])
        chosen = INT8 if drop < float(max_drop) else "float16"
        if chosen != INT8:
            trials.run("float16")
        say(f"accuracy drop with int8 ({protocol}): {drop:.2f} points; limit {float(max_drop):g}: storing {chosen}")
        metrics = _packed_metrics(trials.results[chosen], protocol, split=split, tta=full.tta, storage=chosen,
                                  command=command)
        packing = {
            "chosen": chosen, "protocol": protocol, "int8_drop_points": round(drop, 4),
            "rule": f"int8-per-channel if the {split} accuracy with the card's test-time augmentation ({protocol}) "
                    f"drops by less than {float(max_drop):g} points against {trials.source_storage}, else float16",
            "protocols": {p: PROTOCOL_TEXT[p] for p in PROTOCOLS},
            "dataset": dataset, "split": split,
            "accuracy": {storage: {p: r[p]["accuracy"] for p in PROTOCOLS} for storage, r in trials.results.items()},
            "sizes": dict(trials.sizes), "command": command,
        }
        new_card = _packed_card(card, src, out, storage=chosen, metrics=metrics, tta=full.tta, packing=packing)
        save_weights_and_card(None, out, new_card, arrays_from=trials.files[chosen])
    return out


def _check_pack(source, into, *, tag, model, max_drop, tta) -> tuple[Path, dict, Path]:
    """``pack``'s arguments, checked before any model loads: the source file and its card, and the output path."""
    src = weights_file(source, "RUN_WEIGHTS")
    try:
        card = read_card(src)
    except (OSError, ValueError) as exc:
        raise ValueError(f"RUN_WEIGHTS: {exc}") from None
    name = card["model"]
    if model is not None and model != name:
        raise ValueError(f"--model: {src} holds weights for {name!r}, not {model!r}")
    if not tag or any(c in tag for c in "/\\. "):
        raise ValueError(f"--tag: a tag is a word without '/', '.' or spaces (e.g. fer2013), got {tag!r}")
    into = Path(into)
    if into.exists() and not into.is_dir():
        raise ValueError(f"--into: {into} is a file, not a folder")
    if not (0 <= float(max_drop) <= 100):
        raise ValueError(f"--max-drop: must be a number of points in [0, 100], got {max_drop}")
    from .recipes import TTA_CHOICES

    if tta != "card" and tta not in TTA_CHOICES:
        raise ValueError(f"--tta: must be one of none, {', '.join(c for c in TTA_CHOICES if c)} (default: the "
                         f"card's), got {tta!r}")
    out = into / f"{name}_{tag}{WEIGHTS_SUFFIX}"
    if out.resolve() == src.resolve():
        raise ValueError(f"--into: {out} is RUN_WEIGHTS itself; pack into another folder")
    return src, card, out


class _PackTrials:
    """``pack``'s measurements: the source as it is, then each storage written to ``scratch``, reloaded from that
    file and measured again (``results`` and ``sizes`` by storage name; ``files`` the written ones)."""

    def __init__(self, full, src: Path, card: dict, data, scratch: Path, say):
        self.full, self.card, self.data, self.scratch, self.say = full, card, data, scratch, say
        self.source_storage = storage_of(src)
        self.results = {self.source_storage: measure(full, data)}
        self.sizes = {self.source_storage: src.stat().st_size}
        self.files: dict[str, Path] = {}
        say(f"{src.name} ({self.source_storage}): " + _accuracies_text(self.results[self.source_storage]))

    def run(self, storage: str) -> None:
        path = self.files[storage] = self.scratch / f"{storage}{WEIGHTS_SUFFIX}"
        write_weights(self.full, path, storage)
        self.sizes[storage] = path.stat().st_size
        stored = load_file(self.card["model"], path, self.card, verify=False)
        self.results[storage] = measure(stored, self.data)
        self.say(f"{storage} storage ({self.sizes[storage] / 1e6:.2f} MB): "
                 + _accuracies_text(self.results[storage]))


def _packed_metrics(result: dict, protocol: str, *, split, tta, storage, command) -> dict:
    """The shipped card's ``metrics``: the chosen file's measurement with the card's protocol, and every protocol's
    accuracy beside it."""
    final = result[protocol]
    metrics = {"split": split, "accuracy": final["accuracy"], "balanced_accuracy": final["balanced_accuracy"],
               "macro_f1": final["macro_f1"], "num_examples": final["num_examples"],
               "confusion_matrix": final["confusion_matrix"], "tta": tta,
               "single_pass_accuracy": result["single"]["accuracy"],
               "flip_accuracy": result["flip"]["accuracy"],
               "tencrop_accuracy": result["tencrop"]["accuracy"],
               "storage": storage}
    if command:
        metrics["command"] = command
    return metrics


def _packed_card(card: dict, src: Path, out: Path, *, storage, metrics, tta, packing) -> dict:
    """The source card less what belongs to the source file, with the training faces' framing (as the data set's
    reader states it) and the packing's results."""
    import ferzoo

    dropped = ("sha256", "size", "save_id", "origin", "sources", "license", "dataset_terms", "half_check",
               "clash", "plugin")
    new_card = {k: v for k, v in card.items() if k not in dropped}
    if card.get("dataset") in ferzoo.list_datasets():
        from .faces import dataset_framing

        new_card["input_spec"] = {**card["input_spec"], **dataset_framing(card["dataset"])}
    new_card.update(file=out.name, ferzoo_version=ferzoo.__version__, storage_dtype=storage, metrics=metrics,
                    tta=tta, packing=packing, converted_from={"file": src.name, "sha256": card.get("sha256")
                                                              or sha256_of(src)})
    return new_card


def open_split(dataset: str, data_dir, split: str, options: Mapping | None = None):
    """``ferzoo.get_dataset`` for a command's ``--dataset`` / ``--split`` / ``--data-dir``: an unknown data set or
    split, or a reader's refusal, is a ``ValueError`` naming the option."""
    import ferzoo
    from .registry import get_registry

    try:
        spec = get_registry().dataset(dataset)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"--dataset: {exc.args[0] if exc.args else exc}") from None
    if spec.splits and split not in spec.splits:
        raise ValueError(f"--split: data set {dataset!r} has splits {', '.join(spec.splits)}; got {split!r}")
    try:
        return ferzoo.get_dataset(dataset, data_dir=data_dir, split=split, **dict(options or {}))
    except TypeError as exc:
        raise ValueError(f"--dataset-option: data set {dataset!r}: {exc}") from None
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ValueError(f"--data-dir: {exc}") from None


def _accuracies_text(result: Mapping) -> str:
    return ", ".join(f"{p} {100 * result[p]['accuracy']:.2f}%" for p in PROTOCOLS)
