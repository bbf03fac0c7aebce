"""The ``ferzoo serve`` application: TensorFlow Serving's REST predict API, a photo endpoint and a web page.

Routes (``create_app``):

``POST /v1/models/NAME[/versions/V]:predict``  TensorFlow Serving's REST predict request and response bodies
``GET  /v1/models/NAME[/versions/V]``          model status, as TensorFlow Serving answers it
``GET  /v1/models/NAME[/versions/V]/metadata`` signatures (and, under ``ferzoo``, class names and weights)
``GET  /v1/models``                            the served models (ferzoo's; TensorFlow Serving has none)
``POST /v1/photos``                            photos in (multipart files or one raw image body), the records of
                                               ``ferzoo predict`` out; ``?model=``, ``?explain=METHOD``,
                                               ``?annotate=1``, ``?detect=0``
``GET  /healthz``                              ``{"status": "ok", ...}``
``GET  /``                                     the web page (``static/``: plain HTML and JavaScript)

Every error is ``{"error": "..."}`` with a 4xx status naming the problem; the server answers the next request.
No route takes a file-system path: uploads are written to a temporary folder that is removed after the call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .batching import DynamicBatcher

log = logging.getLogger("ferzoo.serve")

#: the version every served model answers to (TensorFlow Serving numbers versions; ferzoo serves one)
VERSION = "1"
DEFAULT_SIGNATURE, BYTES_SIGNATURE = "serving_default", "serving_bytes"
PIXELS_INPUT, BYTES_INPUT = "images", "image_bytes"
#: image formats a ``{"b64": ...}`` value may hold (those TensorFlow's ``decode_image`` reads too)
B64_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
PHOTO_OPTIONS = ("model", "explain", "annotate", "detect")
#: the web page's files (served by name from this fixed table, never from a path in the request)
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}


class RequestError(Exception):
    """A bad request: ``status`` (4xx) and a message that names the problem."""

    def __init__(self, message: str, status: int = 400, extra: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.extra = message, status, extra or {}


class BodyTooLarge(Exception):
    pass


# -- the models ---------------------------------------------------------------------------------------------
@dataclass
class PhotoJob:
    files: list[tuple[str, bytes]]     # (name shown in the records, content)
    explain: str | None = None
    annotate: bool = False
    detect: bool = True


@dataclass
class ServedModel:
    """A loaded model and its two batchers (pixel batches; photos)."""

    name: str
    model: Any
    weights: str
    lock: threading.Lock
    max_batch: int = 32
    max_wait_s: float = 0.005
    detector: Any = None
    predictor: DynamicBatcher = field(init=False)
    photos: DynamicBatcher = field(init=False)

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.model.input_shape_hwc)
        self.class_names = list(self.model.class_names)
        self.predictor = DynamicBatcher(self._predict_batch, max_batch=self.max_batch, max_wait_s=self.max_wait_s,
                                        name=f"{self.name}-predict")
        self.photos = DynamicBatcher(self._photo_batch, max_batch=self.max_batch, max_wait_s=self.max_wait_s,
                                     name=f"{self.name}-photos")

    @property
    def explainers(self) -> list[str]:
        from ..explain import list_explainers

        try:
            return list_explainers(self.model.model_name)
        except Exception:  # noqa: BLE001 - a model whose plugin lists none
            return []

    def close(self) -> None:
        self.predictor.close()
        self.photos.close()

    # one forward pass for the pixel batches of several requests
    def _predict_batch(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = np.concatenate(batches) if len(batches) > 1 else batches[0]
        with self.lock:
            probs = np.asarray(self.model.predict_on_batch(x), np.float32)
        out, start = [], 0
        for b in batches:
            out.append(probs[start:start + len(b)])
            start += len(b)
        return out

    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """Decoded photos (any size, RGB) -> the model's input batch (``model.preprocess``, as the export graph)."""
        return np.asarray(self.model.preprocess(images), np.float32)

    # one ferzoo predict call for the photos of several requests
    def _photo_batch(self, jobs: Sequence[PhotoJob]) -> list[dict]:
        results: list[dict | None] = [None] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for j, job in enumerate(jobs):
            groups.setdefault((job.explain, job.annotate, job.detect), []).append(j)
        for (explain, annotate, detect), members in groups.items():
            for j, res in zip(members, self._photo_group([jobs[j] for j in members], explain, annotate, detect)):
                results[j] = res
        return results

    def _photo_group(self, jobs: list[PhotoJob], explain, annotate, detect) -> list[dict]:
        from ..predict import explain_files, predict_files

        tmp = Path(tempfile.mkdtemp(prefix="ferzoo-serve-"))
        try:
            paths, owner = [], {}
            for j, job in enumerate(jobs):
                for k, (name, data) in enumerate(job.files):
                    path = tmp / f"u{j}_{k}{_ending(name)}"
                    path.write_bytes(data)
                    paths.append(str(path))
                    owner[str(path)] = (j, k, name)
            notes: list[str] = []
            with self.lock:
                if explain:
                    records = explain_files(paths, model=self.model, output=tmp / "explain", methods=[explain],
                                            detect=detect, detector=self.detector, progress=False, say=notes.append)
                else:
                    records = predict_files(paths, model=self.model, detect=detect, detector=self.detector,
                                            annotate=tmp / "annotated" if annotate else None, progress=False,
                                            say=notes.append)
            out = [{"records": [], "annotated": [None] * len(job.files)} for job in jobs]
            for r in records:
                j, k, name = owner[r["file"]]
                r = dict(r, file=name, upload=k)
                if r.get("explanations"):
                    r["explanations"] = {m: _data_url(Path(p)) for m, p in r["explanations"].items()}
                out[j]["records"].append(r)
            if annotate:
                for path, (j, k, _) in owner.items():
                    picture = tmp / "annotated" / (Path(path).stem + ".png")
                    out[j]["annotated"][k] = _data_url(picture) if picture.exists() else None
            for o in out:
                if not annotate:
                    del o["annotated"]
            return out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _ending(name: str) -> str:
    from ..faces import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS else ".img"


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# -- TensorFlow Serving's request bodies -------------------------------------------------------------------
def decode_b64_image(value: Any, where: str) -> np.ndarray:
    """``{"b64": "..."}`` -> ``(H, W, 3)`` uint8 RGB pixels (gray repeated, alpha dropped: what the exported
    ``serving_bytes`` signature's ``tf.io.decode_image(channels=3)`` gives)."""
    from PIL import Image, UnidentifiedImageError

    text = value.get("b64")
    if not isinstance(text, str):
        raise RequestError(f"{where}: \"b64\" must be a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{where}: \"b64\" is not valid base64 ({exc})") from None
    if not data:
        raise RequestError(f"{where}: \"b64\" decodes to no bytes (an empty image)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in B64_FORMATS:
                raise RequestError(f"{where}: \"b64\" holds a {im.format} image; send {', '.join(B64_FORMATS)}")
            im.load()
            return np.asarray(im.convert("RGB"))
    except RequestError:
        raise
    except UnidentifiedImageError:
        raise RequestError(f"{where}: \"b64\" is not an image (not {', '.join(B64_FORMATS)})") from None
    except Image.DecompressionBombError as exc:
        raise RequestError(f"{where}: image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        text = str(exc) or type(exc).__name__
        kind = "truncated" if "truncat" in text.lower() else "unreadable"
        raise RequestError(f"{where}: the image is {kind} ({text})") from None


def _expected(served: ServedModel) -> str:
    h, w, c = served.input_shape
    return (f"model {served.name!r} takes float pixel values 0..255 of shape ({h}, {w}, {c}) per instance (other "
            f"sizes and 1, 3 or 4 channels are converted; signature {DEFAULT_SIGNATURE}, input {PIXELS_INPUT!r}), "
            f"or encoded images as {{\"b64\": \"...\"}} (signature {BYTES_SIGNATURE}, input {BYTES_INPUT!r})")


def parse_predict(body: bytes, served: ServedModel) -> tuple[str, str, list]:
    """``(format, signature, values)`` of a predict body: ``format`` ``"row"`` (``instances``) or ``"columnar"``
    (``inputs``); ``values``: one entry per instance (nested pixel lists or ``{"b64": ...}``)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object with \"instances\" (row format) or \"inputs\" "
                           "(columnar format)")
    unknown = sorted(set(data) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; a predict body has \"instances\" or \"inputs\" and "
                           f"optionally \"signature_name\"")
    if ("instances" in data) == ("inputs" in data):
        raise RequestError("give exactly one of \"instances\" (row format) and \"inputs\" (columnar format)")
    signature = data.get("signature_name")
    if signature is not None and signature not in (DEFAULT_SIGNATURE, BYTES_SIGNATURE):
        raise RequestError(f"signature_name {signature!r} not found; model {served.name!r} has "
                           f"{DEFAULT_SIGNATURE} and {BYTES_SIGNATURE}")
    names = (PIXELS_INPUT, BYTES_INPUT)
    if "instances" in data:
        fmt, values = "row", data["instances"]
        if not isinstance(values, list):
            raise RequestError("\"instances\" must be a list (one entry per image)")
        unwrapped = []
        for i, v in enumerate(values):
            if isinstance(v, dict) and "b64" not in v:
                if len(v) != 1 or next(iter(v)) not in names:
                    raise RequestError(f"instance {i}: a named instance has one input, {PIXELS_INPUT!r} or "
                                       f"{BYTES_INPUT!r}; got {sorted(v)}")
                v = next(iter(v.values()))
            unwrapped.append(v)
        values = unwrapped
    else:
        fmt, values = "columnar", data["inputs"]
        if isinstance(values, dict) and "b64" not in values:
            if len(values) != 1 or next(iter(values)) not in names:
                raise RequestError(f"\"inputs\" names one input, {PIXELS_INPUT!r} or {BYTES_INPUT!r}; "
                                   f"got {sorted(values)}")
            values = next(iter(values.values()))
        if isinstance(values, dict):  # one b64 image as the whole input
            values = [values]
        if not isinstance(values, list):
            raise RequestError("\"inputs\" must be a list of images (batch first)")
    if not values:
        raise RequestError("no instances: the request holds no image")
    b64 = [isinstance(v, dict) for v in values]
    if any(b64) and not all(b64):
        raise RequestError("instances mix {\"b64\": ...} images with pixel lists; send one kind per request")
    kind = BYTES_SIGNATURE if all(b64) else DEFAULT_SIGNATURE
    if signature is not None and signature != kind:
        what = "{\"b64\": ...} images" if kind == BYTES_SIGNATURE else "pixel lists"
        raise RequestError(f"signature_name {signature!r} does not take {what}; {_expected(served)}")
    return fmt, kind, values


def pixels_batch(values: list, served: ServedModel) -> np.ndarray:
    """Nested pixel lists -> the model's ``(B, H, W, C)`` float32 input: ``(h, w, c)`` instances of any size with
    1, 3 or 4 channels are converted as the exported ``serving_default`` converts them (``model.preprocess``)."""
    try:
        arr = np.array(values)
    except (ValueError, TypeError) as exc:
        raise RequestError(f"wrong shape: the instances are not nested lists of one shape ({exc}); "
                           f"{_expected(served)}") from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings", "S": "strings", "O": "mixed or null values"}.get(arr.dtype.kind,
                                                                                              arr.dtype.name)
        raise RequestError(f"wrong dtype: the instances hold {what}, not numbers; {_expected(served)}")
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        raise RequestError(f"wrong shape: the instances have shape {tuple(arr.shape[1:])} each (batch of "
                           f"{arr.shape[0] if arr.ndim else 0}); {_expected(served)}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise RequestError("wrong values: the instances hold values that are not finite numbers")
    return arr if tuple(arr.shape[1:]) == served.input_shape else served.preprocess(arr)


def tf_serving_status(served: ServedModel) -> dict:
    return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def _tensor_info(name: str, dtype: str, dims: list[int], signature: str) -> dict:
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                                             "unknown_rank": False},
            "name": f"{signature}_{name}:0"}


def tf_serving_metadata(served: ServedModel) -> dict:
    h, w, c = served.input_shape
    k = len(served.class_names)
    out = {"probabilities": _tensor_info("probabilities", "DT_FLOAT", [-1, k], "StatefulPartitionedCall")}
    sigs = {
        DEFAULT_SIGNATURE: {"inputs": {PIXELS_INPUT: _tensor_info(PIXELS_INPUT, "DT_FLOAT", [-1, -1, -1, -1],
                                                                  DEFAULT_SIGNATURE)},
                            "outputs": out, "method_name": "tensorflow/serving/predict"},
        BYTES_SIGNATURE: {"inputs": {BYTES_INPUT: _tensor_info(BYTES_INPUT, "DT_STRING", [-1], BYTES_SIGNATURE)},
                          "outputs": out, "method_name": "tensorflow/serving/predict"},
    }
    return {"model_spec": {"name": served.name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": {"signature_def": sigs},
                         "ferzoo": {"model": served.model.model_name, "weights": served.weights,
                                    "class_names": served.class_names, "input_shape": [h, w, c],
                                    "tta": served.model.tta or "none", "explainers": served.explainers}}}


# -- the ASGI application -----------------------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 before it is read whole (a
    ``Content-Length`` over the limit is refused at once; a chunked body as soon as it passes it)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                return await _send_json(send, 400, {"error": "Content-Length is not a number"})
            if too_big:
                return await _send_json(send, 413, {"error": self._message(int(length))})
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self._message(None))
            return message

        await self.app(scope, limited, send)

    def _message(self, length: int | None) -> str:
        mb = self.limit / 2 ** 20
        size = f" ({length / 2 ** 20:.1f} MB)" if length is not None else ""
        return f"request body too large{size}: the limit is {mb:g} MB (ferzoo serve --max-body-mb)"


async def _send_json(send, status: int, data: dict) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(models: Sequence[ServedModel], *, max_body_mb: float = 20.0):
    """The ASGI application serving ``models`` (the first is the default of ``/v1/photos``)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    if not models:
        raise ValueError("serve at least one model")
    handlers = _Handlers(models)
    routes = [
        Route("/", handlers.page, methods=["GET"]),
        Route("/static/{name}", handlers.page, methods=["GET"]),
        Route("/healthz", handlers.healthz, methods=["GET"]),
        Route("/v1/models", handlers.list_models, methods=["GET"]),
        Route("/v1/models/{rest:path}", handlers.models_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/v1/photos", handlers.photos, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={RequestError: _on_request_error, BodyTooLarge: _on_too_large,
                                                       HTTPException: _on_http, Exception: _on_internal})
    app.state.models = list(models)
    return BodyLimit(app, int(max_body_mb * 2 ** 20))


def _error(message: str, status: int = 400, **extra):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message, **extra}, status_code=status)


async def _on_request_error(request, exc: RequestError):
    return _error(exc.message, exc.status, **exc.extra)


async def _on_too_large(request, exc: BodyTooLarge):
    response = _error(str(exc), 413)
    response.headers["connection"] = "close"  # the rest of the body is not read
    return response


async def _on_internal(request, exc: Exception):
    log.exception("request failed", exc_info=exc)
    return _error(f"internal error: {type(exc).__name__}: {exc}", 500)


async def _on_http(request, exc):
    if exc.status_code == 405:
        return _error(f"method {request.method} not allowed on {request.url.path}", 405)
    if exc.status_code == 404:
        return _error(f"no such endpoint: {request.url.path}", 404)
    return _error(str(exc.detail), exc.status_code)


#: ``/v1/models/`` + NAME, an optional ``/versions/V``, then ``:predict``, ``/metadata`` or nothing (the status)
_MODEL_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<tail>:predict|/metadata)?$")


class _Handlers:
    """The routes' handlers over the served models (the first is the default of ``/v1/photos``)."""

    def __init__(self, models: Sequence[ServedModel]):
        self.models = list(models)
        self.by_name = {m.name: m for m in models}
        self.default = self.models[0]
        self.static = {p.name: p.read_bytes() for p in resources.files(__package__).joinpath("static").iterdir()
                       if p.is_file() and Path(p.name).suffix in STATIC_TYPES}

    def model_named(self, name: str, version: str | None) -> ServedModel:
        served = self.by_name.get(name)
        if served is None:
            raise RequestError(f"unknown model {name!r}; served: {', '.join(self.by_name)}", 404)
        if version is not None and version != VERSION:
            raise RequestError(f"model {name!r} has no version {version!r}; served: {VERSION}", 404)
        return served

    async def models_route(self, request):
        """TensorFlow Serving's status, metadata and predict routes."""
        from starlette.responses import JSONResponse

        rest = request.path_params["rest"]
        match = _MODEL_PATH.match(rest)
        if not match:
            if re.search(r":(classify|regress)$", rest):
                raise RequestError("ferzoo serve answers :predict (TensorFlow Serving's classify and regress "
                                   "APIs take tf.Example protos, which these models do not)", 404)
            raise RequestError(f"no such endpoint: {request.url.path}; use /v1/models/NAME[/versions/V]"
                               f"[:predict|/metadata]", 404)
        tail, method = match["tail"], request.method
        wanted = "POST" if tail == ":predict" else "GET"
        if method != wanted:
            raise RequestError(f"method {method} not allowed on {request.url.path}; use {wanted}", 405)
        served = self.model_named(match["name"], match["version"])
        if tail == "/metadata":
            return JSONResponse(tf_serving_metadata(served))
        if tail is None:
            return JSONResponse(tf_serving_status(served))
        fmt, kind, values = parse_predict(await request.body(), served)
        if kind == BYTES_SIGNATURE:
            def decode():
                return served.preprocess([decode_b64_image(v, f"instance {i}") for i, v in enumerate(values)])

            from starlette.concurrency import run_in_threadpool

            batch = await run_in_threadpool(decode)
        else:
            batch = pixels_batch(values, served)
        probs = await asyncio.wrap_future(served.predictor.submit(batch, rows=len(batch)))
        key = "predictions" if fmt == "row" else "outputs"
        return JSONResponse({key: probs.tolist()})

    async def list_models(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"models": [{"name": m.name, "model": m.model.model_name, "weights": m.weights,
                                         "version": VERSION, "class_names": m.class_names,
                                         "input_shape": list(m.input_shape), "explainers": m.explainers,
                                         "default": m is self.default} for m in self.models]})

    async def photos(self, request):
        """``POST /v1/photos``: the options checked, the uploads read, the photo path run in the model's batcher."""
        from starlette.responses import JSONResponse

        from ..predict import failed

        served, explain, annotate, detect = self._photo_options(request.query_params)
        files = await _uploads(request)
        result = await asyncio.wrap_future(served.photos.submit(
            PhotoJob(files, explain=explain, annotate=annotate, detect=detect), rows=len(files)))
        head = {"model": served.name, "weights": served.weights, "class_names": served.class_names}
        records = result["records"]
        if len(files) == 1 and records and all(failed(r["status"]) for r in records):
            raise RequestError(f"{files[0][0]}: {records[0]['status']}", 400, {**head, **result})
        return JSONResponse({**head, **result})

    def _photo_options(self, q) -> tuple[ServedModel, str | None, bool, bool]:
        unknown = sorted(set(q) - set(PHOTO_OPTIONS))
        if unknown:
            raise RequestError(f"unknown option {unknown[0]!r}; /v1/photos takes {', '.join(PHOTO_OPTIONS)}")
        served = self.model_named(q["model"], None) if q.get("model") else self.default
        explain = q.get("explain") or None
        if explain is not None and explain not in served.explainers:
            raise RequestError(f"explain: unknown method {explain!r}; model {served.name!r} has "
                               f"{', '.join(served.explainers)}")
        return served, explain, _flag(q, "annotate", False), _flag(q, "detect", True)

    async def healthz(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", "models": list(self.by_name),
                             "batches": {m.name: {"predict": dict(m.predictor.stats), "photos": dict(m.photos.stats)}
                                         for m in self.models}})

    async def page(self, request):
        from starlette.responses import Response

        name = request.path_params.get("name", "index.html")
        if name not in self.static:
            raise RequestError(f"no such file: {name}", 404)
        return Response(self.static[name], media_type=STATIC_TYPES[Path(name).suffix],
                        headers={"cache-control": "no-cache"})


async def _uploads(request) -> list[tuple[str, bytes]]:
    """The photos of a ``/v1/photos`` request as (name, bytes): multipart files, or one raw image body."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/json", "application/x-www-form-urlencoded", "text/")):
        raise RequestError(f"content type {ctype.split(';')[0]!r}: send multipart/form-data with files, or "
                           f"an image as the raw body (image/jpeg, image/png, application/octet-stream)", 415)
    if not ctype.startswith("multipart/form-data"):
        data = await request.body()
        if not data:
            raise RequestError("empty upload: the body holds no image")
        return [("upload", data)]
    try:
        form = await request.form(max_files=256, max_fields=64)
    except BodyTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart's parse errors
        raise RequestError(f"malformed multipart body: {exc}") from None
    files = []
    try:
        for _, value in form.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                name = Path(value.filename or "upload").name or "upload"
                if not data:
                    raise RequestError(f"empty upload: file {name!r} has no bytes")
                files.append((name, data))
    finally:
        await form.close()
    if not files:
        raise RequestError("no file in the upload: send multipart/form-data with one or more files, "
                           "or one image as the raw body")
    return files


def _flag(query, name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return default
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise RequestError(f"{name}: expected 1 or 0 (true / false), got {value!r}")
