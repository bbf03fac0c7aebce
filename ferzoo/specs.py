"""Plain descriptions of what a plugin contributes. Nothing here imports TensorFlow."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence


def resolve(obj: Any) -> Any:
    """Turn a ``"package.module:attr"`` path into the object it names; other objects pass through."""
    if isinstance(obj, str):
        if ":" not in obj:
            raise ValueError(f"expected 'module:attribute', got {obj!r}")
        module_name, _, attr = obj.partition(":")
        target = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        return target
    return obj


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: images of ``height x width x channels``, pixel values in [0, 255].

    Models normalise internally: ``(x / 255 - mean) / std`` per channel, so callers always feed raw pixels.
    """

    height: int
    width: int
    channels: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    face_alignment: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def color(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"

    def to_dict(self) -> dict:
        return {
            "height": self.height, "width": self.width, "channels": self.channels,
            "color": self.color, "pixel_range": [0, 255],
            "mean": list(self.mean), "std": list(self.std), "face_alignment": self.face_alignment,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "InputSpec":
        return cls(int(d["height"]), int(d["width"]), int(d["channels"]),
                   tuple(d.get("mean", (0.0,))), tuple(d.get("std", (1.0,))), d.get("face_alignment"))


@dataclass
class ModelSpec:
    """A model contributed by a plugin.

    ``builder(inputs, num_classes, **config)`` receives the *normalised* input tensor and returns either the
    logits tensor or a dict of tensors with at least ``"logits"`` (plus whatever the plugin's losses and
    explainers need, e.g. ``"features"``). ``losses(num_classes, **config)`` returns the auxiliary loss
    layers (:class:`ferzoo.losses.AuxiliaryLoss`). Both may be ``"module:attr"`` strings, resolved lazily.
    """

    name: str
    builder: Callable | str
    description: str = ""
    paper: str = ""
    default_input_shape: tuple[int, int, int] = (48, 48, 1)
    #: allowed input shapes; ``None`` = any (H, W) >= ``min_size`` with a channel count in ``channels``
    input_shapes: Sequence[tuple[int, int, int]] | None = None
    channels: Sequence[int] = (1, 3)
    min_size: int = 8
    num_classes: Sequence[int] | None = None  # allowed class counts; None = any >= 2
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    face_alignment: str | None = None
    default_config: Mapping[str, Any] = field(default_factory=dict)
    #: config keys that only initialise a model built from scratch (``backbone_weights``: a pretrained file);
    #: they are never written into a weights card, so loading trained weights needs no such file
    init_config: Sequence[str] = ()
    losses: Callable | str | None = None
    #: per data set training recipes; the key "default" is the base, others override it
    recipes: Mapping[str, Mapping] | Callable | str = field(default_factory=dict)
    #: name -> explain function ``fn(model, images, class_index, **kw) -> (B, H, W) in [0, 1]``
    explainers: Mapping[str, Callable | str] = field(default_factory=dict)
    default_explainer: str = "saliency"
    #: the layer the core's Grad-CAM++ maps when none is named (``None``: the last 4-D layer)
    gradcam_layer: str | None = None
    #: layer-name prefixes whose ops stay float in a full-integer (int8) TFLite export (activations whose
    #: range int8 cannot hold, e.g. unbounded attention products); the rest of the model is int8
    int8_float_layers: Sequence[str] = ()
    #: ``fn(checkpoint_path, tag=..., output=..., **options) -> weights path``: imports published weights
    converter: Callable | str | None = None
    plugin: str | None = None

    def check(self, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` naming the allowed values when a request does not fit this model."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"model {self.name!r}: num_classes must be an integer >= 2, got {num_classes!r}")
        if self.num_classes is not None and num_classes not in self.num_classes:
            raise ValueError(
                f"model {self.name!r}: num_classes={num_classes} is not supported; allowed: "
                f"{sorted(self.num_classes)}")
        shape = tuple(input_shape)
        if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
            raise ValueError(f"model {self.name!r}: input_shape must be (height, width, channels), got {input_shape!r}")
        if self.input_shapes is not None:
            allowed = [tuple(s) for s in self.input_shapes]
            if shape not in allowed:
                raise ValueError(f"model {self.name!r}: input_shape={shape} is not supported; allowed: {allowed}")
            return
        if shape[2] not in self.channels:
            raise ValueError(
                f"model {self.name!r}: {shape[2]} input channels not supported; allowed: {list(self.channels)}")
        if min(shape[:2]) < self.min_size:
            raise ValueError(
                f"model {self.name!r}: input_shape={shape} is too small; height and width must be >= {self.min_size}")

    def recipe_table(self) -> dict:
        table = resolve(self.recipes)
        if callable(table):
            table = table()
        return dict(table or {})


@dataclass
class LossSpec:
    """A loss contributed by a plugin: ``factory(**config)`` returns a Keras loss or AuxiliaryLoss layer."""

    name: str
    factory: Callable | str
    description: str = ""
    plugin: str | None = None


@dataclass
class DatasetSpec:
    """A data set reader: ``loader(data_dir=..., split=..., **options)`` returns a ``tf.data.Dataset`` of
    ``(image, label)`` with a ``class_names`` attribute (see :mod:`ferzoo.data`)."""

    name: str
    loader: Callable | str
    description: str = ""
    splits: Sequence[str] = ("train", "val", "test")
    class_names: Sequence[str] | None = None
    homepage: str = ""
    #: how the set's faces are framed, as a photo crop rule (``ferzoo.faces.FaceCrop`` fields: detector,
    #: margin, align) where it is known; ``ferzoo train`` writes it into the card's ``input_spec.face_crop``, so
    #: that ``predict`` cuts faces from photos the way the weights saw them
    face_crop: Mapping[str, Any] | None = None
    #: the same in words, for the card's ``input_spec.face_alignment`` (what the weights were trained on)
    face_alignment: str | None = None
    plugin: str | None = None
