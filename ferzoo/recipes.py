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
``label_smoothing``, ``epochs``, ``batch_size``, ``monitor``, ``augmentation``, ``sampler`` and free keys
that the data pipeline and the ``train`` driver read.
"""

from __future__ import annotations

import copy
import math
from typing import Mapping

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
}

SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine")


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
    recipe = merge(DEFAULT_RECIPE, table.get("default", {}))
    if dataset and dataset != "default":
        if dataset in table:
            recipe = merge(recipe, table[dataset])
        recipe["dataset"] = dataset
    validate_schedule(recipe.get("schedule"), model)
    return recipe


def validate_schedule(schedule, model: str = "?") -> None:
    if schedule is None:
        return
    kind = schedule.get("type") if isinstance(schedule, Mapping) else None
    if kind not in SCHEDULES:
        raise ValueError(f"model {model!r}: recipe schedule type {kind!r} is not one of {list(SCHEDULES)}")


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
