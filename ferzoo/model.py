"""The uniform model: a functional ``keras.Model`` with class names, input spec, recipe and aux losses.

``call`` returns a dict with at least ``logits`` and ``probabilities`` (plus what the plugin exposes, e.g.
``features``). ``predict`` returns probabilities; ``fit`` is Keras' own and applies the plugin's auxiliary
losses through :meth:`FERModel.compute_loss`; ``evaluate`` returns an :class:`~ferzoo.metrics.EvaluationReport`.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from .losses import AuxiliaryLoss
from .metrics import EvaluationReport, classification_report
from .recipes import TTA_CHOICES, learning_rate_at, make_optimizer, resolve_recipe
from .specs import InputSpec


@keras.saving.register_keras_serializable(package="ferzoo")
class Standardize(keras.layers.Layer):
    """``(x / 255 - mean) / std`` per channel: models take raw 0..255 pixels."""

    def __init__(self, mean=(0.0,), std=(1.0,), **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        mean = keras.ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = keras.ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        return (x / 255.0 - mean) / std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="ferzoo")
class FERModel(keras.Model):
    """Built by :func:`ferzoo.build`; do not construct directly."""

    def __init__(self, inputs=None, outputs=None, *, model_name: str, num_classes: int, class_names: Sequence[str],
                 input_spec: Mapping, config: Mapping | None = None, aux_losses: Sequence[AuxiliaryLoss] = (),
                 recipe: str = "default", **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.model_name = model_name
        self.num_classes = int(num_classes)
        self.class_names = list(class_names)
        self.input_spec_info = InputSpec.from_dict(input_spec)
        self.build_config = dict(config or {})
        self.recipe_name = recipe
        self.aux_losses = list(aux_losses)
        for loss in self.aux_losses:
            if not loss.built:
                loss.build()
        self.aux_trackers = [keras.metrics.Mean(name=f"{loss.name}_loss") for loss in self.aux_losses]
        self._main_from_logits = True
        self._aux_weights: dict[str, float] = {}
        self._coupled_wd = 0.0
        self._schedule = None
        self._base_lr = None
        #: ``[H, W]`` when the weights were trained on images resized to that size and cropped to the input
        #: (recipe ``load_size``): inference resizes to it and takes the centre crop
        self.eval_crop = None
        self._tta = None

    #: test-time augmentations :attr:`tta` accepts (``None``: the single image as given)
    TTA_CHOICES = TTA_CHOICES
    #: ``tta="tencrop"`` enlarges the input by this factor (48 -> 52) and cuts the ten crops of the input size
    TENCROP_SCALE = 13 / 12

    @property
    def tta(self) -> str | None:
        """Test-time augmentation of :meth:`predict`, :meth:`predict_classes` and :meth:`evaluate`: ``None``
        (one pass), ``"flip"`` (mean of the probabilities of the image and its mirror image) or ``"tencrop"``
        (the input resized bilinearly by :attr:`TENCROP_SCALE`, e.g. 48 -> 52, then the mean over its four
        corner crops, its centre crop and their five mirror images, each of the input size: ten passes).
        Weights whose card names one (``"tta"``) load with it; the training pass and exports always see the
        plain model."""
        return self._tta

    @tta.setter
    def tta(self, value) -> None:
        value = None if value in (None, "none") else value
        if value not in self.TTA_CHOICES:
            raise ValueError(f"tta must be one of none, {', '.join(c for c in self.TTA_CHOICES if c)}; got {value!r}")
        if value != getattr(self, "_tta", None):
            self.predict_function = None  # traced with the old setting
        self._tta = value

    # -- description -----------------------------------------------------------------------------------------
    @property
    def spec(self):
        from .registry import get_registry

        return get_registry().model(self.model_name)

    @property
    def input_shape_hwc(self) -> tuple[int, int, int]:
        return self.input_spec_info.shape

    def recipe(self, dataset: str | None = None) -> dict:
        """The plugin's training recipe for ``dataset`` (default: the one this model was built for)."""
        return resolve_recipe(self.spec.recipe_table(), dataset or self.recipe_name, self.model_name)

    def describe(self) -> dict:
        return {
            "model": self.model_name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_spec": self.input_spec_info.to_dict(),
            "config": self.card_config(),
            "recipe": self.recipe_name,
            "eval_crop": self.eval_crop,
            "tta": self.tta,
            "aux_losses": [loss.name for loss in self.aux_losses],
            "trainable_params": int(sum(np.prod(v.shape) for v in self.trainable_weights)),
        }

    def get_config(self):
        return {"name": self.name, "model_name": self.model_name, "num_classes": self.num_classes,
                "class_names": list(self.class_names), "input_shape": list(self.input_shape_hwc),
                "config": self.card_config(), "recipe": self.recipe_name}

    def card_config(self) -> dict:
        """The build config without init-only keys (``ModelSpec.init_config``, e.g. a backbone file)."""
        init = set(self.spec.init_config)
        return {k: copy.deepcopy(v) for k, v in self.build_config.items() if k not in init}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from . import build

        return build(config["model_name"], num_classes=config["num_classes"], input_shape=tuple(config["input_shape"]),
                     class_names=config["class_names"], recipe=config.get("recipe", "default"),
                     **config.get("config", {}))

    # -- training --------------------------------------------------------------------------------------------
    def compile(self, optimizer=None, loss=None, metrics=None, *, recipe: str | None = None,
                aux_loss_weights: Mapping[str, float] | None = None, **kwargs):
        """Keras ``compile``; every argument left out comes from the plugin's recipe.

        With no arguments: the recipe's optimizer (and per-epoch schedule, applied by ``fit``), softmax
        cross-entropy on the logits, accuracy, the recipe's aux-loss weights and coupled weight decay.
        A user loss whose ``from_logits`` is true is applied to the logits, any other loss to the probabilities.
        """
        rec = self.recipe(recipe)
        self._schedule = None
        if optimizer is None:
            optimizer = make_optimizer(rec)
            self._schedule = rec.get("schedule")
        if loss is None:
            smoothing = float(rec.get("label_smoothing") or 0.0)
            loss = (_SmoothedSparseCE(smoothing, self.num_classes) if smoothing
                    else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        elif isinstance(loss, (str, dict)):
            loss = keras.losses.get(loss)
        if metrics is None:
            metrics = ["accuracy"]
        self._main_from_logits = bool(getattr(loss, "from_logits", False))
        known = {l.name for l in self.aux_losses}
        weights = {**{k: float(v) for k, v in (rec.get("loss_weights") or {}).items()},
                   **{k: float(v) for k, v in (aux_loss_weights or {}).items()}}
        unknown = sorted(set(weights) - known)
        if unknown:
            raise ValueError(f"model {self.model_name!r}: loss weights for unknown aux losses {unknown}; "
                             f"this model's aux losses: {sorted(known)}")
        self._aux_weights = weights
        self._coupled_wd = float(rec.get("coupled_weight_decay") or 0.0)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        lr = getattr(self.optimizer, "learning_rate", None)
        try:
            self._base_lr = float(keras.ops.convert_to_numpy(lr))
        except Exception:  # noqa: BLE001 - a LearningRateSchedule object: the user owns the schedule
            self._base_lr, self._schedule = None, None

    def aux_loss_weight(self, loss: AuxiliaryLoss) -> float:
        return self._aux_weights.get(loss.name, loss.weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The main loss plus the weighted auxiliary losses (and the coupled weight decay when training).

        Keras divides its compiled loss by the replica count under ``tf.distribute``; the auxiliary terms and the
        weight decay are divided the same way, so N replicas give the gradient of one device on the global
        batch. On training steps only, each auxiliary loss's rule :meth:`~ferzoo.losses.AuxiliaryLoss.update`
        then runs on stop-gradient outputs (validation and ``evaluate`` never move rule-updated centres).
        """
        from .losses import num_replicas

        main = y_pred["logits"] if self._main_from_logits else y_pred["probabilities"]
        total = super().compute_loss(x=x, y=y, y_pred=main, sample_weight=sample_weight, training=training)
        scale = 1.0 / num_replicas()
        if self.aux_losses:
            # under a mixed policy the outputs are float16 / bfloat16: every auxiliary loss (and its centre
            # rule) computes in float32, so distances and squared norms neither overflow nor lose the centres
            y_pred = {k: keras.ops.cast(v, "float32") if _is_low_float(v) else v for k, v in y_pred.items()}
        for loss, tracker in zip(self.aux_losses, self.aux_trackers):
            value = keras.ops.cast(loss.compute(y, y_pred, sample_weight), "float32")
            tracker.update_state(value)
            total = total + (self.aux_loss_weight(loss) * scale) * value
        if self._coupled_wd and training:
            sq = [keras.ops.sum(keras.ops.square(keras.ops.cast(v, "float32"))) for v in self.trainable_variables]
            total = total + (0.5 * self._coupled_wd * scale) * keras.ops.sum(keras.ops.stack(sq))
        if training and y is not None:
            self.update_aux_state(y, y_pred, sample_weight)
        return total

    def update_aux_state(self, y, y_pred, sample_weight=None) -> None:
        """Apply every auxiliary loss's rule update (training steps; called by :meth:`compute_loss`)."""
        frozen = None
        for loss in self.aux_losses:
            if type(loss).update is AuxiliaryLoss.update:
                continue
            if frozen is None:
                frozen = {k: keras.ops.stop_gradient(v) for k, v in y_pred.items()}
            updates = loss.update(y, frozen, sample_weight) or ()
            for var, value in (updates.items() if hasattr(updates, "items") else updates):
                var.assign(keras.ops.cast(value, var.dtype))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["probabilities"], sample_weight)

    def predict(self, x, *args, **kwargs):
        """Keras ``predict`` (probabilities); also takes what :meth:`preprocess` takes: a photo of any size, a
        list of differently sized images, grayscale or RGB(A), which are converted to this model's input."""
        if not isinstance(x, tf.data.Dataset) and not _is_model_batch(x, self.input_shape_hwc):
            x = self.preprocess(x)
        return super().predict(x, *args, **kwargs)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self._tta == "tencrop":
            return self._tencrop_probabilities(x)
        probs = self(x, training=False)["probabilities"]
        if self._tta == "flip":
            probs = 0.5 * (probs + self(keras.ops.flip(x, axis=2), training=False)["probabilities"])
        return probs

    def _tencrop_probabilities(self, x):
        """Mean probabilities over the ten crops of ``x`` enlarged by :attr:`TENCROP_SCALE` (one forward pass
        of ten times the batch; the crop order of :func:`ferzoo.data.tencrop.ten_crop`)."""
        from .data.tencrop import ten_crop

        h, w, c = self.input_shape_hwc
        big = (int(round(h * self.TENCROP_SCALE)), int(round(w * self.TENCROP_SCALE)))
        crops = ten_crop(tf.image.resize(tf.cast(x, "float32"), big, method="bilinear"), (h, w))  # B, 10, h, w, c
        n = tf.shape(crops)[0]
        probs = self(tf.reshape(crops, (-1, h, w, c)), training=False)["probabilities"]
        return tf.reduce_mean(tf.reshape(tf.cast(probs, "float32"), (n, 10, -1)), axis=1)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Under a ``tf.distribute`` strategy Keras 3.15 builds the model from a batch it draws from a fresh
        iterator of the training data, then resets it: a seeded, reshuffling pipeline then trains on its
        *second* order (not the one a single device sees), and under ``MultiWorkerMirroredStrategy`` its
        reduction of that batch fails. Here the build uses the data's element spec: no iterator, no batch."""
        strategy = getattr(self, "_distribute_strategy", None)
        adapter = getattr(iterator, "data_adapter", None)
        if strategy is None or data_batch is not None or adapter is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        spec = adapter.get_tf_dataset().element_spec
        batch = tf.nest.map_structure(
            lambda s: None if s is None else keras.KerasTensor(tuple(s.shape), keras.backend.standardize_dtype(s.dtype)),
            spec)
        with strategy.scope():
            self._symbolic_build(data_batch=batch)
        return None

    def _make_function(self, step_function):
        """Keras 3.15 averages a multi-worker step's logs with ``strategy.reduce("MEAN", v, axis=0)``, which fails
        on scalar logs (tensorflow/tensorflow#72388); under ``MultiWorkerMirroredStrategy`` every scalar a train
        or test step returns is given a batch axis of one, so the same reduction averages it over the workers."""
        strategy = getattr(self, "_distribute_strategy", None)
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return super()._make_function(step_function)

        def step_with_rank_one_logs(data):
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if isinstance(v, tf.Tensor) and v.shape.rank == 0 else v,
                step_function(data))

        return super()._make_function(step_with_rank_one_logs)

    def fit(self, *args, callbacks=None, **kwargs):
        """Keras ``fit``; adds the recipe's per-epoch learning-rate schedule when ``compile()`` took the
        recipe's optimizer and no ``LearningRateScheduler`` is given."""
        callbacks = list(callbacks or [])
        if self._schedule and self._base_lr is not None and not any(
                isinstance(c, keras.callbacks.LearningRateScheduler) for c in callbacks):
            schedule, base = self._schedule, self._base_lr
            callbacks.append(keras.callbacks.LearningRateScheduler(
                lambda epoch, lr: learning_rate_at(schedule, base, epoch)))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    # -- inference -------------------------------------------------------------------------------------------
    def preprocess(self, images) -> np.ndarray:
        """Images (array H x W [x C], a batch, a list of differently sized arrays or PIL images; values
        0..255) -> float32 batch of this model's input shape."""
        from .data import convert_image

        if isinstance(images, (list, tuple)):
            return np.stack([self.preprocess(im)[0] for im in images])
        arr = np.asarray(images)
        if arr.ndim == 2:  # one grayscale image
            arr = arr[None, ..., None]
        elif arr.ndim == 3:  # one H x W x C image, or a batch of grayscale H x W images
            arr = arr[None] if arr.shape[-1] in (1, 3, 4) else arr[..., None]
        if arr.ndim != 4:
            raise ValueError(f"expected images of shape (H, W), (H, W, C) or (B, H, W, C); got {arr.shape}")
        if self.eval_crop:
            from .data import resize_then_crop

            return np.asarray(resize_then_crop(self.input_shape_hwc, self.eval_crop, "center")(arr))
        return np.asarray(convert_image(arr, self.input_shape_hwc))

    def predict_classes(self, images, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """Top-k ``(class name, probability)`` per image."""
        probs = self.predict(self.preprocess(images), verbose=0)
        return decode_predictions(probs, self.class_names, top_k)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, *, class_names: Sequence[str] | None = None, tta="model",
                 **kwargs):
        """Accuracy, balanced accuracy, macro-F1 and the confusion matrix, with class names.

        ``x`` is a ``tf.data.Dataset`` of ``(images, labels)`` (batched or not) or an array with labels ``y``.
        Labels are matched to this model's classes *by name* when the data carries ``class_names`` (or they
        are passed), so a data set with another class order evaluates correctly. A progress bar is shown on a
        terminal unless ``verbose=0``; ``print(report)`` gives a table. ``keras_evaluate`` gives Keras'
        loss-and-metrics evaluation. ``tta``: ``"model"`` (default: :attr:`tta`, as the weights' card says),
        ``None`` / ``"none"`` (one pass) or ``"flip"``; the report's ``tta`` field says which was used.
        """
        if kwargs.get("_use_cached_eval_dataset"):  # fit()'s validation pass: Keras semantics
            return super().evaluate(x, y, batch_size=batch_size, verbose=verbose, sample_weight=sample_weight,
                                    steps=steps, callbacks=callbacks, return_dict=return_dict, **kwargs)
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        names = list(class_names) if class_names is not None else _class_names_of(x)
        mapping = None
        if names is not None and names != self.class_names:
            from .labels import label_mapping

            mapping = np.asarray(label_mapping(names, self.class_names))
        if tta != "model":
            kept = self.tta
            self.tta = tta
            try:
                return self.evaluate(x, y, batch_size=batch_size, verbose=verbose, steps=steps, class_names=names)
            finally:
                self.tta = kept
        y_true, y_pred = [], []
        batches = _iterate(x, y, batch_size or 64, steps)
        if verbose not in (0, "silent", False):
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"evaluate {self.model_name}", unit="batch", leave=False, disable=None)
        for xb, yb in batches:
            xb = self.preprocess(xb) if tuple(xb.shape[1:]) != self.input_shape_hwc else xb
            probs = keras.ops.convert_to_numpy(self.predict_on_batch(xb))
            y_true.append(np.asarray(yb).reshape(-1).astype(np.int64))
            y_pred.append(probs.argmax(-1))
        if not y_true:
            raise ValueError("evaluate: the data set is empty")
        yt = np.concatenate(y_true)
        if mapping is not None:
            if yt.max(initial=0) >= len(mapping) or yt.min(initial=0) < 0:
                raise ValueError(f"label {int(yt.max())} is out of range for the data's {len(mapping)} classes")
            yt = mapping[yt]
        report = classification_report(yt, np.concatenate(y_pred), self.class_names)
        report["tta"] = self.tta
        return report

    def keras_evaluate(self, *args, **kwargs):
        """Keras' own ``evaluate`` (compiled loss and metrics)."""
        return super().evaluate(*args, **kwargs)

    def explain(self, images, method: str | None = None, class_index=None, **options) -> np.ndarray:
        """One heat map per image at input resolution with values in [0, 1].

        ``method`` defaults to the paper's own visualisation (``self.spec.default_explainer``); see
        ``ferzoo.list_explainers(model_name)``. ``class_index`` (int or one per image) defaults to the
        predicted class. Methods that produce several maps per image (e.g. one per attention head) return
        ``(B, K, H, W)``.
        """
        from .explain import get_explainer

        batch = self.preprocess(images)
        method = method or self.spec.default_explainer
        fn = get_explainer(self.model_name, method)
        if class_index is None:
            class_index = self.predict(batch, verbose=0).argmax(-1)
        class_index = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (batch.shape[0],)).copy()
        if class_index.min() < 0 or class_index.max() >= self.num_classes:
            raise ValueError(f"class_index must be in 0..{self.num_classes - 1}, got {class_index.tolist()}")
        maps = np.asarray(fn(self, batch, class_index, **options), dtype=np.float32)
        h, w = self.input_shape_hwc[:2]
        if maps.shape[0] != batch.shape[0] or maps.shape[-2:] != (h, w):
            raise RuntimeError(f"explainer {method!r} returned shape {maps.shape}; expected ({batch.shape[0]}, ..., {h}, {w})")
        return np.clip(np.nan_to_num(maps), 0.0, 1.0)

    def output_model(self, key: str = "logits") -> keras.Model:
        """A plain functional model from the raw input to one output (for explainers and export)."""
        outputs = self._outputs_struct
        if key not in outputs:
            raise KeyError(f"model {self.model_name!r} has no output {key!r}; outputs: {sorted(outputs)}")
        return keras.Model(self.inputs, outputs[key], name=f"{self.name}_{key}")


@keras.saving.register_keras_serializable(package="ferzoo")
class _SmoothedSparseCE(keras.losses.Loss):
    """Cross-entropy on logits with integer labels and label smoothing."""

    def __init__(self, label_smoothing: float, num_classes: int, **kwargs):
        super().__init__(name=kwargs.pop("name", "smoothed_sparse_ce"), **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.num_classes = int(num_classes)
        self.from_logits = True

    def call(self, y_true, y_pred):
        onehot = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), self.num_classes)
        return keras.losses.categorical_crossentropy(onehot, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "num_classes": self.num_classes}


def _is_low_float(value) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16")


def decode_predictions(probs, class_names: Sequence[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
    """Probabilities (B, C) -> per image the ``top_k`` ``(class name, probability)`` pairs."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(f"probabilities of shape {probs.shape} do not match {len(class_names)} class names")
    order = np.argsort(-probs, axis=1)[:, :top_k]
    return [[(class_names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def _is_model_batch(x, shape) -> bool:
    """``x`` is already a batch of this model's input (B, H, W, C) (arrays or tensors; generators pass)."""
    if isinstance(x, (list, tuple)) or isinstance(x, dict):
        return False
    s = getattr(x, "shape", None)
    if s is None:
        return True  # a generator or a PyDataset: Keras' own handling
    return len(s) == 4 and tuple(int(v) if v is not None else -1 for v in s[1:]) == tuple(shape)


def _class_names_of(x):
    names = getattr(x, "class_names", None)
    return list(names) if names is not None else None


def _iterate(x, y, batch_size: int, steps):
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise ValueError("evaluate: the data set must yield (images, labels)")
        if spec[0].shape.rank == 3:  # unbatched images
            x = x.batch(batch_size)
        if steps is not None:
            x = x.take(steps)
        for batch in x:
            yield batch[0].numpy(), batch[1].numpy()
        return
    if y is None:
        raise ValueError("evaluate: labels y are required when x is an array")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"evaluate: {len(x)} images but {len(y)} labels")
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]
