"""Downloads of registered weights from a real HTTP server on 127.0.0.1 that the tests start and stop.

The server serves one weights file in several ways (good, connection dropped mid-file, wrong bytes,
stalled, 404) and counts requests. After every failure the cache must hold no copy that a later call trusts.
"""

import http.server
import threading
import time

import numpy as np
import pytest

import ferzoo
from ferzoo import hookimpl
from ferzoo import weights as W


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server naming
        srv = self.server
        srv.hits.append(self.path)
        mode = self.path.strip("/").split("/")[0]
        body = srv.payload
        if mode == "missing":
            self.send_error(404, "no such file")
            return
        if mode == "wrong":
            body = bytes(b ^ 0x5A for b in body)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":  # half the promised bytes, then the connection goes away
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "stall":
            self.wfile.write(body[:100])
            self.wfile.flush()
            time.sleep(3)
            return
        self.wfile.write(body)


class _Server:
    def __init__(self, payload: bytes):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.payload = payload
        self.httpd.hits = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def hits(self):
        return self.httpd.hits

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/toy_demo.weights.h5"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _UrlPlugin:
    def __init__(self, card):
        self.card = card

    @hookimpl
    def register_weights(self, register):
        register("toy", "web", self.card)


@pytest.fixture
def published(tmp_path, registry):
    """A toy weights file, its reference predictions and a running server; stops the server afterwards."""
    import keras

    keras.utils.set_random_seed(0)
    model = ferzoo.build("toy", num_classes=7)
    path = W.save(model, tmp_path / "pub" / "toy_demo.weights.h5", dataset="synthetic", command="pytest",
                  metrics={"split": "val", "accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.5})
    server = _Server(path.read_bytes())
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1)).astype(np.float32)

    def register(mode: str):
        card = W.registry_card(path, sources=[{"url": server.url(mode)}], license="test", dataset_terms="test")
        registry.register(_UrlPlugin(card), name="web_weights")
        return card

    yield {"server": server, "register": register, "x": x, "expected": model.predict(x, verbose=0), "path": path}
    server.stop()


def _cache_files():
    root = W.home() / "cache"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_good_download_is_cached_and_reused_when_the_server_is_down(published):
    server = published["server"]
    card = published["register"]("good")
    model = ferzoo.load("toy", weights="web")
    np.testing.assert_allclose(model.predict(published["x"], verbose=0), published["expected"], atol=1e-6)
    assert _cache_files() == ["toy/web/toy_demo.json", "toy/web/toy_demo.weights.h5"]
    cached = W.cache_dir("toy", "web") / "toy_demo.weights.h5"
    assert W.sha256_of(cached) == card["sha256"]
    assert len(server.hits) == 1
    assert W.availability("toy", "web", W.entries("toy")[("toy", "web")]) == "cached"

    server.stop()  # server down, cached copy: no network needed
    again = ferzoo.load("toy", weights="web")
    np.testing.assert_allclose(again.predict(published["x"], verbose=0), published["expected"], atol=1e-6)
    assert len(server.hits) == 1


def test_connection_dropped_mid_file_leaves_nothing(published):
    published["register"]("drop")
    with pytest.raises(W.WeightsError) as err:
        ferzoo.load("toy", weights="web")
    msg = str(err.value)
    assert "model 'toy', weights 'web'" in msg and "failed after 3 attempt(s)" in msg
    assert "dropped" in msg and "known tags: ['web']" in msg
    assert len(published["server"].hits) == 3  # retried
    assert _cache_files() == []  # no partial file, no card


def test_wrong_bytes_are_not_kept(published):
    published["register"]("wrong")
    with pytest.raises(W.WeightsError, match="sha256 mismatch for the download of http://127.0.0.1"):
        ferzoo.load("toy", weights="web")
    assert len(published["server"].hits) == 1  # deterministic corruption: no retry
    assert _cache_files() == []


def test_http_error_is_named(published):
    published["register"]("missing")
    with pytest.raises(W.WeightsError, match="HTTP 404"):
        ferzoo.load("toy", weights="web")
    assert _cache_files() == []


def test_stalled_server_times_out(published, tmp_path):
    target = tmp_path / "dl" / "toy_demo.weights.h5"
    start = time.monotonic()
    with pytest.raises(W.WeightsError, match="timed out"):
        W.download(published["server"].url("stall"), target, sha256="0" * 64, timeout=0.5, retries=0)
    assert time.monotonic() - start < 3
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_server_down_without_cache(published):
    published["register"]("good")
    published["server"].stop()
    with pytest.raises(W.WeightsError) as err:
        ferzoo.load("toy", weights="web")
    assert "download of http://127.0.0.1" in str(err.value) and "Connection" in str(err.value)
    assert _cache_files() == []


def test_corrupt_cached_copy_is_dropped_and_replaced(published):
    server = published["server"]
    published["register"]("good")
    ferzoo.load("toy", weights="web")
    cached = W.cache_dir("toy", "web") / "toy_demo.weights.h5"
    cached.write_bytes(cached.read_bytes()[:-1] + b"X")  # bit rot / a tampered cache

    # offline: the bad copy is neither used nor kept
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERZOO_OFFLINE", "1")
        with pytest.raises(W.WeightsError) as err:
            ferzoo.load("toy", weights="web")
    assert "failed its sha256 check" in str(err.value) and "FERZOO_OFFLINE" in str(err.value)
    assert not cached.exists()

    # online again: downloaded afresh and verified
    model = ferzoo.load("toy", weights="web")
    np.testing.assert_allclose(model.predict(published["x"], verbose=0), published["expected"], atol=1e-6)
    assert W.sha256_of(cached) == W.sha256_of(published["path"]) and len(server.hits) == 2


def test_offline_with_nothing_cached_makes_no_request(published, monkeypatch):
    published["register"]("good")
    monkeypatch.setenv("FERZOO_OFFLINE", "1")
    assert W.availability("toy", "web", W.entries("toy")[("toy", "web")]) == "offline: not cached"
    with pytest.raises(W.WeightsError, match="FERZOO_OFFLINE is set and no verified copy is cached"):
        ferzoo.load("toy", weights="web")
    assert published["server"].hits == []
    assert _cache_files() == []


def test_second_url_is_tried_after_a_bad_one(published, registry):
    path = published["path"]
    card = W.registry_card(path, sources=[{"url": published["server"].url("wrong")},
                                          {"url": published["server"].url("good")}],
                           license="test", dataset_terms="test")
    registry.register(_UrlPlugin(card), name="web_weights")
    model = ferzoo.load("toy", weights="web")
    np.testing.assert_allclose(model.predict(published["x"], verbose=0), published["expected"], atol=1e-6)
    assert [h.split("/")[1] for h in published["server"].hits] == ["wrong", "good"]
