"""``ferzoo serve`` as a client sees it: one real server process on 127.0.0.1 for the module, a real HTTP client
(httpx); TensorFlow Serving's REST bodies, the photo endpoint, bad requests, a bounded load test, and the
TensorFlow Serving export called with the same bodies."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serve_fixtures import free_port, running_server  # noqa: E402

from ferzoo.weights import DEFAULT_MODEL as MODEL  # noqa: E402  (what `ferzoo serve` serves with no --model)
from ferzoo.weights import DEFAULT_WEIGHTS as WEIGHTS  # noqa: E402

MAX_BODY_MB = 1


@pytest.fixture(scope="module")
def server():
    with running_server("--max-body-mb", str(MAX_BODY_MB), "--max-batch", "16") as (base, proc):
        yield base, proc


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def keras_model():
    import ferzoo

    return ferzoo.load(MODEL, weights=WEIGHTS)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _pixels(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 1)).astype(np.float32)


def _demo_bytes() -> bytes:
    import ferzoo

    return ferzoo.demo_image(path_only=True).read_bytes()


def _assert_healthy(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# -- the photo endpoint ---------------------------------------------------------------------------------------
def test_photo_endpoint_finds_the_demo_face_and_calls_it_happy(client):
    r = client.post("/v1/photos", files=[("photos", ("astronaut.png", _demo_bytes(), "image/png"))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL and body["class_names"][3] == "happy"
    (rec,) = body["records"]
    assert rec["file"] == "astronaut.png" and rec["status"] == "ok" and rec["class"] == "happy"
    assert set(rec["probabilities"]) == set(body["class_names"])
    assert abs(sum(rec["probabilities"].values()) - 1) < 1e-3
    x, y, w, h = rec["box"]
    assert w > 40 and h > 40  # the face, not the whole 128 px picture's corner


def test_photo_endpoint_gives_the_records_of_ferzoo_predict(client, keras_model):
    import ferzoo

    local = ferzoo.predict_files(ferzoo.demo_image(path_only=True), model=keras_model, progress=False,
                                 say=lambda s: None)
    r = client.post("/v1/photos", content=_demo_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    (rec,) = r.json()["records"]
    (want,) = local
    assert set(rec) - {"upload"} == set(want)
    assert rec["box"] == want["box"] and rec["class"] == want["class"] and rec["face"] == want["face"]
    for name, p in want["probabilities"].items():
        assert rec["probabilities"][name] == pytest.approx(p, abs=1e-4)


def test_photo_endpoint_several_files_annotate_and_explain(client):
    blank = np.full((64, 64, 3), 128, np.uint8)
    r = client.post("/v1/photos?annotate=1", files=[("a", ("face.png", _demo_bytes(), "image/png")),
                                                    ("b", ("blank.png", _png(blank), "image/png"))])
    assert r.status_code == 200, r.text
    body = r.json()
    by_file = {rec["file"]: rec for rec in body["records"]}
    assert by_file["face.png"]["class"] == "happy" and by_file["blank.png"]["status"].startswith("no face")
    assert len(body["annotated"]) == 2 and body["annotated"][0].startswith("data:image/png;base64,")
    r = client.post("/v1/photos?explain=saliency", content=_demo_bytes())
    assert r.status_code == 200, r.text
    (rec,) = r.json()["records"]
    picture = base64.b64decode(rec["explanations"]["saliency"].split(",", 1)[1])
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 1000


# -- TensorFlow Serving's REST API ------------------------------------------------------------------------------
def test_status_and_metadata_as_tf_serving_answers(client):
    r = client.get(f"/v1/models/{MODEL}")
    assert r.status_code == 200
    (status,) = r.json()["model_version_status"]
    assert status["state"] == "AVAILABLE" and status["version"] == "1" and status["status"]["error_code"] == "OK"
    assert client.get(f"/v1/models/{MODEL}/versions/1").status_code == 200
    meta = client.get(f"/v1/models/{MODEL}/metadata").json()
    assert meta["model_spec"]["name"] == MODEL
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    dims = [int(d["size"]) for d in sigs["serving_default"]["inputs"]["images"]["tensor_shape"]["dim"]]
    assert dims == [-1, -1, -1, -1]  # any size and 1, 3 or 4 channels, converted
    assert meta["metadata"]["ferzoo"]["input_shape"] == [48, 48, 1]
    assert sigs["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert meta["metadata"]["ferzoo"]["class_names"][3] == "happy"


def test_predict_row_and_columnar_equal_model_predict(client, keras_model):
    x = _pixels()
    want = keras_model.predict(x, verbose=0)
    r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), want, atol=1e-5)
    r = client.post(f"/v1/models/{MODEL}/versions/1:predict",
                    json={"signature_name": "serving_default", "inputs": {"images": x.tolist()}})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"]), want, atol=1e-5)
    r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"images": v} for v in x.tolist()]})
    np.testing.assert_allclose(np.array(r.json()["predictions"]), want, atol=1e-5)
    for shape in ((2, 64, 60, 3), (2, 30, 40, 4), (1, 48, 48, 3)):  # other sizes and channels: converted
        y = np.random.default_rng(len(shape)).integers(0, 256, shape).astype(np.float32)
        r = client.post(PREDICT, json={"instances": y.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["predictions"]),
                                   keras_model.predict(keras_model.preprocess(y), verbose=0), atol=1e-5)


def _encoded_images():
    import ferzoo

    demo = ferzoo.demo_image()
    rgba = np.dstack([demo[:96, :80], np.full((96, 80), 200, np.uint8)])
    gray = demo[10:90, 20:100].mean(-1).astype(np.uint8)
    return [_png(demo), _jpeg(demo), _png(rgba), _png(gray)]


def _decoded_rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_predict_b64_images_equal_model_predict(client, keras_model):
    images = _encoded_images()
    want = keras_model.predict(keras_model.preprocess([_decoded_rgb(d) for d in images]), verbose=0)
    r = client.post(f"/v1/models/{MODEL}:predict",
                    json={"signature_name": "serving_bytes", "instances": [_b64(d) for d in images]})
    assert r.status_code == 200, r.text
    got = np.array(r.json()["predictions"])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[0].argmax() == 3  # the demo face: happy
    r = client.post(f"/v1/models/{MODEL}:predict", json={"inputs": {"image_bytes": [_b64(images[0])]}})
    np.testing.assert_allclose(np.array(r.json()["outputs"]), want[:1], atol=1e-5)


# -- bad requests -----------------------------------------------------------------------------------------------
def _truncated_jpeg() -> bytes:
    import ferzoo

    data = _jpeg(ferzoo.demo_image())
    return data[: len(data) // 2]


PREDICT = f"/v1/models/{MODEL}:predict"
BAD = [
    ("malformed json", "POST", PREDICT, {"content": b'{"instances": [1, 2'}, 400, "malformed JSON"),
    ("not an object", "POST", PREDICT, {"json": [1, 2]}, 400, "JSON object"),
    ("no instances", "POST", PREDICT, {"json": {"signature_name": "serving_default"}}, 400, "instances"),
    ("empty instances", "POST", PREDICT, {"json": {"instances": []}}, 400, "no image"),
    ("wrong channels", "POST", PREDICT, {"json": {"instances": np.zeros((2, 10, 10, 2)).tolist()}}, 400,
     "(48, 48, 1)"),
    ("wrong rank", "POST", PREDICT, {"json": {"instances": np.zeros((2, 48, 48)).tolist()}}, 400, "wrong shape"),
    ("ragged", "POST", PREDICT, {"json": {"instances": [[[[1]] * 48] * 48, [[1]]]}}, 400, "wrong shape"),
    ("wrong dtype", "POST", PREDICT, {"json": {"instances": [[[["a"]] * 48] * 48]}}, 400, "wrong dtype"),
    ("unknown signature", "POST", PREDICT, {"json": {"signature_name": "x", "instances": [[1]]}}, 400,
     "signature_name 'x'"),
    ("b64 not base64", "POST", PREDICT, {"json": {"instances": [{"b64": "%%%"}]}}, 400, "not valid base64"),
    ("b64 not an image", "POST", PREDICT, {"json": {"instances": [_b64(b"hello, not a picture")]}}, 400,
     "not an image"),
    ("b64 truncated jpeg", "POST", PREDICT, {"json": {"instances": [_b64(_truncated_jpeg())]}}, 400, "truncated"),
    ("mixed kinds", "POST", PREDICT, {"json": {"instances": [_b64(b"x"), [[1]]]}}, 400, "mix"),
    ("unknown model", "POST", "/v1/models/nope:predict", {"json": {"instances": [[1]]}}, 404, "unknown model"),
    ("unknown version", "POST", f"/v1/models/{MODEL}/versions/7:predict", {"json": {"instances": [[1]]}}, 404,
     "no version '7'"),
    ("unknown model status", "GET", "/v1/models/nope", {}, 404, "unknown model"),
    ("predict with GET", "GET", PREDICT, {}, 405, "use POST"),
    ("status with POST", "POST", f"/v1/models/{MODEL}", {"json": {}}, 405, "use GET"),
    ("healthz with POST", "POST", "/healthz", {}, 405, "not allowed"),
    ("photos with GET", "GET", "/v1/photos", {}, 405, "not allowed"),
    ("no such endpoint", "GET", "/v2/nothing", {}, 404, "no such endpoint"),
    ("empty raw upload", "POST", "/v1/photos", {"content": b"", "headers": {"content-type": "image/jpeg"}}, 400,
     "empty upload"),
    ("empty file upload", "POST", "/v1/photos", {"files": [("f", ("a.jpg", b"", "image/jpeg"))]}, 400,
     "empty upload"),
    ("multipart without file", "POST", "/v1/photos",
     {"content": b'--XX\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--XX--\r\n',
      "headers": {"content-type": "multipart/form-data; boundary=XX"}}, 400, "no file in the upload"),
    ("upload not an image", "POST", "/v1/photos", {"files": [("f", ("a.jpg", b"GIF89a nonsense", "image/jpeg"))]},
     400, "a.jpg:"),
    ("truncated jpeg upload", "POST", "/v1/photos", {"files": [("f", ("t.jpg", _truncated_jpeg(), "image/jpeg"))]},
     400, "truncated"),
    ("json to photos", "POST", "/v1/photos", {"json": {"instances": []}}, 415, "content type"),
    ("unknown explain method", "POST", "/v1/photos?explain=astrology", {"content": b"x"}, 400, "astrology"),
    ("unknown photo option", "POST", "/v1/photos?path=/etc/passwd", {"content": b"x"}, 400, "unknown option 'path'"),
    ("photo unknown model", "POST", "/v1/photos?model=nope", {"content": b"x"}, 404, "unknown model"),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,text", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(client, name, method, path, kwargs, status, text):
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert text in r.json()["error"], r.json()


def test_a_body_over_the_limit_is_refused_before_it_is_read(server, client):
    """A Content-Length over the limit is answered 413 at once: the client has sent none of the body."""
    port = int(server[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /v1/photos HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  f"Content-Length: {200 * 2 ** 20}\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "the limit is 1 MB" in reply
    # a chunked body (no length given) is cut off as soon as it passes the limit
    sent = {"n": 0}

    def chunks():
        for _ in range(64):  # 64 MB offered; the server stops reading after about 1 MB
            sent["n"] += 1
            yield b"\0" * 2 ** 20

    try:
        r = client.post("/v1/photos", content=chunks(), headers={"content-type": "image/jpeg"})
        assert r.status_code == 413 and "too large" in r.json()["error"]
    except httpx.TransportError:  # the server may close the connection while the client still writes
        pass
    assert sent["n"] < 64
    _assert_healthy(client)


def test_server_stays_up_after_bad_requests_and_answers_under_load(client, keras_model):
    """16 clients x 10 requests at once: all answered, none lost, right answers; batches were shared."""
    _assert_healthy(client)
    x = _pixels(16, seed=3)
    want = keras_model.predict(x, verbose=0)
    results, errors = {}, []

    def worker(i):
        with httpx.Client(base_url=str(client.base_url), timeout=120) as c:
            for j in range(10):
                try:
                    r = c.post(PREDICT, json={"instances": x[i:i + 1].tolist()})
                    results[(i, j)] = (r.status_code, r.json().get("predictions"))
                except Exception as exc:  # noqa: BLE001 - counted below
                    errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors and len(results) == 160
    for (i, _), (status, preds) in results.items():
        assert status == 200
        np.testing.assert_allclose(np.array(preds)[0], want[i], atol=1e-5)
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["batches"][MODEL]["predict"]["largest_batch"] > 1  # concurrent requests shared a pass
    assert client.post("/v1/photos", content=_demo_bytes()).json()["records"][0]["class"] == "happy"


# -- the TensorFlow Serving export, called with the same bodies -----------------------------------------------
def test_export_for_tf_serving_answers_the_server_requests_alike(client, keras_model, tmp_path, capsys):
    import tensorflow as tf

    from ferzoo.cli import main
    from ferzoo.export import export

    out = tmp_path / "models"
    assert main(["export", MODEL, "--weights", WEIGHTS, "--format", "savedmodel", "--output", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    version = out / MODEL / "1"
    assert report["output"] == str(version) and (version / "saved_model.pb").exists()
    assert report["serving_command"] == (f"tensorflow_model_server --rest_api_port=8501 --model_name={MODEL} "
                                         f"--model_base_path={(out / MODEL).resolve()}")
    assert report["tta"].startswith(keras_model.tta or "none") and report["parity"]["max_abs_diff"] < 1e-4
    # a second export is version 2; version 1 is left as it was
    stamp = (version / "saved_model.pb").stat().st_mtime_ns
    again = export(MODEL, weights=WEIGHTS, format="savedmodel", output=out, layout="serving", tta="none",
                   check=False)
    assert again["output"] == str(out / MODEL / "2") and again["tta"] == "none"
    assert (version / "saved_model.pb").stat().st_mtime_ns == stamp

    sigs = tf.saved_model.load(str(version)).signatures
    x = _pixels()
    body = {"instances": x.tolist()}
    served = np.array(client.post(PREDICT, json=body).json()["predictions"])
    exported = sigs["serving_default"](images=tf.constant(np.array(body["instances"], np.float32)))
    np.testing.assert_allclose(exported["probabilities"].numpy(), served, atol=1e-4)
    rgb = np.random.default_rng(7).integers(0, 256, (2, 64, 60, 3))  # any size and channels, converted alike
    served = np.array(client.post(PREDICT, json={"instances": rgb.tolist()}).json()["predictions"])
    for name, dtype in (("serving_default", np.float32), ("serving_uint8", np.uint8)):
        exported = sigs[name](images=tf.constant(rgb.astype(dtype)))["probabilities"].numpy()
        np.testing.assert_allclose(exported, served, atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"takes \(batch, 48, 48, 1\)"):
        sigs["serving_default"](images=tf.zeros((1, 8, 8, 2)))

    images = _encoded_images()
    body = {"signature_name": "serving_bytes", "instances": [_b64(d) for d in images]}
    served = np.array(client.post(PREDICT, json=body).json()["predictions"])
    decoded = [base64.b64decode(v["b64"]) for v in body["instances"]]
    exported = sigs["serving_bytes"](image_bytes=tf.constant(decoded))["probabilities"].numpy()
    np.testing.assert_allclose(exported, served, atol=2e-3)  # JPEG: TensorFlow's and Pillow's decoders
    np.testing.assert_allclose(exported[[0, 2, 3]], served[[0, 2, 3]], atol=1e-4)  # PNG: the same pixels
    assert (exported.argmax(-1) == served.argmax(-1)).all()


# -- several models in one application --------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_several_models_each_answer_for_itself_and_the_first_is_the_default():
    """The application alone (starlette's test client, no socket): two models, each its own answers."""
    import threading

    from starlette.testclient import TestClient

    import ferzoo
    from ferzoo.serve.app import ServedModel, create_app

    lock = threading.Lock()
    first = ServedModel("first", ferzoo.build("deep_emotion", input_shape=(48, 48, 1)), "untrained", lock)
    second = ServedModel("second", ferzoo.build("daf_cnn_compact", num_classes=3, input_shape=(32, 32, 3),
                                                class_names=["x", "y", "z"]), "untrained", lock)
    try:
        with TestClient(create_app([first, second])) as c:
            listed = c.get("/v1/models").json()["models"]
            assert [(m["name"], m["default"]) for m in listed] == [("first", True), ("second", False)]
            x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
            r = c.post("/v1/models/second:predict", json={"instances": x.tolist()})
            np.testing.assert_allclose(r.json()["predictions"], second.model.predict(x, verbose=0), atol=1e-5)
            r = c.post("/v1/models/first:predict", json={"instances": x.tolist()})  # converted to 48x48 gray
            want = first.model.predict(first.model.preprocess(x), verbose=0)
            assert want.shape == (2, 7)
            np.testing.assert_allclose(r.json()["predictions"], want, atol=1e-5)
            assert c.get("/v1/models/second/metadata").json()["metadata"]["ferzoo"]["class_names"] == ["x", "y", "z"]
            photo = {"content": _demo_bytes(), "headers": {"content-type": "image/png"}}
            assert set(c.post("/v1/photos", **photo).json()["records"][0]["probabilities"]) == set(first.class_names)
            assert set(c.post("/v1/photos?model=second", **photo).json()["records"][0]["probabilities"]) == {"x", "y", "z"}
    finally:
        first.close()
        second.close()


# -- the command line -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,text", [
    (["--port", "70000"], "--port"),
    (["--max-batch", "0"], "--max-batch"),
    (["--max-body-mb", "0"], "--max-body-mb"),
    (["--tta", "twelve"], "--tta"),
    (["--model", "nope"], "--model"),
    (["--model", "deep_emotion"], "needs weights"),
    (["--model", "deep_emotion", "--weights", "nope"], "--weights"),
    (["--model", "deep_emotion", "--weights", "a", "--weights", "b"], "--weights: given 2 times"),
    (["--host", "no-such-host.invalid"], "--host"),
])
def test_serve_usage_errors_exit_2_before_any_model_loads(argv, text, capsys):
    from ferzoo.cli import main

    try:
        code = main(["serve", *argv])
    except SystemExit as exc:  # argparse's own errors (types, choices)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1, err


def test_serve_refuses_a_busy_port_and_warns_for_every_interface(monkeypatch, capsys):
    import ferzoo.serve as S
    from ferzoo.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"--port {port}" in capsys.readouterr().err

    def no_models(*a, **k):
        raise ValueError("stop here")

    monkeypatch.setattr(S, "load_models", no_models)
    said = []
    with pytest.raises(ValueError, match="stop here"):
        S.serve(host="0.0.0.0", port=free_port(), say=said.append)
    assert any("warning: --host 0.0.0.0" in line for line in said)
    said.clear()
    with pytest.raises(ValueError, match="stop here"):
        S.serve(host="127.0.0.1", port=free_port(), say=said.append)
    assert not said


@pytest.mark.parametrize("tta", ["card", "none", "flip", "tencrop"])
def test_serve_tta_sets_each_served_models_test_time_augmentation(tta, keras_model):
    """``--tta card`` keeps the card's; the others apply to every model, and a change from the card's is
    printed."""
    import ferzoo.serve as S

    card_tta = keras_model.tta
    expected = card_tta if tta == "card" else (None if tta == "none" else tta)
    said = []
    served = S.load_models([(None, None)], tta=tta, warm_up=False, say=said.append)
    try:
        assert served[0].model.tta == expected
        assert any(f"--tta {tta} (the card's is {card_tta or 'none'})" in line for line in said) == \
            (expected != card_tta)
    finally:
        for s in served:
            s.close()


@pytest.mark.parametrize("min_confidence, kept", [(None, 0.9), (0.5, 0.5)])
def test_serve_min_confidence_reaches_the_photo_endpoints_detector(min_confidence, kept):
    import ferzoo.serve as S
    from ferzoo.faces import DEFAULT_MIN_CONFIDENCE

    assert DEFAULT_MIN_CONFIDENCE == 0.9
    served = S.load_models([(None, None)], min_confidence=min_confidence, warm_up=False, say=lambda _l: None)
    try:
        assert served[0].detector.min_confidence == kept
    finally:
        for s in served:
            s.close()
