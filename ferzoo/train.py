"""The ``train`` driver: data set -> pipeline -> model (recipe) -> epochs under the recipe's protocol -> store.

* The recipe is resolved **before** the model is built (its ``config`` may set model and loss values); a data set
  with no recipe of its own trains with the model's ``default`` recipe and one printed line says so. Every value
  the run takes from the recipe is printed: epochs, batch size, validation split, input shape, the reader options
  (``dataset_options``, each overridden by the caller's) and, on a new run, the initial weights (``init_from``;
  checked before any data is read).
* The recipe's ``protocol`` runs as data: keep the best or the last epoch, report the mean of the last k
  epochs, reduce the learning rate on a plateau (optionally reloading the best weights first), drop the last
  partial batch. ``val_split`` and ``load_size`` (resize, then random / centre crop) come from the recipe.
* Every epoch ends with a checkpoint (weights with centres, optimizer state, epoch, learning-rate and plateau
  state, best-so-far, history) written atomically into the run folder; ``resume=True`` continues a killed run
  from it, so at most the current epoch is lost. The data order of epoch e depends only on ``(seed, e)``.
* Runs under a ``tf.distribute`` strategy (``MirroredStrategy`` when several GPUs are visible).

The steps, one function each: :func:`resolve_job` -> :func:`read_data` -> :func:`build_model` ->
:func:`make_pipelines` -> :func:`run_epochs` -> :func:`store`.

Where results go: ``output=DIR`` writes ``DIR/<model>.weights.h5`` + card and keeps the checkpoint in
``DIR/checkpoint/``; otherwise the local store ``$FERZOO_HOME/store/<model>/<tag>/`` (tag: the data set name,
or ``<data set>-local`` when a shipped weight tag already has that name) with the run folder
``$FERZOO_HOME/runs/<model>/<tag>/``.
"""

from __future__ import annotations

import json
import contextlib
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from . import weights as weights_mod

CHECKPOINT_FORMAT = 1


STRATEGIES = ("auto", "default", "one-device", "mirrored", "multiworker")
#: written beside the weights: the training curves (PNG) and the TensorBoard log folder
CURVES_FILE = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"


def _write_curves(path: Path, history, title: str, say) -> None:
    """The training-curves PNG; the weights are already stored, so a failure to draw is only reported."""
    try:
        from .plots import training_curves_png

        training_curves_png(history, path, title=title)
    except Exception as exc:  # noqa: BLE001 - never lose a finished run over a picture
        say(f"could not draw the training curves ({type(exc).__name__}: {exc})")


def pick_strategy(name: str = "auto"):
    """The ``tf.distribute`` strategy for ``--strategy``:

    ``auto``         MirroredStrategy over all local GPUs when there are several, one GPU when there is one,
                     else the default (CPU) strategy
    ``default``      TensorFlow's default strategy (no distribution)
    ``one-device``   OneDeviceStrategy on the first GPU, else the CPU
    ``mirrored``     MirroredStrategy over all local GPUs (the CPU when there is none)
    ``multiworker``  MultiWorkerMirroredStrategy over the machines that ``TF_CONFIG`` lists (every worker runs
                     the same command; the chief, worker 0, writes the checkpoints and the weights)
    Call it before anything else touches TensorFlow: multi-worker collectives are configured at start-up."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"--strategy: {name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "multiworker":
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise ValueError("--strategy multiworker: TF_CONFIG is not set; it must list the cluster's workers and "
                             "this process's task, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
                             "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}")
        try:
            json.loads(config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--strategy multiworker: TF_CONFIG is not valid JSON ({exc})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name == "one-device" or (name == "auto" and len(gpus) == 1):
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def _sharded(strategy, ds):
    """Multi-worker runs split each global batch between the workers (every worker reads the same seeded
    pipeline; tf.distribute's default, sharding by file, does not apply to in-memory and decoded tables)."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return ds
    from .data import class_names_of, with_class_names

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    names = class_names_of(ds)
    out = ds.with_options(opts)
    return with_class_names(out, names) if names is not None else out


def is_chief(strategy) -> bool:
    """Whether this process writes files: always, except on the non-chief workers of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None) or not resolver.cluster_spec().as_dict():
        return True
    task, index = resolver.task_type, resolver.task_id
    return task == "chief" or (task == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict())


def _num_examples(ds) -> int:
    import tensorflow as tf

    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(tf.constant(0, tf.int64), lambda c, _: c + 1))


def check_int(name: str, value, minimum: int = 1, *, allow_none: bool = True):
    """``value`` as an int >= ``minimum`` or a ``ValueError`` naming the option and what is allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def recipe_for(model_name: str, dataset: str, recipe: str | None = None) -> tuple[str, str | None]:
    """The recipe name to train ``model_name`` on ``dataset`` with, and a line to print when it is a fallback."""
    import ferzoo

    table = ferzoo.model_info(model_name).recipe_table()
    if recipe is not None:
        if recipe != "default" and recipe not in table:
            raise ValueError(f"model {model_name!r}: no recipe {recipe!r}; known: {sorted(table) or ['default']}")
        return recipe, None
    if dataset in table:
        return dataset, None
    others = sorted(k for k in table if k != "default")
    return "default", (f"model {model_name!r} has no recipe for data set {dataset!r}; training with its 'default' "
                       f"recipe (its data set recipes: {others or 'none'}; choose one with --recipe)")


def default_tag(model_name: str, dataset: str, registered=None) -> tuple[str, str | None]:
    """A local run's store tag: the data set name, unless a registered (shipped) tag has it."""
    if registered is None:
        registered = {tag for (_, tag) in weights_mod.entries(model_name)}
    if dataset not in registered:
        return dataset, None
    tag = f"{dataset}-local"
    return tag, (f"{model_name}.{dataset} names shipped weights; this run is stored as {model_name}.{tag} "
                 f"(load it with ferzoo.load({model_name!r}, weights={tag!r}); --tag to choose another name)")


def transfer_weights(source, target) -> dict:
    """Copy weights layer by layer (by name, where every shape matches) from model ``source`` into ``target``,
    auxiliary-loss state included. Returns ``{"transferred": [...], "not_transferred": {name: reason}}``."""
    def by_name(model):
        out = {layer.name: layer for layer in model.layers if layer.weights}
        for loss in getattr(model, "aux_losses", []):
            if loss.weights:
                out[f"aux:{loss.name}"] = loss
        return out

    src, dst = by_name(source), by_name(target)
    done, skipped = [], {}
    for name, layer in dst.items():
        if name not in src:
            skipped[name] = "no layer of that name in the source"
            continue
        have = [tuple(v.shape) for v in src[name].weights]
        want = [tuple(v.shape) for v in layer.weights]
        if have != want:
            skipped[name] = f"shapes {have} in the source, {want} here"
            continue
        for var, value in zip(layer.weights, src[name].weights):
            var.assign(value)
        done.append(name)
    return {"transferred": done, "not_transferred": skipped}


def _load_init_source(model_name: str, init_from: str):
    import ferzoo

    if weights_mod._looks_like_path(init_from):
        return weights_mod.load_file(None, weights_mod.weights_file(init_from, "--init-from"))
    return ferzoo.load(model_name, weights=init_from)


def _npz_arrays(path: Path) -> list:
    """The arrays of an ``np.savez`` file, in the order they were saved."""
    import numpy as np

    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


class _Run:
    """The run folder: ``checkpoint/latest.json`` points at ``checkpoint/epoch-NNNN/`` (weights, best weights,
    optimizer variables, state). A new epoch folder is complete before the pointer moves to it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.root = self.folder / "checkpoint"
        self.pointer = self.root / "latest.json"

    def exists(self) -> bool:
        return self.pointer.is_file()

    def state(self) -> dict:
        try:
            state = json.loads(self.pointer.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.pointer}: unreadable checkpoint pointer ({exc})") from None
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.pointer}: checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        return state

    def save(self, model, state: dict, best_weights) -> None:
        import numpy as np

        epoch = int(state["epoch"])
        final = self.root / f"epoch-{epoch:04d}"
        tmp = self.root / f".epoch-{epoch:04d}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.savez(tmp / "model.npz", *model.get_weights())  # the model only: its optimizer's state is the next file
        np.savez(tmp / "optimizer.npz", *[np.asarray(v) for v in model.optimizer.variables])
        if best_weights is not None:
            np.savez(tmp / "best.npz", *best_weights)
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        weights_mod.write_json_atomic(self.pointer, {**state, "folder": final.name})
        for old in self.root.glob("epoch-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    def restore(self, model) -> tuple[dict, list | None]:
        state = self.state()
        folder = self.root / state["folder"]
        opt = model.optimizer
        if not opt.built:  # built first: an older checkpoint's weights file holds optimizer entries to load into
            opt.build(model.trainable_variables)
        self._restore_model(model, folder)
        values = _npz_arrays(folder / "optimizer.npz")
        if len(values) != len(opt.variables):
            raise ValueError(f"{folder}: the checkpoint holds {len(values)} optimizer variables, this optimizer has "
                             f"{len(opt.variables)}")
        for var, value in zip(opt.variables, values):
            var.assign(value)
        best = _npz_arrays(folder / "best.npz") if (folder / "best.npz").is_file() else None
        return state, best

    @staticmethod
    def _restore_model(model, folder: Path) -> None:
        """The model's variables from ``model.npz``; an older checkpoint has ``model.weights.h5`` instead, which also
        held the optimizer's state (twice the model's size for Adam, and ``optimizer.npz`` restores it anyway)."""
        if not (folder / "model.npz").is_file():
            model.load_weights(str(folder / "model.weights.h5"))
            return
        values = _npz_arrays(folder / "model.npz")
        if len(values) != len(model.weights):
            raise ValueError(f"{folder / 'model.npz'}: the checkpoint holds {len(values)} model variables, this "
                             f"model has {len(model.weights)}")
        model.set_weights(values)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


PRECISIONS = {"float32": "float32", "float16": "mixed_float16", "mixed_float16": "mixed_float16",
              "bfloat16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16"}


def precision_policy(choice, say=None) -> str:
    """The Keras dtype policy for ``--mixed-precision``: ``False``/``None``/``"float32"`` -> ``"float32"``;
    ``"float16"`` / ``"bfloat16"`` (or their ``mixed_`` names); ``True`` / ``"auto"`` -> ``mixed_float16`` when a
    GPU is visible, else ``mixed_bfloat16`` (fast on CPUs with AMX / AVX-512 BF16), printed through ``say``."""
    if choice in (None, False):
        return "float32"
    if choice is True or choice == "auto":
        import tensorflow as tf

        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        if say:
            say(f"mixed precision: {policy} ({'a GPU is visible' if policy == 'mixed_float16' else 'no GPU'}; "
                f"--mixed-precision float16|bfloat16 to choose)")
        return policy
    if choice not in PRECISIONS:
        raise ValueError(f"--mixed-precision: {choice!r} is not one of auto, {', '.join(sorted(PRECISIONS))}")
    return PRECISIONS[choice]


SHUFFLE_BUFFER = 20000  # decoded images held by the per-epoch shuffle of the train pipeline


def _shuffled_train_split(dataset: str, data_dir, opts: dict, seed: int):
    """``(train split, whether its reader shuffled the file order)``.

    Readers list files in a fixed order, often class by class (FER-2013's folders), and the pipeline's
    shuffle buffer holds at most SHUFFLE_BUFFER decoded images, so a larger data set read in order would start
    each epoch with no image of its last classes. Readers that take the common ``shuffle`` option shuffle the
    whole file table before decoding (cheap); the caller reports the others when the buffer is too small."""
    import inspect

    import ferzoo
    from .specs import resolve

    if "shuffle" in opts:
        return ferzoo.get_dataset(dataset, data_dir=data_dir, split="train", **opts), bool(opts["shuffle"])
    loader = ferzoo.get_registry().dataset(dataset).loader
    params = inspect.signature(resolve(loader) if isinstance(loader, str) else loader).parameters
    takes = "shuffle" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if not takes:
        return ferzoo.get_dataset(dataset, data_dir=data_dir, split="train", **opts), False
    extra = {"shuffle": True, **({} if "seed" in opts else {"seed": seed})}
    return ferzoo.get_dataset(dataset, data_dir=data_dir, split="train", **opts, **extra), True


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to ``name`` for the block, then restored."""
    import keras

    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


# -- the driver, step by step: resolve the job (recipe included), read the data, build the model, make the
# -- pipelines, run the epochs, store ---------------------------------------------------------------------------
@dataclass
class TrainJob:
    """What a :func:`train` call settles before TensorFlow does any work (:func:`resolve_job`): the resolved
    recipe and every value the run takes from it or from the caller, where the results go, and the run folder
    with the checkpoint to resume from. The later steps read it and change nothing in it."""

    model_name: str
    dataset: str
    data_dir: str | None
    recipe_name: str
    rec: dict
    tag: str
    out_dir: Path
    run: _Run
    previous: dict | None  # the checkpoint state to resume from
    seed: int
    epochs: int
    batch_size: int  # per replica
    val_split: str | None  # None: no validation
    input_shape: tuple | None  # None: the model's default
    dataset_options: dict  # the recipe's, overridden by the caller's
    init_from: str | None  # a weight tag or file (the caller's, else the recipe's on a new run)
    config: dict
    limit: int | None
    verbose: int
    command: str
    say: Callable[[str], None]

    @property
    def proto(self) -> dict:
        return self.rec["protocol"]


@dataclass
class TrainData:
    """The data set as read (:func:`read_data`): the train and validation splits and the class names."""

    train: Any
    val: Any | None
    class_names: list
    reader_shuffled: bool  # whether the reader shuffled the whole train table (see _shuffled_train_split)


@dataclass
class Pipelines:
    """The batched input (:func:`make_pipelines`): ``train(epoch)`` gives epoch ``epoch``'s shuffled, augmented
    batches; ``val`` the centre-cropped validation batches (``None``: no validation)."""

    train: Callable[[int], Any]
    val: Any | None
    num_train: int


def resolve_job(model_name: str, dataset: str, data_dir, *, epochs, batch_size, tag, output, recipe, val_split,
                seed, limit, verbose, config, dataset_options, command, input_shape, init_from, resume,
                say, teachers=None, distillation=None) -> TrainJob:
    """Step 1: check the arguments, pick and resolve the recipe, and take from it what the caller left open
    (epochs, batch size, validation split, input shape, reader options, initial weights: each value taken is
    printed); choose the store tag and run folder; check a resumed run's checkpoint. No TensorFlow work."""
    import ferzoo
    from .recipes import resolve_recipe

    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_int("limit", limit)
    check_int("seed", seed, 0, allow_none=False)
    ferzoo.model_info(model_name)
    ds_spec = ferzoo.get_registry().dataset(dataset)
    recipe_name, note = recipe_for(model_name, dataset, recipe)
    if note:
        say(note)
    tag, out_dir, run = _tag_and_run(model_name, dataset, tag, output, say)
    if isinstance(init_from, str) and init_from.lower() == "none":
        init_from, explicit_scratch = None, True  # --init-from none: from scratch, whatever the recipe says
    else:
        explicit_scratch = False
    previous = _checkpoint_to_resume(run, resume, init_from, model=model_name, dataset=dataset, recipe=recipe_name)
    if previous is not None:
        seed = previous["settings"]["seed"]
        if batch_size is None:
            batch_size = previous["settings"]["batch_size"]

    rec = resolve_recipe(ferzoo.model_info(model_name).recipe_table(), recipe_name, model_name)
    of_recipe = f"recipe {recipe_name!r}"
    val_split = _resolve_val_split(val_split, rec, ds_spec, dataset, of_recipe, say)
    if input_shape is None and rec.get("input_shape"):
        input_shape = tuple(int(v) for v in rec["input_shape"])
        say(f"input shape: {list(input_shape)} ({of_recipe}; --input-shape to change)")
    options = _resolve_dataset_options(rec, dataset_options, of_recipe, say)
    if init_from is None and rec.get("init_from") and previous is None and not explicit_scratch:
        init_from = rec["init_from"]
        say(f"initial weights: {init_from!r} ({of_recipe}'s init_from; --init-from TAG|FILE to change, "
            f"--init-from none to train from scratch)")
        _check_init_source(model_name, init_from, of_recipe)
    elif init_from:
        _check_init_source(model_name, init_from)
    from .distill import resolve_request  # the caller's teachers over the recipe's (checked, into rec)

    resolve_request(rec, teachers, distillation, of_recipe=of_recipe, say=say)
    if epochs is None and previous is not None:
        epochs = int(previous["epochs"])
        say(f"epochs: {epochs} (the checkpoint's run)")
    elif epochs is None:
        epochs = int(rec["epochs"])
        say(f"epochs: {epochs} ({of_recipe}; --epochs to change)")
    _schedule_follows_epochs(rec, epochs, previous, of_recipe, say)
    if batch_size is None:
        batch_size = int(rec["batch_size"])
        say(f"batch size: {batch_size} ({of_recipe}; --batch-size to change)")
    return TrainJob(model_name=model_name, dataset=dataset, data_dir=data_dir, recipe_name=recipe_name, rec=rec,
                    tag=tag, out_dir=out_dir, run=run, previous=previous, seed=seed, epochs=epochs,
                    batch_size=int(batch_size), val_split=val_split,
                    input_shape=tuple(input_shape) if input_shape else None, dataset_options=options,
                    init_from=init_from, config=dict(config or {}), limit=limit, verbose=verbose,
                    command=command or " ".join(shlex.quote(a) for a in sys.argv), say=say)


def _tag_and_run(model_name: str, dataset: str, tag, output, say) -> tuple[str, Path, "_Run"]:
    """The store tag (default: the data set's name, made unique; never a shipped tag's), the folder the weights
    go to and the run folder that holds the checkpoints."""
    registered = {t for (_, t) in weights_mod.entries(model_name)}
    if tag is None:
        tag, note = default_tag(model_name, dataset, registered)
        if note and output is None:
            say(note)
    elif tag in registered and output is None:
        raise ValueError(f"--tag {tag!r}: {model_name}.{tag} names shipped weights, and a local run must not shadow "
                         f"them; choose another tag (e.g. {tag}-local)")
    out_dir = Path(output) if output else weights_mod.store_dir(model_name, tag)
    run = _Run(out_dir if output else weights_mod.home() / "runs" / model_name / tag)
    return tag, out_dir, run


def _checkpoint_to_resume(run: "_Run", resume: bool, init_from, *, model: str, dataset: str,
                          recipe: str) -> dict | None:
    """The checkpoint state ``--resume`` continues (checked to be of this model, data set and recipe), or None
    for a new run, which must not overwrite an unfinished run's checkpoint."""
    if run.exists() and not resume:
        state = run.state()
        raise ValueError(f"{run.root} holds the checkpoint of an unfinished run ({state['epoch']} of "
                         f"{state['epochs']} epochs); pass --resume to continue it, or remove the folder to start over")
    if resume and not run.exists():
        raise ValueError(f"--resume: no checkpoint in {run.root} to continue from")
    if resume and init_from:
        raise ValueError("--resume continues a run from its checkpoint; --init-from is only for a new run")
    if not resume:
        return None
    previous = run.state()
    for key, value in (("model", model), ("dataset", dataset), ("recipe", recipe)):
        if previous["settings"][key] != value:
            raise ValueError(f"--resume: the checkpoint in {run.root} is of {key} {previous['settings'][key]!r}, "
                             f"not {value!r}")
    return previous


def _progress_bar():
    """Keras's progress bar without its own ``Epoch i/n`` header: the driver runs one ``fit`` call per epoch and
    prints the run's ``epoch i/N`` itself, where Keras would count the call's epochs (``Epoch 3/3``)."""
    import keras

    class EpochBar(keras.callbacks.ProgbarLogger):
        def set_params(self, params):
            super().set_params(params)
            self.epochs = 1  # read only by the header

    return EpochBar()


def _schedule_follows_epochs(rec: dict, epochs: int, previous: dict | None, of_recipe: str, say) -> None:
    """A recipe's cosine schedule that spans its whole run spans the run's ``--epochs`` (in ``rec``, so the card
    records it): a shorter run still ends at ``min_lr`` rather than stopping part-way down the curve. A resumed
    run keeps the length it started with."""
    schedule = rec.get("schedule") or {}
    if schedule.get("type") != "cosine" or int(schedule["epochs"]) != int(rec["epochs"]):
        return
    if previous is not None and int(previous["epochs"]) != epochs:
        raise ValueError(f"--epochs {epochs}: the checkpoint's run has {previous['epochs']} epochs and its cosine "
                         f"schedule spans them; resume it without --epochs (or with --epochs {previous['epochs']})")
    if epochs == int(rec["epochs"]):
        return
    rec["schedule"] = {**schedule, "epochs": epochs}
    say(f"schedule: cosine over {epochs} epochs ({of_recipe}'s spans its {rec['epochs']}; it follows --epochs)")


def _resolve_val_split(val_split, rec, ds_spec, dataset: str, of_recipe: str, say) -> str | None:
    """The split that validates: the caller's, else the recipe's (a split this data set lacks falls back to
    ``test``, else none); ``None`` for no validation."""
    splits = list(ds_spec.splits or ())
    if val_split is None:
        val_split = rec.get("val_split") or "none"
        if val_split not in ("none", *splits):
            # the recipe's split does not exist in this data set (RAF-DB and SFEW release only train and test)
            fallback = "test" if "test" in splits else "none"
            say(f"data set {dataset!r} has no split {val_split!r} ({of_recipe}); validating on "
                f"{fallback!r} instead (its splits: {splits}; --val-split to choose)")
            val_split = fallback
        elif val_split != "val":
            say(f"validating on split {val_split!r} ({of_recipe})")
    if val_split in (None, "none"):
        return None
    if val_split not in splits:
        raise ValueError(f"data set {dataset!r} has no split {val_split!r} to validate on; its splits: "
                         f"{splits}; pass --val-split none to train without validation")
    return val_split


def _resolve_dataset_options(rec, given, of_recipe: str, say) -> dict:
    """The reader options: the recipe's ``dataset_options``, each overridden by the caller's (printed)."""
    from_recipe = dict(rec.get("dataset_options") or {})
    given = dict(given or {})
    if from_recipe:
        kept = {k: v for k, v in from_recipe.items() if k not in given}
        overridden = sorted(k for k in from_recipe if k in given)
        say(f"data set options: {kept} ({of_recipe}; --dataset-option KEY=VALUE to change)"
            + (f"; {', '.join(overridden)} from --dataset-option" if overridden else ""))
    return {**from_recipe, **given}


def _check_init_source(model_name: str, init_from: str, from_recipe: str | None = None) -> None:
    """Fail before any data is read or model built when the initial weights cannot be had; ``from_recipe``
    names the recipe whose ``init_from`` chose them."""
    try:
        if weights_mod._looks_like_path(init_from):
            weights_mod.weights_file(init_from, "--init-from")
        else:
            weights_mod.resolve(model_name, init_from)
    except (OSError, ValueError) as exc:
        if from_recipe is None:
            if weights_mod._looks_like_path(init_from):
                raise
            raise ValueError(f"--init-from {init_from}: {exc}") from None
        raise ValueError(f"{from_recipe} of model {model_name!r} starts from weights {init_from!r} (its init_from), "
                         f"which cannot be had: {exc}; pass --init-from TAG|FILE to start from other weights, or "
                         f"--init-from none to train from scratch") from None


def read_data(job: TrainJob) -> TrainData:
    """Step 2: the train split (shuffled by its reader where it can) and the validation split, with the job's
    reader options; ``limit`` keeps the first examples of each (the train split's first pass, kept in memory)."""
    import ferzoo
    from .data import class_names_of, with_class_names

    opts = job.dataset_options
    try:
        train_ds, reader_shuffled = _shuffled_train_split(job.dataset, job.data_dir, opts, job.seed)
        val_ds = (None if job.val_split is None
                  else ferzoo.get_dataset(job.dataset, data_dir=job.data_dir, split=job.val_split, **opts))
    except TypeError as exc:  # a reader given an option it does not take
        if not opts:
            raise
        raise ValueError(f"data set {job.dataset!r}: its reader does not take the options {opts} ({exc}); "
                         f"see --dataset-option and the recipe's dataset_options") from None
    class_names = class_names_of(train_ds)
    if job.limit:
        # the same N examples every epoch: a reader that reshuffles its file table would give another N each
        # pass (and a cached distillation's teachers would have seen other images), so the first pass is kept
        train_ds = with_class_names(train_ds.take(job.limit).cache(), class_names)
        if val_ds is not None:
            val_ds = with_class_names(val_ds.take(job.limit), class_names_of(val_ds))
    return TrainData(train=train_ds, val=val_ds, class_names=list(class_names), reader_shuffled=reader_shuffled)


def build_model(job: TrainJob, data: TrainData, strat):
    """Step 3: the model for the data's classes under the recipe (its config, optimizer and losses), in the
    strategy's scope; with ``init_from``, the layers that fit are copied in (the rest printed).
    Returns ``(model, transfer report or None)``."""
    import ferzoo

    with strat.scope():
        model = ferzoo.build(job.model_name, num_classes=len(data.class_names), class_names=data.class_names,
                             input_shape=job.input_shape, recipe=job.recipe_name, **job.config)
        init_report = None
        if job.init_from:
            init_report = transfer_weights(_load_init_source(job.model_name, job.init_from), model)
            skipped = init_report["not_transferred"]
            job.say(f"--init-from {job.init_from}: transferred {len(init_report['transferred'])} layers"
                    + (f"; not transferred: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) if skipped else ""))
        model.compile()
        if model._schedule is not None:  # the run's schedule: a cosine's length follows --epochs
            model._schedule = job.rec.get("schedule")
    return model, init_report


def make_pipelines(job: TrainJob, data: TrainData, model, strat) -> Pipelines:
    """Step 4: the batched train input of each epoch (the recipe's sampler, resize-then-random-crop and
    augmentation; the order of epoch e depends only on (seed, e)) and the validation input (centre crop)."""
    import ferzoo
    from .data import prepare

    rec, say = job.rec, job.say
    global_batch = job.batch_size * strat.num_replicas_in_sync
    shape = model.input_shape_hwc
    load_size = tuple(rec["load_size"]) if rec.get("load_size") else None
    default_hw = tuple(rec.get("input_shape") or ferzoo.model_info(job.model_name).default_input_shape)[:2]
    if load_size and tuple(shape[:2]) != default_hw:
        # the recipe's resize-then-crop is stated for its own input (the recipe's input_shape, else the
        # paper's): keep its ratio at another size
        scaled = tuple(max(int(round(l * s / d)), s) for l, s, d in zip(load_size, shape[:2], default_hw))
        say(f"recipe {job.recipe_name!r} resizes to {list(load_size)} for a {default_hw[0]}x{default_hw[1]} input; "
            f"at {shape[0]}x{shape[1]} it resizes to {list(scaled)} (the same crop ratio)")
        load_size = scaled
    model.eval_crop = list(load_size) if load_size else None

    augment = None
    if rec.get("augmentation"):
        from .data.augment import build_augmentation, describe_augmentation

        augment = build_augmentation(rec["augmentation"], shape, seed=job.seed)
        say(f"augmentation: {describe_augmentation(rec['augmentation'])} (recipe {job.recipe_name!r} over the "
            f"default recipe, key by key; a key set to null is off)")
    sampled = data.train
    if rec.get("sampler"):
        from .data.augment import apply_sampler

        sampled = apply_sampler(data.train, rec["sampler"], seed=job.seed)
    n_train = _num_examples(sampled)
    if n_train == 0:
        raise ValueError(f"data set {job.dataset!r}: the train split is empty")
    if not data.reader_shuffled and n_train > SHUFFLE_BUFFER:
        say(f"data set {job.dataset!r}: its reader takes no shuffle option, so its {n_train} train examples are "
            f"read in the reader's order and mixed only by a {SHUFFLE_BUFFER}-image shuffle buffer")

    from .distill import for_run  # teachers named: their soft targets (cached mode packs them into the labels)

    sampled = for_run(model, rec, sampled, images=data.train, say=say)

    def train_pipe(epoch: int):
        return _sharded(strat, prepare(sampled, shape, batch_size=global_batch, class_names=data.class_names,
                                       shuffle=min(n_train, SHUFFLE_BUFFER), seed=job.seed * 100003 + epoch,
                                       augment=augment, drop_remainder=job.proto["drop_remainder"],
                                       load_size=load_size, crop="random"))

    val_pipe = None
    if data.val is not None:
        val_pipe = _sharded(strat, prepare(data.val, shape, batch_size=global_batch,
                                           target_class_names=model.class_names, load_size=load_size, crop="center"))
    return Pipelines(train=train_pipe, val=val_pipe, num_train=n_train)


def _new_state(job: TrainJob) -> dict:
    """The state every checkpoint stores (JSON): epochs done, history, best so far, learning-rate scale and
    plateau counters, training time, and the settings a resumed run must share."""
    return {"format": CHECKPOINT_FORMAT, "epoch": 0, "epochs": job.epochs, "history": {},
            "best": None, "best_epoch": None, "lr_scale": 1.0, "plateau_best": None, "plateau_wait": 0,
            "train_seconds": 0.0,
            "settings": {"model": job.model_name, "dataset": job.dataset, "recipe": job.recipe_name, "seed": job.seed,
                         "batch_size": job.batch_size, "val_split": job.val_split}}


def _monitors(job: TrainJob, pipes: Pipelines) -> tuple[str, dict | None]:
    """The metric that selects the best epoch and the plateau protocol, on training metrics without validation."""
    monitor = (job.rec.get("monitor") or "val_accuracy") if pipes.val is not None else "accuracy"
    plateau = job.proto["reduce_on_plateau"]
    if plateau and pipes.val is None and str(plateau["monitor"]).startswith("val_"):
        plateau = {**plateau, "monitor": plateau["monitor"][4:]}
    return monitor, plateau


def _better(value, best, mode_max: bool) -> bool:
    if best is None:
        return True
    return value > best if mode_max else value < best


def run_epochs(job: TrainJob, model, pipes: Pipelines, strat, chief: bool) -> tuple[dict, list | None]:
    """Step 5: the epochs under the recipe's protocol, from the checkpoint when resuming: each epoch's learning
    rate (schedule x plateau scale), the best epoch's weights, reduce-on-plateau (optionally reloading the best
    weights) and a checkpoint after every epoch. Returns ``(state, best weights or None)``."""
    import keras
    import numpy as np

    from .recipes import learning_rate_at, plateau_step

    say, epochs = job.say, job.epochs
    state = _new_state(job)
    best_weights = None
    if job.previous is not None:
        with strat.scope():
            restored, best_weights = job.run.restore(model)
        state.update({k: restored[k] for k in ("epoch", "history", "best", "best_epoch", "lr_scale", "plateau_best",
                                               "plateau_wait", "train_seconds")})
        if state["epoch"] >= epochs:
            say(f"the checkpoint has {state['epoch']} epochs done; nothing left to train for --epochs {epochs}")
        else:
            say(f"resuming from epoch {state['epoch']} of {epochs} ({job.run.root})")
    monitor, plateau = _monitors(job, pipes)
    base_lr, schedule = model._base_lr, model._schedule

    def lr_for(epoch: int) -> float | None:
        if base_lr is None:
            return None
        lr = learning_rate_at(schedule, base_lr, epoch) * state["lr_scale"]
        return max(lr, float(plateau["min_lr"])) if plateau else lr

    # per-epoch scalars for TensorBoard, beside the weights (one event file per fit call; steps are epochs)
    board = keras.callbacks.TensorBoard(log_dir=str(job.out_dir / TENSORBOARD_DIR), write_graph=False,
                                        profile_batch=0) if chief else None
    for epoch in range(state["epoch"], epochs):
        start = time.time()
        if job.verbose:
            say(f"epoch {epoch + 1}/{epochs}")
        callbacks = [board] if board is not None else []
        lr = lr_for(epoch)
        if lr is not None:
            callbacks.append(keras.callbacks.LearningRateScheduler(lambda _e, _lr, v=lr: v))
        if job.verbose:
            callbacks.append(_progress_bar())  # last, as Keras's own: it prints what the others logged
        hist = model.fit(pipes.train(epoch), validation_data=pipes.val, epochs=epoch + 1, initial_epoch=epoch,
                         verbose=job.verbose, callbacks=callbacks, shuffle=False)  # the pipeline shuffles per epoch
        logs = {k: float(v[-1]) for k, v in hist.history.items()}
        if lr is not None:
            logs["learning_rate"] = lr
        for k, v in logs.items():
            state["history"].setdefault(k, []).append(v)
        value = logs.get(monitor)
        if value is not None and math.isfinite(value) and _better(value, state["best"], "loss" not in monitor):
            state["best"], state["best_epoch"] = value, epoch + 1
            best_weights = [np.asarray(w) for w in model.get_weights()]
        if plateau:
            state["plateau_best"], state["plateau_wait"], drop = plateau_step(
                plateau, logs.get(plateau["monitor"]), state["plateau_best"], state["plateau_wait"])
            if drop:
                state["lr_scale"] *= float(plateau["factor"])
                msg = f"epoch {epoch + 1}: {plateau['monitor']} on a plateau; learning rate x{plateau['factor']}"
                if plateau["reload_best"] and best_weights is not None:
                    model.set_weights(best_weights)
                    msg += f", best weights (epoch {state['best_epoch']}) reloaded"
                say(msg)
        state["epoch"] = epoch + 1
        seconds = time.time() - start
        state["train_seconds"] += seconds
        state["history"].setdefault("epoch_seconds", []).append(round(seconds, 1))  # wall time, validation included
        if chief:
            job.run.save(model, state, best_weights if job.proto["keep"] == "best" or plateau else None)
    return state, best_weights


def store(job: TrainJob, model, pipes: Pipelines, state: dict, best_weights, *, init_report, chief: bool,
          policy: str) -> dict:
    """Step 6: keep the best (or last) epoch's weights, report on the validation split (with the recipe's
    test-time augmentation beside the single pass), and write the weights with their card, the history, the
    curves; then remove the run's checkpoint. Returns the summary :func:`train` returns."""
    from . import faces as F
    from .weights import read_card

    proto = job.proto
    if proto["keep"] == "best" and best_weights is not None:
        model.set_weights(best_weights)
    kept_epoch = state["best_epoch"] if proto["keep"] == "best" and best_weights is not None else state["epoch"]
    report = None
    card: dict = {"dataset": job.dataset, "recipe": job.rec, "recipe_name": job.recipe_name, "command": job.command,
                  "epochs_run": state["epoch"], "kept": proto["keep"], "kept_epoch": kept_epoch,
                  "best_epoch": state["best_epoch"], "train_seconds": round(state["train_seconds"], 1),
                  "train_examples": pipes.num_train, "seed": job.seed, "batch_size": job.batch_size,
                  "precision": policy}
    if job.dataset_options:
        card["dataset_options"] = job.dataset_options
    # how the training faces were framed: in words, and where known the rule predict cuts photos by
    card["input_spec"] = {**model.input_spec_info.to_dict(), **F.dataset_framing(job.dataset)}
    if init_report is not None:
        card["init_from"] = {"source": str(job.init_from), **init_report}
    if getattr(model, "distillation", None) is not None:
        card["distillation"] = model.distillation.describe()  # the mode used, not only the one requested
    if pipes.val is not None:
        if proto["tta"]:
            single = model.evaluate(pipes.val, verbose=0, tta=None)
            model.tta = proto["tta"]
        report = model.evaluate(pipes.val, verbose=0)
        card["metrics"] = {"split": job.val_split, "accuracy": report["accuracy"],
                           "balanced_accuracy": report["balanced_accuracy"], "macro_f1": report["macro_f1"],
                           "num_examples": report["num_examples"], "confusion_matrix": report["confusion_matrix"],
                           "epoch": kept_epoch}
        if proto["tta"]:
            card["metrics"].update(tta=proto["tta"], single_pass_accuracy=single["accuracy"])
        k = proto["report_mean_last"]
        accs = state["history"].get("val_accuracy", [])
        if k:
            last = accs[-k:]
            card["metrics"][f"mean_last_{k}_accuracy"] = float(sum(last) / len(last)) if last else None
    weights_path = job.out_dir / f"{job.model_name}{weights_mod.WEIGHTS_SUFFIX}"
    model.tta = proto["tta"]  # the card says how the weights predict
    summary = {"model": model, "weights": None, "card": None, "report": report, "history": state["history"],
               "seconds": state["train_seconds"], "tag": job.tag}
    if not chief:  # a non-chief worker of a multi-worker run: the chief wrote the same weights
        return summary
    weights_mod.save(model, weights_path, **card)
    weights_mod.write_json_atomic(job.out_dir / "history.json", state["history"])
    _write_curves(job.out_dir / CURVES_FILE, state["history"], f"{job.model_name} on {job.dataset}", job.say)
    job.run.clear()
    return {**summary, "weights": str(weights_path), "card": read_card(weights_path)}


def train(model_name: str, dataset: str = "synthetic", data_dir: str | None = None, *, epochs: int | None = None,
          batch_size: int | None = None, tag: str | None = None, output: str | None = None,
          recipe: str | None = None, val_split: str | None = None, strategy: str = "auto", seed: int = 0,
          mixed_precision: bool | str | None = False, limit: int | None = None, verbose: int = 1,
          config: Mapping[str, Any] | None = None, dataset_options: Mapping[str, Any] | None = None,
          command: str | None = None, input_shape=None, init_from: str | None = None, resume: bool = False,
          say=None, teachers=None, distillation: Mapping[str, Any] | None = None) -> dict:
    """Train ``model_name`` on ``dataset`` with its recipe and protocol; store the weights with a card.

    ``epochs`` / ``batch_size`` default to the recipe's (the value used is printed); ``val_split`` defaults to
    the recipe's (``"none"``: no validation). ``dataset_options`` go to the data set reader over the recipe's
    ``dataset_options``. ``init_from`` (a weight tag of this model or a weights file; default: the recipe's
    ``init_from`` on a new run, ``"none"``: from scratch) initialises every layer whose name and shapes match,
    and the layers it could not transfer are printed. ``resume`` continues the run in the run folder from its
    last checkpoint. ``say`` receives the printed lines (default: stderr). Returns a summary with the
    validation report. ``teachers`` (``NAME.TAG`` or weights files; default: the recipe's ``teachers``) distil into
    the model with ``distillation`` (``temperature``, ``alpha``, ``mode`` over the recipe's; see ferzoo.distill).

    The steps: :func:`resolve_job` (arguments and recipe), :func:`read_data`, :func:`build_model`,
    :func:`make_pipelines`, :func:`run_epochs`, :func:`store`.
    """
    import keras

    say = say or (lambda line: print(f"ferzoo: {line}", file=sys.stderr))
    job = resolve_job(model_name, dataset, data_dir, epochs=epochs, batch_size=batch_size, tag=tag, output=output,
                      recipe=recipe, val_split=val_split, seed=seed, limit=limit, verbose=verbose, config=config,
                      dataset_options=dataset_options, command=command, input_shape=input_shape,
                      init_from=init_from, resume=resume, say=say, teachers=teachers, distillation=distillation)
    strat = pick_strategy(strategy)  # first TF work: multi-worker collectives must be set up before any other
    chief = is_chief(strat)
    keras.utils.set_random_seed(job.seed)
    policy = precision_policy(mixed_precision, say)
    with dtype_policy(policy):
        data = read_data(job)
        model, init_report = build_model(job, data, strat)
        pipes = make_pipelines(job, data, model, strat)
        state, best_weights = run_epochs(job, model, pipes, strat, chief)
        return store(job, model, pipes, state, best_weights, init_report=init_report, chief=chief, policy=policy)
