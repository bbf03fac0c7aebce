"""ferzoo: a plugin-based Keras 3 / TensorFlow model zoo for facial expression recognition.

``import ferzoo`` is cheap: TensorFlow and the plugins load on first use.
"""

from __future__ import annotations

from typing import Any, Sequence

from .hookspecs import hookimpl
from .registry import NameClashError, PluginError, UnknownNameError, get_registry
from .specs import DatasetSpec, InputSpec, LossSpec, ModelSpec

__version__ = "0.1.0"

__all__ = [
    "hookimpl", "ModelSpec", "LossSpec", "DatasetSpec", "InputSpec", "PluginError", "NameClashError",
    "UnknownNameError", "list_models", "list_losses", "list_datasets", "list_plugins", "list_explainers",
    "build", "load", "get_dataset", "get_loss", "model_info", "register_plugin", "demo_image",
    "predict_files", "explain_files", "detect",
]


def list_models() -> list[str]:
    reg = get_registry()
    reg.ensure_loaded()
    return sorted(reg.models)


def list_losses() -> list[str]:
    reg = get_registry()
    reg.ensure_loaded()
    return sorted(reg.losses)


def list_datasets() -> list[str]:
    reg = get_registry()
    reg.ensure_loaded()
    return sorted(reg.datasets)


def list_plugins() -> list[dict]:
    """Every plugin seen: name, version, module, what it registered, and the error if it failed to load."""
    reg = get_registry()
    reg.ensure_loaded()
    return [dict(vars(info)) for info in sorted(reg.plugins.values(), key=lambda i: i.name)]


def list_explainers(model: str) -> list[str]:
    from .explain import list_explainers as _list

    return _list(model)


def model_info(name: str) -> ModelSpec:
    return get_registry().model(name)


def register_plugin(obj: Any, name: str | None = None) -> None:
    """Register a plugin object in this process (an alternative to an entry point, for notebooks and tests)."""
    get_registry().register(obj, name=name)


def build(name: str, num_classes: int = 7, input_shape: Sequence[int] | None = None, *,
          class_names: Sequence[str] | None = None, recipe: str = "default", **config):
    """Build model ``name`` with the uniform interface (:class:`ferzoo.model.FERModel`).

    ``class_names`` default to the first ``num_classes`` canonical names (angry, disgust, fear, happy, sad,
    surprise, neutral, contempt). ``config`` overrides the plugin's ``default_config`` (unknown keys are an
    error). ``recipe`` picks the data set recipe ``compile()`` uses; its ``config`` (e.g. a loss margin for that
    data set) applies under ``config``, and its ``input_shape`` (e.g. the 64 x 64 of FDRL's ``fer2013`` recipe)
    when ``input_shape`` is not given (else the paper's input).
    """
    from .model import FERModel

    spec = get_registry().model(name)
    shape, class_names, cfg = _build_settings(spec, name, num_classes, input_shape, class_names, recipe, config)
    inputs, outputs, input_spec, aux = _build_graph(spec, name, num_classes, shape, cfg)
    return FERModel(inputs=inputs, outputs=outputs, model_name=name, num_classes=num_classes,
                    class_names=class_names, input_spec=input_spec.to_dict(), config=cfg, aux_losses=aux,
                    recipe=recipe, name=name)


def _build_settings(spec, name: str, num_classes: int, input_shape, class_names, recipe: str, config: dict):
    """``build``'s arguments checked and resolved: the input shape (given, else the recipe's, else the paper's),
    the class names and the config (the plugin's defaults, under the recipe's, under the caller's)."""
    from .labels import CANONICAL
    from .recipes import resolve_recipe

    recipes = spec.recipe_table()
    if recipe != "default" and recipe not in recipes:
        raise ValueError(f"model {name!r}: no recipe {recipe!r}; known: {sorted(recipes) or ['default']}")
    resolved = resolve_recipe(recipes, recipe, name)
    if input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
    else:  # the recipe's input (ferzoo's FER-2013 recipes train at 48-64 px), else the paper's
        shape = tuple(int(v) for v in (resolved.get("input_shape") or spec.default_input_shape))
    spec.check(num_classes, shape)
    if class_names is None:
        if num_classes > len(CANONICAL):
            class_names = [f"class_{i}" for i in range(num_classes)]
        else:
            class_names = list(CANONICAL[:num_classes])
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes or len(set(class_names)) != num_classes:
        raise ValueError(f"model {name!r}: class_names must be {num_classes} distinct names, got {class_names}")
    unknown = sorted(set(config) - set(spec.default_config))
    if unknown:
        raise ValueError(f"model {name!r}: unknown config keys {unknown}; known: {sorted(spec.default_config)}")
    recipe_config = dict(resolved.get("config") or {})
    bad = sorted(set(recipe_config) - set(spec.default_config))
    if bad:
        raise ValueError(f"model {name!r}: recipe {recipe!r} sets unknown config keys {bad}; "
                         f"known: {sorted(spec.default_config)}")
    return shape, class_names, {**dict(spec.default_config), **recipe_config, **config}


def _build_graph(spec, name: str, num_classes: int, shape: tuple, cfg: dict):
    """The functional graph: input, standardisation, the plugin's builder (its outputs checked: ``logits`` of
    ``num_classes``), the softmax, and the plugin's auxiliary losses (each checked to find the outputs it needs)."""
    import keras

    from .model import Standardize
    from .specs import resolve

    input_spec = InputSpec(shape[0], shape[1], shape[2], _per_channel(spec.mean, shape[2]),
                           _per_channel(spec.std, shape[2]), spec.face_alignment)
    inputs = keras.Input(shape=shape, name="image")
    x = Standardize(input_spec.mean, input_spec.std, name="standardize")(inputs)
    built = resolve(spec.builder)(x, num_classes, **cfg)
    if isinstance(built, keras.Model) and not isinstance(built, keras.KerasTensor):
        built = built(x)
    outputs = dict(built) if isinstance(built, dict) else {"logits": built}
    if "logits" not in outputs:
        raise ValueError(f"model {name!r}: the builder returned outputs {sorted(outputs)} without 'logits'")
    if tuple(outputs["logits"].shape[1:]) != (num_classes,):
        raise ValueError(f"model {name!r}: logits have shape {outputs['logits'].shape}, expected (None, {num_classes})")
    outputs["probabilities"] = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        outputs["logits"])
    aux = list(resolve(spec.losses)(num_classes, **cfg)) if spec.losses is not None else []
    for loss in aux:
        missing = [k for k in getattr(loss, "requires", ()) if k not in outputs]
        if missing:
            raise ValueError(f"model {name!r}: aux loss {loss.name!r} needs outputs {missing}; "
                             f"the model has {sorted(outputs)}")
    return inputs, outputs, input_spec, aux


def _per_channel(values, channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1:  # an RGB statistic for a grayscale input: use the luma-weighted value
        return (0.299 * values[0] + 0.587 * values[1] + 0.114 * values[2],)
    raise ValueError(f"normalisation {values} does not fit {channels} channels")


def get_loss(name: str, **config):
    """Instantiate a registered loss (a Keras loss or an :class:`ferzoo.losses.AuxiliaryLoss`)."""
    from .specs import resolve

    return resolve(get_registry().loss(name).factory)(**config)


def get_dataset(name: str, data_dir=None, split: str | None = None, **options):
    """An unbatched ``tf.data.Dataset`` of ``(image, label)`` with a ``class_names`` attribute."""
    from .specs import resolve

    spec = get_registry().dataset(name)
    if split is not None and spec.splits and split not in spec.splits:
        raise ValueError(f"data set {name!r}: unknown split {split!r}; known: {list(spec.splits)} or None (all)")
    ds = resolve(spec.loader)(data_dir=data_dir, split=split, **options)
    if getattr(ds, "class_names", None) is None:
        raise PluginError(f"data set {name!r} (plugin {spec.plugin!r}) returned a data set without class_names")
    return ds


def demo_image(path_only: bool = False):
    """A real, public-domain face photo shipped with ferzoo (RGB uint8 array, or its path)."""
    from pathlib import Path

    path = Path(__file__).resolve().parent / "assets" / "astronaut_face.png"
    if path_only:
        return path
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load(name: str, weights: str | None = None, **kwargs):
    """Build ``name`` and load weights: a tag (``"fer2013"``, resolved through the weight registry and the
    local store), a path to a ``.weights.h5`` file (with its ``.json`` card beside it), or ``None``."""
    from .weights import load as _load

    return _load(name, weights=weights, **kwargs)


def predict_files(paths, model=None, weights=None, **options) -> list[dict]:
    """Classify every face in photos, folders, videos and images in memory (numpy arrays, PIL images): one record
    per face (``file``, ``frame``, ``box``, ``class``, ``probabilities``, ``status``, ...); see
    :func:`ferzoo.predict.predict_files`. With no model and no weights it uses the embedded default
    (``ferzoo.weights.DEFAULT_MODEL``), and says so; a model named (or the default) stays loaded for the next
    call in this process (``cache=False`` loads it afresh)."""
    from .predict import predict_files as _predict_files

    options.setdefault("cache", True)
    return _predict_files(paths, model=model, weights=weights, **options)


def detect(images, model=None, weights=None, **options) -> list[dict]:
    """Classify the faces in images in memory: a numpy array (H x W gray, H x W x 3 RGB, H x W x 4 RGBA; values
    0..255) or a PIL image, a list of them, or a 4-D batch. Returns the records of :func:`predict_files` (``file``
    is ``"<image N>"``, N the image's place). The model (the default when none is named) stays loaded for the
    next call in this process."""
    from .predict import detect as _detect

    return _detect(images, model=model, weights=weights, **options)


def explain_files(paths, model=None, weights=None, *, output, **options) -> list[dict]:
    """Per face, heat-map pictures of the model's own method and Grad-CAM++ in the folder ``output``; see
    :func:`ferzoo.predict.explain_files`."""
    from .predict import explain_files as _explain_files

    return _explain_files(paths, model=model, weights=weights, output=output, **options)
