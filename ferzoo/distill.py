"""Knowledge distillation (Hinton, Vinyals and Dean 2015): a student learns from teachers' softened probabilities.

For a student :class:`~ferzoo.model.FERModel` with logits ``z``, labels ``y`` and teachers ``k = 1..K``::

    loss = alpha * T^2 * KL(p_teacher || softmax(z / T)) + (1 - alpha) * CE(y, z) + the student's own terms
    p_teacher = mean_k softmax(log q_k / T)            (the teachers averaged in probability space)

``q_k`` are teacher ``k``'s probabilities over the student's classes (its log-probabilities are used, so a
teacher may give logits or probabilities; ``softmax(log q / T)`` is the usual ``softmax(logits / T)``). ``CE``
is the student's compiled loss (its recipe's label smoothing included) and "the student's own terms" are what
:meth:`FERModel.compute_loss` adds to it: the plugin's auxiliary losses (with their rule updates) and the
coupled weight decay, all kept unchanged. ``T^2`` keeps the soft term's gradients on the scale of the hard term's
as ``T`` changes. Validation and ``evaluate`` steps compute the student's own loss only (the teachers do not run).

Teachers
    Weights named ``NAME.TAG`` (``"deep_emotion.fer2013"``), a ``.weights.h5`` file with its card, a loaded
    ``FERModel`` or a :class:`Teacher` (any callable, e.g. an ensemble that outputs probabilities). They run in
    inference mode (``training=False``, frozen) and through their own inference rule: each gets the image
    converted to *its* input spec (colour by ITU-R 601 luma, size, the card's ``eval_crop`` centre crop) and its
    card's test-time augmentation (``tta``). Classes are matched by name: a teacher with another class order is
    permuted, a teacher with more classes is renormalised over the student's, and a teacher lacking one of the
    student's classes is an error naming it.

Modes (``mode=``)
    ``"online"``  the teachers run on every training batch, on the student's input (after the recipe's
                  augmentation) converted to each teacher's input;
    ``"cached"``  the teachers run once per training image, on the image as the data set gives it (no
                  augmentation), before training; each step looks the image's outputs up. The stream to train on
                  is :attr:`Distillation.data`: the image's row in the cache travels packed into its label
                  (``(row + 1) * num_classes + label``), found by a 64-bit fingerprint of the image's pixels, so
                  any sampler, shuffle or ``take`` applied to the same images keeps working. Teachers much larger
                  than the student cost one forward pass per image instead of one per image and epoch: what
                  makes big teachers fit a CPU;
    ``"auto"``    (default) ``"cached"`` when the teachers together have more parameters than the student,
                  else ``"online"``; the mode used and why are printed.

Python::

    d = ferzoo.distill.attach(student, ["fdrl.fer2013", "deep_emotion.fer2013"], temperature=4.0, alpha=0.7,
                              mode="cached", data=train_ds)  # train_ds: unbatched (image, label), with class_names
    student.fit(ferzoo.data.prepare(d.data, student.input_shape_hwc, batch_size=64, shuffle=1000), epochs=10)

``ferzoo train STUDENT --teacher NAME.TAG [--teacher ...] [--temperature T] [--alpha A] [--distill-mode M]`` and
the recipe keys ``teachers`` (a list of ``NAME.TAG`` / weights files) and ``distillation`` (``{"temperature",
"alpha", "mode"}``) do the same in the ``train`` driver (:func:`resolve_request` checks them before anything
loads, :func:`for_run` attaches the teachers); the weights' card records in its recipe each teacher (model,
classes, input, tta and the file's sha256, checked when it loads) and the settings asked for; the mode used
(``auto`` resolved) is printed.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

#: distillation settings and their defaults (Hinton et al. report T in 2..20; 4 is common for 7-10 classes)
DEFAULTS = {"temperature": 4.0, "alpha": 0.7, "mode": "auto"}
MODES = ("auto", "cached", "online")
#: the command-line option of each setting (error messages name it)
OPTIONS = {"temperature": "--temperature", "alpha": "--alpha", "mode": "--distill-mode"}
#: the keys a teacher entry given as a mapping may carry (what the card records; ``sha256`` is checked)
TEACHER_KEYS = ("weights", "sha256", "model", "class_names", "input_shape", "tta")
_TINY = 1e-30  # probabilities are clipped here before their logarithm


# -- settings -------------------------------------------------------------------------------------------------
def check_settings(settings: Mapping | None, where: str = "distillation", *, options: bool = False) -> dict:
    """``{"temperature", "alpha", "mode"}`` with defaults filled in and every value checked: a ``ValueError``
    naming the setting (its command-line option when ``options``, else ``where`` and the key) and what is
    allowed."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(DEFAULTS)}")

    def name(key):
        return OPTIONS[key] if options else f"{where} {key}"

    out = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    t = out["temperature"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"{name('temperature')} must be a number > 0, got {t!r}")
    a = out["alpha"]
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1:
        raise ValueError(f"{name('alpha')} must be a number in [0, 1] (the weight of the teachers' term), got {a!r}")
    if out["mode"] not in MODES:
        raise ValueError(f"{name('mode')} must be one of {', '.join(MODES)}, got {out['mode']!r}")
    return {"temperature": float(t), "alpha": float(a), "mode": out["mode"]}


def _entry(spec) -> tuple[Any, dict]:
    """A teacher entry -> (what to load, the mapping's other keys)."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(TEACHER_KEYS))
        if unknown or "weights" not in spec:
            raise ValueError(f"teacher {dict(spec)!r}: a teacher given as a mapping needs 'weights' (NAME.TAG or a "
                             f"weights file) and may carry {', '.join(TEACHER_KEYS[1:])}"
                             + (f"; unknown: {', '.join(map(repr, unknown))}" if unknown else ""))
        return spec["weights"], {k: v for k, v in spec.items() if k != "weights"}
    return spec, {}


def check_teacher(spec, label: str = "--teacher") -> str:
    """Check a teacher named by ``NAME.TAG`` or a weights file without loading anything (no TensorFlow): the
    model is registered and has that tag, or the file exists. Returns a description; errors start with
    ``label`` and say what is allowed."""
    from . import weights as W

    spec, _ = _entry(spec)
    if not isinstance(spec, (str, os.PathLike)):
        return f"{type(spec).__name__} object"
    text = os.fspath(spec)
    if W._looks_like_path(text):
        return str(W.weights_file(text, f"{label} {text}"))
    name, dot, tag = text.partition(".")
    if not dot or not name or not tag:
        raise ValueError(f"{label} {text!r}: expected NAME.TAG (e.g. deep_emotion.fer2013) or a .weights.h5 file")
    import ferzoo

    if name not in ferzoo.list_models():
        raise ValueError(f"{label} {text!r}: no model {name!r}; models: {', '.join(ferzoo.list_models())}")
    tags = W.known_tags(name)
    if tag not in tags:
        raise ValueError(f"{label} {text!r}: model {name!r} has no weights {tag!r}; its tags: "
                         f"{', '.join(sorted(tags)) or 'none'}")
    return text


# -- teachers -------------------------------------------------------------------------------------------------
class Teacher:
    """A teacher: ``fn`` maps a batch of its input (float32 pixels 0..255, ``input_shape`` H x W x C) to logits
    (``outputs="logits"``) or probabilities (``outputs="probabilities"``) over ``class_names``.

    ``eval_crop`` ``[H, W]``: resize to it and take the centre crop of ``input_shape`` (the card's inference
    rule), else the image is converted straight to ``input_shape``. ``params`` (its size) decides ``mode="auto"``.
    :meth:`from_model` makes one of a ``FERModel``."""

    def __init__(self, fn: Callable, class_names: Sequence[str], input_shape: Sequence[int], *,
                 outputs: str = "logits", eval_crop: Sequence[int] | None = None, name: str = "teacher",
                 params: int = 0, info: Mapping | None = None):
        if outputs not in ("logits", "probabilities"):
            raise ValueError(f"teacher {name!r}: outputs must be 'logits' or 'probabilities', got {outputs!r}")
        self.fn = fn
        self.class_names = [str(c) for c in class_names]
        self.input_shape = tuple(int(v) for v in input_shape)
        if len(self.input_shape) != 3:
            raise ValueError(f"teacher {name!r}: input_shape must be (H, W, C), got {input_shape!r}")
        self.outputs = outputs
        self.eval_crop = list(eval_crop) if eval_crop else None
        self.name = name
        self.params = int(params)
        self.info = dict(info or {})
        self._convert = None

    @classmethod
    def from_model(cls, model, name: str | None = None, info: Mapping | None = None) -> "Teacher":
        """A ``FERModel`` as a teacher: frozen, called with ``training=False``; logits without test-time
        augmentation, the mean probabilities of its ``tta`` (its card's) otherwise."""
        model.trainable = False  # the student's gradient tape then records no teacher variable
        tta = getattr(model, "tta", None)
        if tta is None:
            fn, outputs = (lambda x: model(x, training=False)["logits"]), "logits"
        else:
            fn, outputs = (lambda x: model.predict_step((x,))), "probabilities"
        card = getattr(model, "weights_card", None) or {}
        described = {"model": model.model_name, "class_names": list(model.class_names),
                     "input_shape": list(model.input_shape_hwc), "tta": tta,
                     **({"sha256": card["sha256"]} if card.get("sha256") else {}), **dict(info or {})}
        return cls(fn, model.class_names, model.input_shape_hwc, outputs=outputs, eval_crop=model.eval_crop,
                   name=name or model.model_name, params=model.count_params(), info=described)

    def convert(self, images):
        """Images (one H x W x C or a batch, 0..255, any size and colour) -> this teacher's input."""
        if self._convert is None:
            from .data import convert_image, resize_then_crop

            if self.eval_crop:
                self._convert = resize_then_crop(self.input_shape, self.eval_crop, "center")
            else:
                shape = self.input_shape
                self._convert = lambda x: convert_image(x, shape)
        return self._convert(images)

    def log_probs(self, inputs):
        """Log-probabilities (B, classes) in float32 for a batch of this teacher's input."""
        import tensorflow as tf

        out = tf.cast(self.fn(inputs), tf.float32)
        if self.outputs == "logits":
            return tf.nn.log_softmax(out, axis=-1)
        return tf.math.log(tf.maximum(out, _TINY))

    def index_for(self, class_names: Sequence[str]) -> list[int]:
        """Positions of ``class_names`` (the student's) among this teacher's classes; a class the teacher lacks
        is an error naming it."""
        missing = [c for c in class_names if c not in self.class_names]
        if missing:
            raise ValueError(f"teacher {self.name!r} has no class {', '.join(map(repr, missing))} of the student's "
                             f"classes {list(class_names)}; its classes: {self.class_names} (classes are matched "
                             f"by name)")
        return [self.class_names.index(c) for c in class_names]

    def describe(self) -> dict:
        return {"weights": self.name, **self.info}


def load_teacher(spec, label: str = "--teacher") -> Teacher:
    """A :class:`Teacher` from ``NAME.TAG``, a weights file, a mapping with ``weights`` (its ``sha256``, when
    given, must match the file's), a ``FERModel`` or a :class:`Teacher`."""
    from . import weights as W

    target, extra = _entry(spec)
    if isinstance(target, Teacher):
        return target
    if not isinstance(target, (str, os.PathLike)):
        if not all(hasattr(target, a) for a in ("class_names", "input_shape_hwc", "model_name")):
            raise ValueError(f"{label}: a teacher is NAME.TAG, a weights file, a FERModel or a ferzoo.distill.Teacher; "
                             f"got {type(target).__name__}")
        return Teacher.from_model(target)
    check_teacher(target, label)
    text = os.fspath(target)
    if W._looks_like_path(text):
        model = W.load_file(None, W.weights_file(text, f"{label} {text}"))
    else:
        name, _, tag = text.partition(".")
        model = W.load(name, weights=tag)
    got = (getattr(model, "weights_card", None) or {}).get("sha256")
    if extra.get("sha256") and got and extra["sha256"] != got:
        raise ValueError(f"{label} {text!r}: the weights' sha256 is {got[:16]}..., the recipe pins "
                         f"{str(extra['sha256'])[:16]}...; these are other weights than the ones named")
    return Teacher.from_model(model, name=text)


# -- the loss -------------------------------------------------------------------------------------------------
def soft_target_log_probs(teacher_log_probs, temperature: float):
    """Teachers' log-probabilities (B, K, C) -> log of the mean over the K teachers of ``softmax(. / T)``
    (B, C): the teachers averaged in probability space at temperature ``T``."""
    import tensorflow as tf

    soft = tf.nn.log_softmax(tf.cast(teacher_log_probs, tf.float32) / temperature, axis=-1)
    k = tf.cast(tf.shape(soft)[1], tf.float32)
    return tf.reduce_logsumexp(soft, axis=1) - tf.math.log(k)


def soft_loss(student_logits, target_log_probs, temperature: float, sample_weight=None):
    """``T^2 * KL(p || softmax(z / T))`` per example, averaged over the batch (weighted by ``sample_weight``
    as Keras weights its losses: the sum of ``w * value`` over the batch size); ``p = exp(target_log_probs)``."""
    import tensorflow as tf

    log_q = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    log_p = tf.cast(target_log_probs, tf.float32)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    if sample_weight is not None:
        kl = kl * tf.cast(tf.reshape(sample_weight, (-1,)), tf.float32)
    return (temperature ** 2) * tf.reduce_mean(kl)


class Distillation:
    """Teachers attached to a student (made by :func:`attach`): the student's ``compute_loss`` and
    ``compute_metrics`` go through this object until :meth:`detach`.

    ``mode`` is the mode in use (``"online"`` or ``"cached"``), ``reason`` why; ``data`` the stream to train on
    (in cached mode its labels are packed, see the module doc); ``cached_images`` the number of distinct images
    whose teacher outputs are cached."""

    def __init__(self, student, teachers: Sequence[Teacher], *, temperature: float, alpha: float, mode: str,
                 reason: str = ""):
        self.student = student
        self.teachers = list(teachers)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.mode = mode
        self.reason = reason
        self.num_classes = int(student.num_classes)
        self.class_names = list(student.class_names)
        self.indices = [t.index_for(self.class_names) for t in self.teachers]  # raises on a missing class
        self.data = None
        self.cached_images = 0
        self._cache = None  # (N, K, C) float32 log-probabilities over the student's classes
        self._tracker = None
        self._training_trace = True

    # -- teacher outputs --------------------------------------------------------------------------------------
    def teacher_log_probs(self, images):
        """(B, K, C): every teacher's log-probabilities over the student's classes, in the student's class
        order, for a batch of images (0..255, any size and colour: each teacher converts them)."""
        import tensorflow as tf

        outs = [tf.gather(t.log_probs(t.convert(images)), idx, axis=-1) for t, idx in zip(self.teachers, self.indices)]
        return tf.stop_gradient(tf.stack(outs, axis=1))

    def targets(self, x, rows=None):
        """The soft targets' log-probabilities (B, C) at this temperature: looked up by cache ``rows`` in
        cached mode, from the teachers run on ``x`` in online mode."""
        import tensorflow as tf

        logp = tf.gather(self._cache, rows) if self.mode == "cached" else self.teacher_log_probs(x)
        return tf.stop_gradient(soft_target_log_probs(logp, self.temperature))

    def unpack(self, y):
        """``(labels, cache rows)`` of a label batch (cached mode: ``y = (row + 1) * C + label``; plain labels,
        as validation data has, give row -1)."""
        if self.mode != "cached" or y is None:
            return y, None
        import tensorflow as tf

        y = tf.cast(y, tf.int32)
        return tf.math.floormod(y, self.num_classes), tf.math.floordiv(y, self.num_classes) - 1

    # -- the student's hooks ----------------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The student's own loss (:meth:`FERModel.compute_loss`: compiled loss + auxiliary losses + weight
        decay) with the compiled loss's weight moved from 1 to ``1 - alpha`` and ``alpha * T^2 * KL`` added,
        on training steps; the student's own loss on the others."""
        import tensorflow as tf

        from .losses import num_replicas

        student = self.student
        self._training_trace = bool(training)  # read by compute_metrics, traced next in the same step
        labels, rows = self.unpack(y)
        total = type(student).compute_loss(student, x=x, y=labels, y_pred=y_pred, sample_weight=sample_weight,
                                           training=training)
        if not training or self.alpha == 0.0:
            return total
        if student.loss is None:
            raise ValueError("distillation: compile the student before training it (its compiled loss is the "
                             "hard-label term)")
        if rows is not None:
            rows = _checked_rows(rows, "cached distillation: a training label carries no cache row; train on "
                                       "Distillation.data (the stream attach() returned), not on the plain data set")
        main = y_pred["logits"] if getattr(student, "_main_from_logits", True) else y_pred["probabilities"]
        hard = tf.cast(self._hard_loss()(labels, main, sample_weight), tf.float32)  # per replica, as Keras's
        soft = soft_loss(y_pred["logits"], self.targets(x, rows), self.temperature, sample_weight)
        self._tracker.update_state(soft)
        return total + self.alpha * (soft / num_replicas() - hard)

    def _hard_loss(self):
        """The student's compiled loss as a reducing ``keras.losses.Loss`` (what ``compile`` applies)."""
        import keras

        loss = self.student.loss
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss):
            return loss
        return keras.losses.LossFunctionWrapper(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The student's metrics on the unpacked labels; ``distill_loss`` (the soft term) on training steps."""
        labels, _ = self.unpack(y)
        result = type(self.student).compute_metrics(self.student, x, labels, y_pred, sample_weight)
        if not self._training_trace and isinstance(result, dict):  # validation: no soft term was computed
            result = {k: v for k, v in result.items() if k != self._tracker.name}
        return result

    def _install(self) -> None:
        import keras

        student = self.student
        with student.distribute_strategy.scope():
            tracker = keras.metrics.Mean(name="distill_loss")
        self._tracker = tracker
        student._metrics.append(tracker)  # reported (and reset each epoch) with the student's metrics
        # set without Keras' attribute tracking: neither the teachers nor this object become part of the
        # student's weights, and the student's weights file stays the student's alone
        object.__setattr__(student, "compute_loss", self.compute_loss)
        object.__setattr__(student, "compute_metrics", self.compute_metrics)
        object.__setattr__(student, "distillation", self)
        student.train_function = None  # traced without the teachers
        student.test_function = None

    def detach(self) -> None:
        """Give the student its own ``compute_loss`` and ``compute_metrics`` back."""
        student = self.student
        if self._tracker in student._metrics:
            student._metrics.remove(self._tracker)
        for name in ("compute_loss", "compute_metrics", "distillation"):
            student.__dict__.pop(name, None)
        student.train_function = None
        student.test_function = None

    # -- cached mode ------------------------------------------------------------------------------------------
    def cache(self, data, images=None, *, batch_size: int = 64, say=None):
        """Run the teachers once on every image of ``images`` (default ``data``; unbatched ``(image, label)``,
        finite, as the data set gives them) and return ``data`` with each label packed with its image's cache
        row (the stream to train on). Sets :attr:`data` and :attr:`cached_images`."""
        import numpy as np
        import tensorflow as tf

        from .data import class_names_of, with_class_names

        say = say or (lambda line: None)
        images = data if images is None else images
        n_seen, start = 0, time.time()
        last = start
        teachers = self.teachers

        def inputs(x, y):
            return _fingerprint(x), tuple(t.convert(x) for t in teachers)

        runners = [tf.function(lambda xb, t=t, idx=idx: tf.gather(t.log_probs(xb), idx, axis=-1), reduce_retracing=True)
                   for t, idx in zip(teachers, self.indices)]
        prints, rows = [], []
        for fp, xs in images.map(inputs, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2):
            prints.append(fp.numpy())
            rows.append(np.stack([np.asarray(run(xb)) for run, xb in zip(runners, xs)], axis=1))
            n_seen += int(fp.shape[0])
            if time.time() - last > 60:  # a big teacher on a CPU: say how far it got
                say(f"distillation: teacher outputs for {n_seen} training images so far ({time.time() - start:.0f} s)")
                last = time.time()
        if not n_seen:
            raise ValueError("cached distillation: the training data holds no image")
        prints = np.concatenate(prints)
        keys, first = np.unique(prints, return_index=True)
        if (len(keys) + 1) * self.num_classes >= 2 ** 31:
            raise ValueError(f"cached distillation: {len(keys)} images are too many to pack into int32 labels; "
                             f"use mode='online'")
        self._cache = tf.constant(np.concatenate(rows)[first].astype(np.float32))
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.int64), tf.range(len(keys), dtype=tf.int64)), -1)
        c = self.num_classes

        def pack(x, y):
            row = table.lookup(_fingerprint(x))
            row = _checked_rows(row, "cached distillation: an image of the training stream was not among the "
                                     "cached images")
            return x, tf.cast((row + 1) * c, tf.int32) + tf.cast(y, tf.int32)

        names = class_names_of(data)
        out = data.map(pack, num_parallel_calls=tf.data.AUTOTUNE)
        self.data = with_class_names(out, names) if names is not None else out
        self.cached_images = len(keys)
        say(f"distillation: the teachers' outputs for {n_seen} training images ({len(keys)} distinct) computed "
            f"once in {time.time() - start:.1f} s")
        return self.data

    def describe(self) -> dict:
        """The settings in use (``mode``: the one used) and the teachers, as a card records them."""
        return {"temperature": self.temperature, "alpha": self.alpha, "mode": self.mode,
                "teachers": [t.describe() for t in self.teachers]}


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n:,}"


def _checked_rows(rows, message: str):
    """``rows`` once every value is known to be >= 0 (else an ``InvalidArgumentError`` with ``message``)."""
    import tensorflow as tf

    with tf.control_dependencies([tf.debugging.assert_non_negative(rows, message=message)]):
        return tf.identity(rows)


def _fingerprint(image):
    """A 64-bit fingerprint (int64) of one image's dtype, shape and pixels."""
    import tensorflow as tf

    digest = tf.fingerprint(tf.reshape(tf.io.serialize_tensor(image), [1]))[0]
    return tf.bitcast(digest, tf.int64)


def attach(student, teachers, *, temperature: float = DEFAULTS["temperature"], alpha: float = DEFAULTS["alpha"],
           mode: str = DEFAULTS["mode"], data=None, images=None, batch_size: int = 64, say=None) -> Distillation:
    """Distil ``teachers`` into ``student`` (a ``FERModel``; compiled before training): its ``fit`` then
    minimises the loss of the module doc. Returns the :class:`Distillation`; train on its ``data``.

    ``teachers``: one or a list of ``NAME.TAG``, weights files, ``FERModel`` objects or :class:`Teacher`.
    ``mode``: ``"online"``, ``"cached"`` or ``"auto"`` (see the module doc). ``data`` (unbatched ``(image,
    label)``) is required in cached mode: the result's ``data`` is it with the cache rows packed into the labels;
    ``images``: the distinct images to run the teachers on, when ``data`` repeats or resamples them (default:
    ``data``). ``say`` receives the printed lines (the mode used and why)."""
    settings = check_settings({"temperature": temperature, "alpha": alpha, "mode": mode})
    say = say or (lambda line: None)
    if isinstance(teachers, (str, os.PathLike, Mapping, Teacher)) or hasattr(teachers, "class_names"):
        teachers = [teachers]
    teachers = list(teachers or [])
    if not teachers:
        raise ValueError("distillation: no teacher given")
    with student.distribute_strategy.scope():
        loaded = [load_teacher(t) for t in teachers]
    mode = settings["mode"]
    t_params = sum(t.params for t in loaded)
    s_params = int(student.count_params())
    if mode == "auto":
        mode = "cached" if t_params > s_params else "online"
        reason = (f"auto: the teachers have {_count(t_params)} parameters, the student {_count(s_params)}; "
                  f"--distill-mode {'online' if mode == 'cached' else 'cached'} for the other mode")
    else:
        reason = "as asked"
    d = Distillation(student, loaded, temperature=settings["temperature"], alpha=settings["alpha"], mode=mode,
                     reason=reason)
    what = ("teacher outputs computed once per training image, without augmentation" if mode == "cached"
            else "the teachers run on every augmented training batch")
    names = ", ".join(t.name + (f" (tta {t.info['tta']})" if t.info.get("tta") else "") for t in loaded)
    say(f"distillation from {names} (T={d.temperature:g}, alpha={d.alpha:g}): {mode} "
        f"({what}; {reason})")
    if mode == "cached":
        if data is None:
            raise ValueError("distillation: mode 'cached' needs data=, the unbatched (image, label) training stream")
        d.cache(data, images, batch_size=batch_size, say=say)
    else:
        d.data = data
    d._install()
    return d


def describe_teacher(spec, label: str = "--teacher") -> dict:
    """A teacher entry as a recipe (and the card) records it, from its weights' card, without TensorFlow:
    ``{"weights", "model", "sha256", "class_names", "input_shape", "tta"}``. A mapping's ``sha256`` must match."""
    from . import weights as W

    target, extra = _entry(spec)
    if not isinstance(target, (str, os.PathLike)):
        raise ValueError(f"{label}: teachers of a training run are NAME.TAG or weights files (for model objects use "
                         f"ferzoo.distill.attach); got {type(target).__name__}")
    text = check_teacher(target, label)
    if W._looks_like_path(os.fspath(target)):
        card = W.read_card(text)
        text = os.fspath(target)
    else:  # the card from the local store or the registry: nothing is downloaded here
        name, _, tag = text.partition(".")
        if W.known_tags(name)[tag].startswith("local store"):
            card = W.read_card(W.store_file(name, tag))
        else:
            card = W.entries(name).get((name, tag), {})
    if extra.get("sha256") and card.get("sha256") and extra["sha256"] != card["sha256"]:
        raise ValueError(f"{label} {text!r}: the weights' sha256 is {card['sha256'][:16]}..., the entry pins "
                         f"{str(extra['sha256'])[:16]}...; these are other weights than the ones named")
    spec_in = card.get("input_spec") or {}
    return {"weights": text, "model": card.get("model"), "sha256": card.get("sha256") or extra.get("sha256"),
            "class_names": list(card.get("class_names") or []),
            "input_shape": [spec_in.get("height"), spec_in.get("width"), spec_in.get("channels")],
            "tta": card.get("tta")}


def resolve_request(rec: dict, teachers=None, settings: Mapping | None = None, *, of_recipe: str = "the recipe",
                    say=None) -> None:
    """The ``train`` driver's resolve step (no TensorFlow): the caller's ``teachers`` (``--teacher``; they
    replace the recipe's ``teachers``) and ``settings`` (``--temperature`` / ``--alpha`` / ``--distill-mode``;
    ``None`` values are not given; each overrides the recipe's ``distillation`` value) are checked and written
    into ``rec`` (which the card records): ``rec["teachers"]`` as :func:`describe_teacher` entries (with the
    weights' sha256, checked again when they load), ``rec["distillation"]`` the full settings. A usage error
    names the option or the recipe key and what is allowed."""
    say = say or (lambda line: None)
    given = {k: v for k, v in dict(settings or {}).items() if v is not None}
    if isinstance(teachers, (str, os.PathLike, Mapping)):
        teachers = [teachers]
    from_recipe = rec.get("teachers") or []
    if isinstance(from_recipe, (str, Mapping)):
        from_recipe = [from_recipe]
    chosen = list(teachers) if teachers else list(from_recipe)
    if not chosen:
        if given:
            raise ValueError(f"{', '.join(OPTIONS.get(k, k) for k in given)}: distillation settings need teachers; "
                             f"give --teacher NAME.TAG (or a recipe 'teachers' list)")
        if rec.get("distillation"):
            check_settings(rec["distillation"], f"{of_recipe}'s distillation")
        return
    label = "--teacher" if teachers else f"{of_recipe}, teachers entry"
    rec["teachers"] = [describe_teacher(t, label) for t in chosen]
    check_settings(given, options=True)
    rec["distillation"] = check_settings({**dict(rec.get("distillation") or {}), **given},
                                         f"{of_recipe}'s distillation")
    if not teachers:
        say(f"teachers: {', '.join(e['weights'] for e in rec['teachers'])} ({of_recipe}; --teacher to change)")


def for_run(model, rec: Mapping, data, *, images=None, say=None):
    """The ``train`` driver's pipeline step: when ``rec`` (resolved by :func:`resolve_request`) names teachers,
    attach them to ``model`` with ``rec["distillation"]`` and return the stream to train on (``data`` with
    packed labels in cached mode); else ``data`` itself. ``images``: the distinct training images (``data`` may
    be a sampler's stream). ``rec`` is not changed; the mode used is printed."""
    if not rec.get("teachers"):
        return data
    d = attach(model, rec["teachers"], data=data, images=images, say=say, **check_settings(rec.get("distillation")))
    return d.data
