"""Export a zoo model to a TensorFlow SavedModel or a TFLite (LiteRT) flatbuffer, and check it against Keras.

SavedModel signatures (loadable with ``tf.saved_model.load`` alone, no ferzoo needed):

``serving_default``  ``images``: float32 ``(batch, H, W, C)``, raw pixel values 0..255 -> ``probabilities``
``serving_uint8``    the same for uint8 images
``serving_bytes``    (``layout="serving"``) ``image_bytes``: string ``(batch,)`` of encoded JPEG / PNG / GIF / BMP
                     files, decoded and converted in the graph (RGB, then the model's channels and size) ->
                     ``probabilities`` (TensorFlow Serving's REST API sends ``{"b64": "..."}`` to a string input)
``metadata``         no inputs -> ``class_names`` (string, in output order), ``input_shape`` (H, W, C) and
                     ``model`` (string)

With ``layout="serving"`` the two pixel signatures take images of any size with 1, 3 or 4 channels (``(batch,
None, None, None)``) and convert them in the graph (alpha dropped, gray <-> RGB, resized), as
``model.preprocess`` does; other shapes fail with a message naming the model's input shape.

The probabilities are the model's test-time augmentation (``tta``: the weights' card's by default, or
``"none"``) computed in the graph; the report's ``tta`` says which. ``layout="serving"`` writes TensorFlow
Serving's folder layout ``output/MODEL/VERSION/`` (the next free version number; an existing version is never
replaced) and the report gives the ``tensorflow_model_server`` command for it.

``ferzoo_export.json`` beside ``saved_model.pb`` repeats the metadata with the weights card and the parity
report. TFLite variants (``quantize``): ``none`` (float32), ``float16`` (float16 weights), ``dynamic``
(int8 weights, float activations) and ``int8`` (full integer: calibrated on a data set's images; uint8
input taking raw pixels, uint8 output; the interpreter's quantization parameters map them). A ``.json``
sidecar beside the ``.tflite`` file holds class names, input spec and the parity report.

Every export runs the exported artefact on real-looking images (a data set's images, default: the synthetic
one) and reports ``max_abs_diff`` (max |p_export - p_keras| over images and classes) and
``top1_agreement`` against the Keras model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .recipes import tta_option

FORMATS = ("savedmodel", "tflite")
LAYOUTS = ("plain", "serving")
#: ``export(tta=...)``: the weights' card's test-time augmentation, or one pass
TTA_CHOICES = ("card", "none")
#: the encoded-image signature's input name and the image formats it decodes
BYTES_SIGNATURE, BYTES_INPUT = "serving_bytes", "image_bytes"
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
SIDECAR = "ferzoo_export.json"


class ExportError(ValueError):
    pass


# -- inputs ---------------------------------------------------------------------------------------------------
def sample_images(model, dataset: str = "synthetic", *, data_dir=None, split: str | None = "val", count: int = 64,
                  seed: int = 0, **options) -> np.ndarray:
    """``count`` images of a data set converted to the model's input shape, float32 0..255 (uint8-valued)."""
    import tensorflow as tf

    import ferzoo
    from .data import convert_image

    if dataset == "synthetic":
        options = {"num_classes": model.num_classes, "per_class": max(1, -(-count // model.num_classes)),
                   "seed": seed, **options}
    ds = ferzoo.get_dataset(dataset, data_dir=data_dir, split=split, **options)
    shape = model.input_shape_hwc
    ds = ds.take(count).map(lambda x, y: tf.round(tf.clip_by_value(convert_image(x, shape), 0.0, 255.0)))
    images = np.stack([np.asarray(x) for x in ds.as_numpy_iterator()]) if count else np.zeros((0, *shape))
    if len(images) == 0:
        raise ExportError(f"data set {dataset!r} split {split!r} gave no images")
    return images.astype(np.float32)


# -- parity ---------------------------------------------------------------------------------------------------
def parity(reference: np.ndarray, probs: np.ndarray) -> dict:
    reference, probs = np.asarray(reference, np.float64), np.asarray(probs, np.float64)
    if reference.shape != probs.shape:
        raise ExportError(f"exported model returned shape {probs.shape}, Keras {reference.shape}")
    return {"n": int(len(reference)), "max_abs_diff": float(np.max(np.abs(reference - probs))),
            "mean_abs_diff": float(np.mean(np.abs(reference - probs))),
            "top1_agreement": float(np.mean(reference.argmax(-1) == probs.argmax(-1)))}


def keras_probabilities(model, images: np.ndarray, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """The Keras model's single-pass probabilities, or with ``tta=True`` those of its test-time augmentation
    (``model.tta``; what :func:`export` computes in the graph when asked)."""
    tta = None if tta else getattr(model, "tta", None)
    if tta:
        model.tta = None
    try:
        out = [np.asarray(model.predict_on_batch(images[i:i + batch_size]))
               for i in range(0, len(images), batch_size)]
    finally:
        if tta:
            model.tta = tta
    return np.concatenate(out).astype(np.float32)


# -- frozen in-process predictor -------------------------------------------------------------------------------
class FrozenPredictor:
    """A snapshot of ``model``'s predict step (its test-time augmentation included) as one TensorFlow graph with
    the weights folded in as constants, for fast in-process inference on CPU.

    With constant weights TensorFlow's graph optimizer and oneDNN can treat the filters as constants, and the
    call skips Keras' per-call work in ``predict_on_batch``; layers that define ``inference_fold()`` (DAN's
    spatial attention: its three conv-BN branches as one convolution) are traced in their folded form
    (:func:`ferzoo.layers.inference_constants`). ``BENCHMARKS.md`` (CPU speed section) has the measured
    differences. Later changes to the model's weights or
    ``tta`` are not seen: freeze again after them.

    ``predictor(images)``: ``(B, H, W, C)`` float pixels 0..255 of the model's input shape -> ``(B, K)``
    probabilities (numpy); ``predictor.predict(images, batch_size=64)`` runs a large array in batches."""

    def __init__(self, model, precision: str | None = None, fold: bool = True):
        import tensorflow as tf
        # the converter TensorFlow's own TFLite path uses; there is no public alias in TF 2.x
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        from .layers import folded_for_inference

        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} or None (the model's own); "
                             f"got {precision!r}")
        self.model_name = model.model_name
        self.class_names = list(model.class_names)
        self.input_shape = tuple(model.input_shape_hwc)
        self.tta = getattr(model, "tta", None)
        own = _policy_name(model)
        if precision is not None and PRECISIONS[precision] != own:
            model = _twin(model, PRECISIONS[precision])
        #: the precision computed in (``float32``, ``bfloat16``, or the name of another Keras policy)
        self.precision = precision or {v: k for k, v in PRECISIONS.items()}.get(own, own)
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32, name="images")
        step = tf.function(lambda images: tf.cast(model.predict_step((images,)), tf.float32), input_signature=[spec])
        #: whether layers with an ``inference_fold()`` were traced in their folded form
        self.fold = bool(fold)
        with folded_for_inference(model) if fold else contextlib.nullcontext():
            self._fn = convert_variables_to_constants_v2(step.get_concrete_function())

    def __call__(self, images) -> np.ndarray:
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(images, np.float32))
        if x.shape.rank != 4 or tuple(x.shape[1:]) != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"FrozenPredictor({self.model_name}): expected images of shape (B, {shape}), got "
                             f"{tuple(x.shape)}; model.preprocess() converts photos")
        out = self._fn(x)
        return np.asarray((out[0] if isinstance(out, (list, tuple)) else out).numpy())

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = np.asarray(images, np.float32)
        parts = [self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)


#: ``frozen_predictor(precision=...)``: the Keras dtype policy each precision computes under
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _policy_name(model) -> str:
    return getattr(getattr(model, "dtype_policy", None), "name", "float32")


def _twin(model, policy: str):
    """``model`` rebuilt under the Keras dtype ``policy`` with a copy of its weights (and ``eval_crop`` / ``tta``)."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        twin = type(model).from_config(model.get_config())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    mine, theirs = model.weights, twin.weights
    if [tuple(v.shape) for v in mine] != [tuple(v.shape) for v in theirs]:
        raise ValueError(f"{model.model_name}: the {policy} rebuild has other weights than the model; "
                         f"freeze it in its own precision")
    for src, dst in zip(mine, theirs):
        dst.assign(keras.ops.cast(src, dst.dtype))
    twin.eval_crop, twin.tta = model.eval_crop, model.tta
    return twin


def frozen_predictor(model, precision: str | None = None, fold: bool = True) -> FrozenPredictor:
    """:class:`FrozenPredictor` of ``model`` (a snapshot of its current weights and ``tta``), computing in the
    model's own dtype policy unless ``precision`` names another.

    ``precision="bfloat16"`` computes in bfloat16 (Keras' ``mixed_bfloat16`` policy on a copy of the model; the
    probabilities come back as float32): on CPUs with native bfloat16 (AVX-512 BF16 / AMX) about twice as fast
    as float32 at batch 1, with slightly different probabilities (``BENCHMARKS.md``, CPU speed section, has the
    speed and the top-1 agreement measured on FER-2013); on CPUs without it, slower. ``precision="float32"``
    of a model built under a mixed policy freezes a float32 copy. ``fold=False`` traces every layer as Keras
    runs it (no ``inference_fold()`` re-parameterisation)."""
    return FrozenPredictor(model, precision, fold)


# -- SavedModel -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def with_tta(model, tta: str | None):
    """``model`` with ``model.tta = tta`` for the duration (``"card"``: as it is; ``"none"``: one pass)."""
    if tta in (None, "card"):
        yield model
        return
    kept = model.tta
    model.tta = tta_option(tta, kept)
    try:
        yield model
    finally:
        model.tta = kept


def graph_preprocess(model, images):
    """``(B, h, w, c)`` float pixels (any size; 1, 3 or 4 channels known when traced) -> the model's input, as
    :meth:`ferzoo.model.FERModel.preprocess` converts photos (the same functions, in the graph)."""
    from .data import convert_image, resize_then_crop

    if getattr(model, "eval_crop", None):
        return resize_then_crop(model.input_shape_hwc, model.eval_crop, "center")(images)
    return convert_image(images, model.input_shape_hwc)


def graph_convert_any(model, images):
    """``(B, h, w, c)`` pixels of any size with 1, 3 or 4 channels (known only when called) -> the model's input,
    in the graph, as :meth:`ferzoo.model.FERModel.preprocess` converts an array (alpha dropped, RGB <-> gray by
    the ITU-R 601 luma, then resized); other ranks or channel counts fail with a message naming the shape."""
    import tensorflow as tf

    h, w, c = model.input_shape_hwc
    x = tf.cast(images, tf.float32)
    have = tf.shape(x)[-1]
    message = (f"images must be (batch, height, width, channels) with 1, 3 or 4 channels; {model.model_name} "
               f"takes (batch, {h}, {w}, {c}) and converts other sizes and channel counts")
    checks = [tf.debugging.assert_rank(x, 4, message=message),
              tf.debugging.Assert(tf.reduce_any(tf.equal(have, [1, 3, 4])), [message])]
    with tf.control_dependencies(checks):
        x = tf.identity(x)
    if c == 1:
        luma = tf.constant([0.299, 0.587, 0.114])
        x = tf.cond(tf.equal(have, 1), lambda: x[..., :1],
                    lambda: tf.reduce_sum(x[..., :3] * luma, axis=-1, keepdims=True))
    else:
        x = tf.cond(tf.equal(have, 1), lambda: tf.repeat(x[..., :1], c, axis=-1), lambda: x[..., :c])
    return graph_preprocess(model, tf.ensure_shape(x, [None, None, None, c]))


def decode_image_bytes(data):
    """Encoded image bytes (one scalar string) -> ``(h, w, 3)`` float32 RGB pixels, in the graph: gray images
    are repeated to three channels and an alpha channel is dropped (what PIL's ``convert("RGB")`` does)."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return tf.cast(image, tf.float32)


def _serving_module(model, *, uint8: bool = True, metadata: bool = True, image_bytes: bool = False,
                    any_size: bool = False):
    """A ``tf.Module`` holding the probabilities model and the serving functions (signatures by name). The
    probabilities are ``model.predict_step`` (with the model's ``tta``) when it has one, else one pass.
    ``any_size``: the pixel signatures take any height, width and 1, 3 or 4 channels (:func:`graph_convert_any`)."""
    import tensorflow as tf

    probs_model = model.output_model("probabilities")
    h, w, c = model.input_shape_hwc
    module = tf.Module()
    signatures = {}

    if getattr(model, "tta", None):
        def forward(x):
            return tf.cast(model.predict_step((x,)), tf.float32)
    else:
        def forward(x):
            return probs_model(x, training=False)

    def serve(images):
        x = graph_convert_any(model, images) if any_size else tf.cast(images, tf.float32)
        return {"probabilities": forward(x)}

    shape = [None, None, None, None] if any_size else [None, h, w, c]
    signatures["serving_default"] = tf.function(
        serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    if uint8:
        signatures["serving_uint8"] = tf.function(
            serve, input_signature=[tf.TensorSpec(shape, tf.uint8, name="images")])
    if image_bytes:
        def serve_bytes(image_bytes):
            def one(data):
                return graph_preprocess(model, decode_image_bytes(data)[tf.newaxis])[0]

            batch = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([h, w, c], tf.float32))
            return {"probabilities": forward(batch)}

        signatures[BYTES_SIGNATURE] = tf.function(
            serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    if metadata:
        names, shape, name = list(model.class_names), [h, w, c], model.model_name

        def meta():
            return {"class_names": tf.constant(names, tf.string), "input_shape": tf.constant(shape, tf.int32),
                    "model": tf.constant(name, tf.string)}

        signatures["metadata"] = tf.function(meta, input_signature=[])
    for key, fn in signatures.items():
        setattr(module, key, fn)
    # track the TF variables the traced graph captures (not the Keras wrappers): each is saved once and
    # the TFLite converter can freeze them into constants
    captured = {}
    for key, fn in signatures.items():
        for var in fn.get_concrete_function().variables:
            captured.setdefault(id(var), var)
    module.graph_variables = list(captured.values())
    return module, signatures


def write_savedmodel(model, directory: str | os.PathLike, *, uint8: bool = True, metadata: bool = True,
                     image_bytes: bool = False, any_size: bool = False) -> Path:
    """Write the SavedModel (float32 and uint8 serving signatures, metadata; with ``image_bytes`` the
    encoded-image signature ``serving_bytes``; with ``any_size`` pixel signatures that convert any size and
    1, 3 or 4 channels) into ``directory``."""
    import tensorflow as tf

    directory = Path(directory)
    module, signatures = _serving_module(model, uint8=uint8, metadata=metadata, image_bytes=image_bytes,
                                         any_size=any_size)
    with _quiet():
        tf.saved_model.save(module, str(directory), signatures=signatures)
    return directory


def next_version(base: str | os.PathLike) -> int:
    """The version folder TensorFlow Serving's layout takes next under ``base`` (``MODEL`` folder): one more than
    the largest numbered folder, 1 for none."""
    base = Path(base)
    numbers = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(numbers, default=0) + 1


def serving_command(base: str | os.PathLike, name: str, port: int = 8501) -> str:
    """The ``tensorflow_model_server`` command line that serves ``base`` (the ``MODEL`` folder) as ``name``."""
    return (f"tensorflow_model_server --rest_api_port={port} --model_name={name} "
            f"--model_base_path={Path(base).resolve()}")


def run_savedmodel(directory: str | os.PathLike, images: np.ndarray, signature: str = "serving_default",
                   batch_size: int = 32) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(directory)).signatures[signature]
    if signature == BYTES_SIGNATURE:  # images: encoded files (bytes)
        return np.concatenate([fn(**{BYTES_INPUT: tf.constant(list(images[i:i + batch_size]))})["probabilities"]
                               .numpy() for i in range(0, len(images), batch_size)])
    dtype = fn.structured_input_signature[1]["images"].dtype
    out = []
    for i in range(0, len(images), batch_size):
        batch = tf.constant(np.asarray(images[i:i + batch_size]).astype(dtype.as_numpy_dtype))
        out.append(fn(images=batch)["probabilities"].numpy())
    return np.concatenate(out)


# -- TFLite ---------------------------------------------------------------------------------------------------
#: TFLite ops kept in float inside an int8 model: ops that turn values into indices (a spatial transformer's
#: grid sampling, gathers): quantized inputs move whole pixels (Deep-Emotion: top-1 agreement 85% -> 100%)
SENSITIVE_OPS = {"FLOOR", "GATHER", "GATHER_ND", "CAST"}


def convert_tflite(model, quantize: str = "none", representative: np.ndarray | None = None, *,
                   saved_model: str | os.PathLike | None = None, report: dict | None = None) -> bytes:
    """The TFLite flatbuffer of ``model`` (probabilities) for a quantization mode.

    ``saved_model``: convert this already written export of ``model`` instead of writing a temporary one.

    ``int8`` is full-integer quantization calibrated on ``representative`` images: uint8 input (raw pixels;
    one 0..255 ramp image joins the calibration images so the input scale is exactly 1, zero point 0) and
    uint8 output. Layers with ops that int8 breaks (:data:`SENSITIVE_OPS`: index computations such as a
    spatial transformer's grid sampler) are kept in float (everything else int8, float32 input
    and output) and are listed in ``report["float_layers"]`` when a ``report`` dict is passed."""
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; use one of {list(QUANTIZATIONS)}")
    report = report if report is not None else {}
    with tempfile.TemporaryDirectory(prefix="ferzoo-tflite-") as tmp:
        if saved_model is None:
            write_savedmodel(model, tmp, uint8=False, metadata=False)
            saved_model = tmp

        def converter():
            return tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])

        conv = converter()
        if quantize == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            if representative is None or len(representative) == 0:
                raise ExportError("int8 quantization needs representative images (a data set)")
            rep = np.asarray(representative, np.float32)
            ramp = np.linspace(0.0, 255.0, int(np.prod(rep.shape[1:])), dtype=np.float32).reshape(rep.shape[1:])
            rep = np.concatenate([ramp[None], rep])

            def gen():
                for image in rep:
                    yield [image[None]]

            float_prefixes = tuple(getattr(_spec_of(model), "int8_float_layers", ()) or ())
            if float_prefixes or _has_index_ops(model):
                with _quiet():
                    float_flat = converter().convert()
                keep, deny = _index_scopes(float_flat, float_prefixes)
                if keep:
                    layers = {layer.name for layer in model.layers}
                    report["float_layers"] = sorted(
                        {k if k in layers else re.sub(r"_\d+$", "", k) for k in keep})
                    conv.optimizations = [tf.lite.Optimize.DEFAULT]
                    conv.representative_dataset = gen
                    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny)
                    with _quiet():
                        debugger = tf.lite.experimental.QuantizationDebugger(
                            converter=conv, debug_dataset=lambda: ([im[None]] for im in rep[:2]),
                            debug_options=options)
                        return debugger.get_nondebug_quantized_model()
            report["float_layers"] = []
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = gen
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.uint8
        with _quiet():
            return conv.convert()


def _has_index_ops(model) -> bool:
    """Whether the Keras graph has ops of :data:`SENSITIVE_OPS` (cheap: one trace at batch 1)."""
    import tensorflow as tf

    probs_model = model.output_model("probabilities")
    spec = tf.TensorSpec([1, *model.input_shape_hwc], tf.float32)
    graph = tf.function(probs_model, autograph=False).get_concrete_function(spec).graph
    for op in graph.get_operations():
        if op.type in ("Floor", "GatherV2", "GatherNd", "ResourceGather"):
            return True
        if op.type == "Cast" and op.get_attr("DstT").is_integer:
            return True
    return False


def _spec_of(model):
    try:
        return model.spec
    except Exception:  # noqa: BLE001 - a model whose plugin is not loaded: no per-model export hints
        return None


def _index_scopes(flat: bytes, float_prefixes: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(layer scopes kept in float, every tensor name inside them) of a float TFLite model: layers holding
    index ops, and layers whose names start with one of ``float_prefixes`` (``ModelSpec.int8_float_layers``)."""
    interp = interpreter(model_content=flat)
    tensors = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    scopes = set()
    for op in interp._get_ops_details():  # noqa: SLF001 - the only way to list a flatbuffer's ops
        for idx in op["outputs"]:
            parts = tensors.get(int(idx), "").split("/")
            if len(parts) >= 3 and (op["op_name"] in SENSITIVE_OPS or parts[1].startswith(float_prefixes)):
                scopes.add("/".join(parts[:2]) + "/")
    deny = sorted(name for name in tensors.values() if any(name.startswith(s) for s in scopes))
    return sorted(s.split("/")[1] for s in scopes), deny


def interpreter(model_path: str | os.PathLike | None = None, model_content: bytes | None = None, num_threads=None):
    """A LiteRT interpreter (``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``)."""
    kwargs = {"model_path": None if model_path is None else str(model_path), "model_content": model_content,
              "num_threads": num_threads}
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(**kwargs)


def run_tflite(interp, images: np.ndarray) -> np.ndarray:
    """Run a probabilities TFLite model on a float 0..255 batch; quantizes input / dequantizes output as needed."""
    inp = interp.get_input_details()[0]
    images = np.asarray(images, np.float32)
    if tuple(inp["shape"]) != images.shape:
        interp.resize_tensor_input(inp["index"], list(images.shape))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    dtype = inp["dtype"]
    if np.issubdtype(dtype, np.integer):
        scale, zero = inp["quantization"]
        info = np.iinfo(dtype)
        data = np.clip(np.round(images / (scale or 1.0) + zero), info.min, info.max).astype(dtype)
    else:
        data = images.astype(dtype)
    interp.set_tensor(inp["index"], data)
    interp.invoke()
    out = interp.get_output_details()[0]
    result = interp.get_tensor(out["index"])
    if np.issubdtype(result.dtype, np.integer):
        scale, zero = out["quantization"]
        result = (result.astype(np.float32) - zero) * scale
    return np.asarray(result, np.float32)


# -- the export entry point -----------------------------------------------------------------------------------
def export(model, weights: str | os.PathLike | None = None, *, format: str = "savedmodel", quantize: str = "none",
           output: str | os.PathLike, dataset: str = "synthetic", data_dir=None, calibration_split: str = "train",
           check_split: str = "val", calibration_size: int = 100, check_size: int = 64,
           dataset_options: Mapping[str, Any] | None = None, check: bool = True, tta: str | None = None,
           layout: str = "plain") -> dict:
    """Export ``model`` (a name, loaded with ``weights``, or a built model) and check parity against Keras.

    ``dataset`` provides the int8 calibration images (``calibration_split``) and the parity check images
    (``check_split``). ``tta``: ``"card"`` (the weights' test-time augmentation, in the graph) or ``"none"``
    (one pass); default: the card's for a SavedModel, one pass for TFLite. ``layout="serving"`` (SavedModel):
    write ``output/MODEL/VERSION/`` as TensorFlow Serving loads it. Returns what was written, its size and the
    parity report."""
    import ferzoo

    _check_export_options(format=format, quantize=quantize, tta=tta, layout=layout)
    if isinstance(model, str):
        model = ferzoo.load(model, weights=weights)
    elif weights is not None:
        raise ExportError("pass weights only with a model name; a built model already has its weights")
    opts = dict(dataset_options or {})
    card = getattr(model, "weights_card", None)
    if tta is None:
        tta = "card" if format == "savedmodel" else "none"
    with with_tta(model, tta):
        applied = model.tta or "none"
    info = {"model": model.model_name, "class_names": list(model.class_names),
            "input_spec": model.input_spec_info.to_dict(), "format": format, "quantize": quantize,
            "tta": applied if tta == "none" else f"{applied} (the weights' card's)",
            "weights": None if weights is None else str(weights),
            "weights_sha256": card.get("sha256") if card else None, "ferzoo_version": ferzoo.__version__}
    check_images = sample_images(model, dataset, data_dir=data_dir, split=check_split, count=check_size,
                                 seed=1, **opts) if check else None
    if format == "savedmodel":
        return _export_savedmodel(model, Path(output), info, card, tta=tta, layout=layout, check_images=check_images)
    representative = None
    if quantize == "int8":
        representative = sample_images(model, dataset, data_dir=data_dir, split=calibration_split,
                                       count=calibration_size, seed=0, **opts)
        info["calibration"] = {"dataset": dataset, "split": calibration_split, "n": int(len(representative))}
    return _export_tflite(model, Path(output), info, card, tta=tta, quantize=quantize, representative=representative,
                          check_images=check_images, check_dataset={"name": dataset, "split": check_split})


def _check_export_options(*, format, quantize, tta, layout) -> None:
    """``export``'s options, checked before any model loads."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; use one of {list(FORMATS)}")
    if tta is not None and tta not in TTA_CHOICES:
        raise ExportError(f"--tta {tta!r}: use one of {', '.join(TTA_CHOICES)}")
    if layout not in LAYOUTS:
        raise ExportError(f"--layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if layout == "serving" and format != "savedmodel":
        raise ExportError("--layout serving: TensorFlow Serving's layout holds SavedModels (--format savedmodel)")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; use one of {list(QUANTIZATIONS)}")
    if format == "savedmodel" and quantize != "none":
        raise ExportError(f"quantization {quantize!r} applies to TFLite only; a SavedModel is float32")


def _export_savedmodel(model, output: Path, info: dict, card, *, tta, layout, check_images) -> dict:
    """Write the SavedModel (staged, then moved into place), its parity against Keras and its sidecar."""
    base = None
    if layout == "serving":
        if output.exists() and not output.is_dir():
            raise ExportError(f"--output {output}: exists and is not a folder")
        base = output / model.model_name
        output = base / str(next_version(base))
    with _staging_dir(output) as tmp, with_tta(model, tta):
        write_savedmodel(model, tmp, image_bytes=layout == "serving", any_size=layout == "serving")
        if check_images is not None:
            reference = keras_probabilities(model, check_images, tta=True)
            info["parity"] = parity(reference, run_savedmodel(tmp, check_images))
            info["parity_uint8"] = parity(reference, run_savedmodel(tmp, check_images, "serving_uint8"))
        _write_json(tmp / SIDECAR, {**info, "card": card})
    info.update(output=str(output), size_bytes=_tree_size(output))
    if base is not None:
        info.update(version=int(output.name), serving_command=serving_command(base, model.model_name))
    return info


def _export_tflite(model, output: Path, info: dict, card, *, tta, quantize, representative, check_images,
                   check_dataset: dict) -> dict:
    """Convert to TFLite, check parity against Keras, write the file and its sidecar (atomically)."""
    from .weights import atomic_path

    if output.is_dir():
        output = output / f"{model.model_name}_{quantize}.tflite"
    conversion: dict = {}
    with with_tta(model, tta):
        flat = convert_tflite(model, quantize, representative, report=conversion)
        reference = keras_probabilities(model, check_images, tta=True) if check_images is not None else None
    if "float_layers" in conversion:
        info["float_layers"] = conversion["float_layers"]
    if check_images is not None:
        info["parity"] = parity(reference, run_tflite(interpreter(model_content=flat), check_images))
        info["parity"]["dataset"] = check_dataset
    interp = interpreter(model_content=flat)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    info["tflite_io"] = {"input_dtype": np.dtype(inp["dtype"]).name, "input_quantization": list(inp["quantization"]),
                         "output_dtype": np.dtype(out["dtype"]).name,
                         "output_quantization": list(out["quantization"])}
    sidecar = output.with_suffix(".json") if output.suffix == ".tflite" else output.with_name(output.name + ".json")
    with atomic_path(output, suffix=".tflite") as tmp:
        tmp.write_bytes(flat)
    _write_json(sidecar, {**info, "card": card})
    info.update(output=str(output), metadata=str(sidecar), size_bytes=len(flat))
    return info


# -- helpers --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """Silence TF's converter chatter on stdout/stderr-level Python warnings (C++ logs follow TF_CPP_MIN_LOG_LEVEL)."""
    import logging

    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        tf_logger.setLevel(level)


@contextlib.contextmanager
def _staging_dir(final: Path):
    """A fresh folder next to ``final`` that replaces it on success; an existing folder is replaced only if it
    is a SavedModel (never a folder of other files), and only once the new one is complete."""
    if final.exists():
        if not final.is_dir():
            raise ExportError(f"{final} exists and is not a folder; a SavedModel is a folder")
        if any(final.iterdir()) and not (final / "saved_model.pb").exists():
            raise ExportError(f"{final} is a non-empty folder that is not a SavedModel; refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.rmdir(old)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data) -> None:
    from .weights import write_json_atomic

    write_json_atomic(path, json.loads(json.dumps(data, default=str)))


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
