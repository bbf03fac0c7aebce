"""The ``train`` driver: data set -> pipeline -> model (recipe) -> fit with best-checkpointing -> store.

Runs under a ``tf.distribute`` strategy (``MirroredStrategy`` when several GPUs are visible, the default
strategy otherwise); checkpoints are written atomically, so an interrupted run never leaves a half-written
weights file where a finished one was.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from . import weights as weights_mod


def pick_strategy(name: str = "auto"):
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name in ("auto", "default"):
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}; use auto, default or mirrored")


def _count(ds) -> int:
    import tensorflow as tf

    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(tf.constant(0, tf.int64), lambda c, _: c + 1))


def train(model_name: str, dataset: str = "synthetic", data_dir: str | None = None, *, epochs: int | None = None,
          batch_size: int | None = None, tag: str | None = None, output: str | None = None,
          recipe: str | None = None, val_split: str = "val", strategy: str = "auto", seed: int = 0,
          mixed_precision: bool = False, limit: int | None = None, verbose: int = 1,
          config: Mapping[str, Any] | None = None, dataset_options: Mapping[str, Any] | None = None,
          command: str | None = None, input_shape=None) -> dict:
    """Train ``model_name`` on ``dataset`` with its recipe; keep the weights with the best validation accuracy.

    Writes ``<output>/<model>.weights.h5`` + card into the local store (tag defaults to the data set name)
    unless ``output`` names another folder. Returns a summary with the validation report.
    ``input_shape`` (H, W, C) overrides the model's default input size (e.g. a reduced size for CPU runs).
    """
    import keras
    import tensorflow as tf

    import ferzoo
    from .data import class_names_of, prepare

    keras.utils.set_random_seed(seed)
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    opts = dict(dataset_options or {})
    ds_spec = ferzoo.get_registry().dataset(dataset)
    train_ds = ferzoo.get_dataset(dataset, data_dir=data_dir, split="train", **opts)
    if val_split in (None, "none"):
        val_split, val_ds = None, None
    elif val_split not in (ds_spec.splits or ()):
        raise ValueError(f"data set {dataset!r} has no split {val_split!r} to select the best epoch on; its splits: "
                         f"{list(ds_spec.splits)}; pass val_split='none' to train without validation")
    else:
        val_ds = ferzoo.get_dataset(dataset, data_dir=data_dir, split=val_split, **opts)
    class_names = class_names_of(train_ds)
    if limit:
        train_ds = ferzoo.data.with_class_names(train_ds.take(limit), class_names)
        if val_ds is not None:
            val_ds = ferzoo.data.with_class_names(val_ds.take(limit), class_names_of(val_ds))

    strat = pick_strategy(strategy)
    recipe_name = recipe or dataset
    spec = ferzoo.model_info(model_name)
    if recipe_name not in spec.recipe_table():
        recipe_name = "default"
    with strat.scope():
        model = ferzoo.build(model_name, num_classes=len(class_names), class_names=class_names,
                             input_shape=tuple(input_shape) if input_shape else None,
                             recipe=recipe_name, **dict(config or {}))
        model.compile()
    rec = model.recipe()
    epochs = int(epochs or rec["epochs"])
    batch_size = int(batch_size or rec["batch_size"]) * strat.num_replicas_in_sync
    shape = model.input_shape_hwc

    augment = None
    if rec.get("augmentation"):
        from .data.augment import build_augmentation

        augment = build_augmentation(rec["augmentation"], shape, seed=seed)
    sampled = train_ds
    if rec.get("sampler"):
        from .data.augment import apply_sampler

        sampled = apply_sampler(train_ds, rec["sampler"], seed=seed)
    n_train = _count(sampled)
    if n_train == 0:
        raise ValueError(f"data set {dataset!r}: the train split is empty")
    train_pipe = prepare(sampled, shape, batch_size=batch_size, class_names=class_names, shuffle=min(n_train, 20000),
                         seed=seed, augment=augment)
    val_pipe = None
    if val_ds is not None:
        val_pipe = prepare(val_ds, shape, batch_size=batch_size, target_class_names=model.class_names)

    if tag is None:
        tag = dataset
    out_dir = Path(output) if output else weights_mod.store_dir(model_name, tag)
    weights_path = out_dir / f"{model_name}{weights_mod.WEIGHTS_SUFFIX}"
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    monitor = (rec.get("monitor") or "val_accuracy") if val_pipe is not None else "accuracy"
    best = _BestCheckpoint(weights_path, monitor, card={"dataset": dataset, "recipe": rec, "command": command})
    history_path = out_dir / "history.json"
    start = time.time()
    hist = model.fit(train_pipe, validation_data=val_pipe, epochs=epochs, verbose=verbose, callbacks=[best])
    train_seconds = time.time() - start
    if best.best_weights is not None:
        model.set_weights(best.best_weights)
    report = None
    card: dict = {"dataset": dataset, "recipe": rec, "command": command, "epochs_run": len(hist.epoch),
                  "best_epoch": best.best_epoch, "train_seconds": round(train_seconds, 1),
                  "train_examples": n_train}
    if val_pipe is not None:
        report = model.evaluate(val_pipe, verbose=0)
        card["metrics"] = {"split": val_split, "accuracy": report["accuracy"],
                           "balanced_accuracy": report["balanced_accuracy"], "macro_f1": report["macro_f1"],
                           "num_examples": report["num_examples"], "confusion_matrix": report["confusion_matrix"]}
    weights_mod.save(model, weights_path, **card)
    weights_mod.write_json_atomic(history_path, {k: [float(v) for v in vals] for k, vals in hist.history.items()})
    return {"model": model, "weights": str(weights_path), "card": weights_mod.read_card(weights_path),
            "report": report, "history": hist.history, "seconds": train_seconds, "tag": tag}


class _BestCheckpoint:
    """Keeps (in memory) and saves (atomically) the weights of the best epoch by ``monitor`` (mode max)."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Impl(keras.callbacks.Callback):
            def __init__(self, path, monitor, card):
                super().__init__()
                self.path, self.monitor, self.card = Path(path), monitor, card
                self.best = -math.inf
                self.best_epoch = None
                self.best_weights = None

            def on_epoch_end(self, epoch, logs=None):
                value = (logs or {}).get(self.monitor)
                if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
                    return
                self.best, self.best_epoch = float(value), epoch + 1
                self.best_weights = self.model.get_weights()
                weights_mod.save(self.model, self.path, **self.card, best_epoch=self.best_epoch,
                                 checkpoint={self.monitor: self.best, "epoch": self.best_epoch})

        return Impl(*args, **kwargs)
