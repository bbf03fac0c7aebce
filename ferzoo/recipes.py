"""Training recipes as data: optimizer, per-epoch schedule, loss weights, batch size, epochs, augmentation.

A plugin's ``ModelSpec.recipes`` maps a data set name to a recipe dict; ``"default"`` is the base and the
others override its keys (nested dicts are merged). Recognised keys:

``optimizer``  ``{"class_name": "adam", "config": {"learning_rate": 0.005}}`` (any Keras optimizer)
``schedule``   per-epoch learning rate, ``None`` or one of
               ``{"type": "step", "step_epochs": 10, "gamma": 0.1}``,
               ``{"type": "multistep", "milestones": [10, 20], "gamma": 0.1}``,
               ``{"type": "exponential", "gamma": 0.6}``, ``{"type": "cosine", "epochs": 40, "min_lr": 0}``
``coupled_weight_decay``  L2 added to the gradient of every trainable variable (PyTorch SGD ``weight_decay``)
``loss_weights``          ``{aux_loss_name: factor}``
``label_smoothing``, ``epochs``, ``batch_size``, ``monitor``, ``augmentation``, ``sampler``
``config``     model and loss config for this data set (DAF-CNN's margin m = 11 on FER-2013, 13 on SFEW);
               ``ferzoo.build(name, recipe=...)`` applies it under the caller's own config
``val_split``  the data set split that validates and selects (``"val"``; RAF-DB has only ``"test"``;
               ``None``: train without validation)
``input_shape`` ``[H, W, C]``: the input the recipe trains at when ``--input-shape`` names none (``None``: the
               paper's); ``load_size`` is stated for this input
``load_size``  ``[H, W]``: images are resized to this first, then randomly cropped to the model's input for
               training and centre-cropped for evaluation (LNLAttenNet 154 -> 144; FDRL 256 -> 224)
``dataset_options`` options for the data set reader (``ferzoo train`` passes them; ``--dataset-option``
               overrides them one key at a time), e.g. Deep-Emotion's fixed JAFFE split
``init_from``  a weight tag of this model (or a weights file) that ``ferzoo train`` starts from (fine-tuning;
               ``--init-from`` overrides it, ``--init-from none`` trains from scratch)
``teachers``   weights (``NAME.TAG`` or files) to distil into the model (``--teacher`` replaces them); the card
               records each with its sha256 (see :mod:`ferzoo.distill`)
``distillation`` ``{"temperature", "alpha", "mode"}`` of that distillation (``--temperature``, ``--alpha``,
               ``--distill-mode`` override them one at a time)
``published_weights`` where the authors publish their weights of this recipe and the ``convert`` command that
               turns them into this tag (``{"file", "where", "convert"}``); a missing tag's error names them
``protocol``   how a run ends and what it reports, as data (see :data:`DEFAULT_PROTOCOL`):
               ``keep`` "best" (the epoch with the best ``monitor``) or "last";
               ``report_mean_last`` k > 0 also reports the mean of the last k epochs' validation metrics;
               ``reduce_on_plateau`` ``{"monitor", "factor", "patience", "min_lr", "reload_best", "min_delta"}``
               multiplies the learning rate by ``factor`` once ``patience`` epochs in a row have not improved
               (:func:`plateau_step`) and, with ``reload_best``, reloads the best weights first;
               ``drop_remainder`` drops the last partial training batch;
               ``tta`` one of :data:`TTA_CHOICES` (see ``FERModel.tta``): the test-time augmentation of the
               final report, stored in the card so that ``load`` / ``predict`` use it too (the single-pass accuracy is reported beside it)
and the informational keys of :data:`INFO_KEYS` (``note``, ``paper_test_accuracy``, ...), which nothing reads to
train. Any other key is refused by :func:`resolve_recipe`, naming it: a misspelt key must never be dropped. The
same holds inside ``optimizer`` (``class_name`` and ``config``), ``schedule`` (:data:`SCHEDULE_KEYS`),
``sampler``, ``protocol`` and ``reduce_on_plateau``.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Mapping

DEFAULT_RECIPE = {
    "optimizer": {"class_name": "adam", "config": {"learning_rate": 1e-3}},
    "schedule": None,
    "coupled_weight_decay": 0.0,
    "loss_weights": {},
    "label_smoothing": 0.0,
    "epochs": 10,
    "batch_size": 64,
    "monitor": "val_accuracy",
    "augmentation": None,
    "sampler": None,
    "config": {},
    "val_split": "val",
    "load_size": None,
    "input_shape": None,
    "dataset_options": {},
    "init_from": None,
    "teachers": [],
    "distillation": {},
    "protocol": {},
}

#: recipe keys that inform (what the paper reports, where its numbers come from) and are never read to train;
#: an explicit list, so that a misspelt training key is refused rather than carried along as information
INFO_KEYS = ("note", "test_split", "paper_test_accuracy", "paper_val_accuracy", "paper_ablation_test_accuracy",
             "paper_alpha_sweep", "paper_patch_sweep", "paper_overlap_sweep", "published_weights")
#: every key a recipe may carry
KNOWN_KEYS = tuple(DEFAULT_RECIPE) + INFO_KEYS

DEFAULT_PROTOCOL = {"keep": "best", "report_mean_last": 0, "reduce_on_plateau": None, "drop_remainder": False,
                    "tta": None}
PLATEAU_KEYS = {"monitor": "val_loss", "factor": 0.1, "patience": 10, "min_lr": 0.0, "reload_best": False,
                "min_delta": 0.0}

#: the test-time augmentations a model, a recipe and a weights card can name (``None``: one pass); the one
#: list that ``FERModel.tta``, recipe protocols and the ``--tta`` options check against
TTA_CHOICES = (None, "flip", "tencrop")
#: the same as command-line choices (``none`` for ``None``)
TTA_OPTIONS = tuple(c or "none" for c in TTA_CHOICES)

SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine")
#: the keys each schedule type reads (``type`` besides): any other is refused, not carried along unread
SCHEDULE_KEYS = {"constant": (), "step": ("step_epochs", "gamma"), "multistep": ("milestones", "gamma"),
                 "exponential": ("gamma",), "cosine": ("epochs", "min_lr")}
#: the keys of an optimizer entry (the optimizer's own arguments go in ``config``, which Keras checks)
OPTIMIZER_KEYS = ("class_name", "config")


def tta_option(option: str | None, card_tta: str | None) -> str | None:
    """The test-time augmentation an option asks for (``--tta`` of export / serve): ``"card"`` (or ``None``)
    keeps the weights' own ``card_tta``, ``"none"`` is one pass, any other option is that augmentation."""
    if option in (None, "card"):
        return card_tta
    return None if option == "none" else option


def key_values(items) -> dict:
    """``["KEY=VALUE", ...]`` (``--config`` / ``--dataset-option`` on a command line) -> a dict; each value is read
    as JSON where it is JSON (``3``, ``true``, ``[1, 2]``), else kept as the string. ValueError names a bad item."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def read_recipe_file(path) -> dict:
    """A plugin's recipe table from a JSON file (data set name -> recipe, with a ``"default"``); errors name the
    file and the line. Plugins call this from their ``recipes`` hook target (no TensorFlow is imported)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(table, dict) or "default" not in table:
        raise ValueError(f"{path}: expected an object with a 'default' recipe")
    return table


def merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not _replaces(out[key], value):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _replaces(base: Mapping, override: Mapping) -> bool:
    """An override naming another optimizer (``class_name``) or schedule (``type``) replaces the base
    mapping instead of merging into it (an Adam override must not inherit SGD's ``momentum``)."""
    return any(k in base and k in override and base[k] != override[k] for k in ("class_name", "type"))


def resolve_recipe(table: Mapping[str, Mapping], dataset: str | None = None, model: str = "?") -> dict:
    """The recipe ``dataset`` of ``table`` merged over its ``default`` and :data:`DEFAULT_RECIPE`, every value
    checked; a key outside :data:`KNOWN_KEYS` is an error naming it, the model and the recipe."""
    check_keys(table.get("default", {}), model, "default")
    recipe = merge(DEFAULT_RECIPE, table.get("default", {}))
    if dataset and dataset != "default":
        if dataset in table:
            check_keys(table[dataset], model, dataset)
            recipe = merge(recipe, table[dataset])
        recipe["dataset"] = dataset
    validate_schedule(recipe.get("schedule"), model)
    validate_optimizer(recipe.get("optimizer"), model)
    validate_sampler(recipe.get("sampler"), model)
    recipe["protocol"] = protocol_of(recipe, model)
    _check_load_size(recipe.get("load_size"), model)
    if not isinstance(recipe.get("config") or {}, Mapping):
        raise ValueError(f"model {model!r}: recipe 'config' must be a mapping of config keys, got {recipe['config']!r}")
    if not isinstance(recipe.get("dataset_options") or {}, Mapping):
        raise ValueError(f"model {model!r}: recipe 'dataset_options' must be a mapping of reader options, got "
                         f"{recipe['dataset_options']!r}")
    if recipe.get("init_from") is not None and (not isinstance(recipe["init_from"], str) or not recipe["init_from"]):
        raise ValueError(f"model {model!r}: recipe 'init_from' must be a weight tag or a weights file, got "
                         f"{recipe['init_from']!r}")
    return recipe


def _unknown_keys(keys) -> str:
    """``unknown key 'a'`` / ``unknown keys 'a', 'b'``: the start of every refusal of a recipe key."""
    return f"unknown key{'s' if len(keys) > 1 else ''} {', '.join(map(repr, keys))}"


def check_keys(entry: Mapping, model: str = "?", recipe: str = "?") -> None:
    """Refuse a recipe entry with a key that neither training (:data:`DEFAULT_RECIPE`) nor information
    (:data:`INFO_KEYS`) knows."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"model {model!r}: recipe {recipe!r} must be a mapping of recipe keys, got {entry!r}")
    unknown = sorted(set(entry) - set(KNOWN_KEYS))
    if unknown:
        raise ValueError(f"model {model!r}: recipe {recipe!r} has {_unknown_keys(unknown)}; known keys: "
                         f"{', '.join(DEFAULT_RECIPE)} (informational: {', '.join(INFO_KEYS)})")


def protocol_of(recipe: Mapping, model: str = "?") -> dict:
    """The recipe's ``protocol`` with defaults filled in and every value checked."""
    given = dict(recipe.get("protocol") or {})
    unknown = sorted(set(given) - set(DEFAULT_PROTOCOL))
    if unknown:
        raise ValueError(f"model {model!r}: unknown recipe protocol keys {unknown}; known: {sorted(DEFAULT_PROTOCOL)}")
    proto = {**DEFAULT_PROTOCOL, **given}
    if proto["keep"] not in ("best", "last"):
        raise ValueError(f"model {model!r}: protocol keep must be 'best' or 'last', got {proto['keep']!r}")
    if proto["tta"] not in TTA_CHOICES:
        named = [repr(c) for c in TTA_CHOICES if c]
        raise ValueError(f"model {model!r}: protocol tta must be null, {', '.join(named[:-1])} or {named[-1]}, "
                         f"got {proto['tta']!r}")
    k = proto["report_mean_last"]
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"model {model!r}: protocol report_mean_last must be an integer >= 0, got {k!r}")
    plateau = proto["reduce_on_plateau"]
    if plateau:
        plateau = dict(plateau)
        unknown = sorted(set(plateau) - set(PLATEAU_KEYS))
        if unknown:
            raise ValueError(f"model {model!r}: unknown reduce_on_plateau keys {unknown}; known: {sorted(PLATEAU_KEYS)}")
        plateau = {**PLATEAU_KEYS, **plateau}
        if not 0 < float(plateau["factor"]) < 1:
            raise ValueError(f"model {model!r}: reduce_on_plateau factor must be in (0, 1), got {plateau['factor']!r}")
        if int(plateau["patience"]) < 0:
            raise ValueError(f"model {model!r}: reduce_on_plateau patience must be >= 0, got {plateau['patience']!r}")
        proto["reduce_on_plateau"] = plateau
    proto["drop_remainder"] = bool(proto["drop_remainder"])
    return proto


def plateau_step(plateau: Mapping, value, best, wait: int) -> tuple[Any, int, bool]:
    """One epoch of reduce-on-plateau: ``(best, wait, drop)`` after an epoch whose ``plateau["monitor"]`` is
    ``value`` (``None``: not measured), from the state ``best`` / ``wait`` after the previous epoch.

    An epoch improves when it beats ``best`` by more than ``min_delta`` (up for accuracies, down for losses);
    the rate drops once ``patience`` epochs in a row have not improved (Keras' ``ReduceLROnPlateau``; with
    patience 2 the second epoch without improvement drops it), and the count starts again after a drop."""
    maximize = "loss" not in str(plateau["monitor"])
    delta = float(plateau.get("min_delta", 0.0))
    improved = value is not None and (best is None or (value > best + delta if maximize else value < best - delta))
    if improved:
        return value, 0, False
    wait += 1
    if wait >= int(plateau["patience"]):
        return best, 0, True
    return best, wait, False


def _check_load_size(size, model: str) -> None:
    if size is None:
        return
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ValueError(f"model {model!r}: recipe load_size must be [height, width] in pixels, got {size!r}")


def validate_schedule(schedule, model: str = "?") -> None:
    if schedule is None:
        return
    kind = schedule.get("type") if isinstance(schedule, Mapping) else None
    if kind not in SCHEDULES:
        raise ValueError(f"model {model!r}: recipe schedule type {kind!r} is not one of {list(SCHEDULES)}")
    required = {"step": ("step_epochs",), "multistep": ("milestones",), "exponential": ("gamma",),
                "cosine": ("epochs",)}.get(kind, ())
    missing = [key for key in required if key not in schedule]
    if missing:
        raise ValueError(f"model {model!r}: recipe schedule {kind!r} needs {', '.join(missing)} "
                         f"(got {dict(schedule)})")
    unknown = sorted(set(schedule) - {"type", *SCHEDULE_KEYS[kind]})
    if unknown:
        known = ", ".join(SCHEDULE_KEYS[kind]) or "no other key"
        raise ValueError(f"model {model!r}: recipe schedule {kind!r} has {_unknown_keys(unknown)}; it reads type and "
                         f"{known}")


def validate_optimizer(spec, model: str = "?") -> None:
    """An optimizer entry is a Keras optimizer name or ``{"class_name", "config"}``: a learning rate written
    beside ``class_name`` instead of inside ``config`` would otherwise be dropped silently."""
    if spec is None or isinstance(spec, str):
        return
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class_name"), str):
        raise ValueError(f"model {model!r}: recipe optimizer must be a name or {{\"class_name\": ..., \"config\": "
                         f"{{...}}}}, got {spec!r}")
    unknown = sorted(set(spec) - set(OPTIMIZER_KEYS))
    if unknown:
        raise ValueError(f"model {model!r}: recipe optimizer has {_unknown_keys(unknown)}; it reads class_name and "
                         f"config (the optimizer's arguments, e.g. learning_rate, go in config)")
    if not isinstance(spec.get("config", {}), Mapping):
        raise ValueError(f"model {model!r}: recipe optimizer config must be a mapping, got {spec['config']!r}")


def validate_sampler(sampler, model: str = "?") -> None:
    """``None``, ``"balanced"`` or ``{"oversample": ratio}`` (ratio > 0), nothing else."""
    if sampler is None or sampler == "balanced":
        return
    if isinstance(sampler, Mapping) and set(sampler) == {"oversample"}:
        ratio = sampler["oversample"]
        if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0:
            return
    raise ValueError(f"model {model!r}: recipe sampler must be null, \"balanced\" or {{\"oversample\": ratio > 0}}, "
                     f"got {sampler!r}")


def learning_rate_at(schedule: Mapping | None, base_lr: float, epoch: int) -> float:
    """Learning rate for 0-based ``epoch`` under a recipe schedule."""
    if not schedule or schedule.get("type") == "constant":
        return base_lr
    kind = schedule["type"]
    if kind == "step":
        return base_lr * schedule.get("gamma", 0.1) ** (epoch // int(schedule["step_epochs"]))
    if kind == "multistep":
        passed = sum(1 for m in schedule["milestones"] if epoch >= int(m))
        return base_lr * schedule.get("gamma", 0.1) ** passed
    if kind == "exponential":
        return base_lr * schedule["gamma"] ** epoch
    if kind == "cosine":
        total = max(1, int(schedule["epochs"]))
        lo = float(schedule.get("min_lr", 0.0))
        return lo + 0.5 * (base_lr - lo) * (1 + math.cos(math.pi * min(epoch, total) / total))
    raise ValueError(f"unknown schedule type {kind!r}")


def make_optimizer(recipe: Mapping):
    import keras

    spec = copy.deepcopy(recipe.get("optimizer") or DEFAULT_RECIPE["optimizer"])
    if isinstance(spec, str):
        spec = {"class_name": spec, "config": {}}
    return keras.optimizers.get({"class_name": spec["class_name"], "config": spec.get("config", {})})
