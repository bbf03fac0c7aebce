"""``ferzoo serve``: an HTTP service for the zoo's models (TensorFlow Serving's REST predict API, a photo
endpoint returning ``ferzoo predict``'s records, a web page), with dynamic batching. See :mod:`ferzoo.serve.app`.

``serve(...)`` loads the models once and runs the server (uvicorn) until interrupted; ``load_models`` and
:func:`ferzoo.serve.app.create_app` build the pieces for embedding the application elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from typing import Callable, Sequence

DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_MB = "127.0.0.1", 8501, 32, 20.0
#: how long the first request of a batch waits for others to join it
DEFAULT_MAX_WAIT_MS = 5.0
#: ``--tta``: the card's test-time augmentation, or one for every model served (ferzoo.recipes.TTA_OPTIONS)
SERVE_TTA = ("card", "none", "flip", "tencrop")


def _say_default(line: str) -> None:
    print(f"ferzoo serve: {line}", file=sys.stderr, flush=True)


def check_address(host: str, port: int) -> None:
    """Raise ``ValueError`` naming ``--host`` / ``--port`` when the address cannot be bound (before any model
    loads)."""
    open_listener(host, port).close()


def open_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (``port`` 0: a free port the system picks; the
    socket's ``getsockname()`` says which). Errors are ``ValueError`` naming ``--host`` / ``--port``."""
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--port: must be 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_models(pairs: Sequence[tuple[str | None, str | None]], *, max_batch: int = DEFAULT_MAX_BATCH,
                max_wait_ms: float = DEFAULT_MAX_WAIT_MS, say: Callable[[str], None] | None = None,
                warm_up: bool = True, tta: str = "card", min_confidence: float | None = None):
    """``[(model, weights), ...]`` -> the :class:`ferzoo.serve.app.ServedModel` list (each loaded once; a
    model named twice is served as ``model.tag`` the second time). ``(None, None)``: the default model.
    ``tta``: ``"card"`` (the weights' test-time augmentation, as ``ferzoo predict``), or one of
    :data:`ferzoo.recipes.TTA_OPTIONS` for every model (``"none"``: one pass; ``"flip"``: two; ``"tencrop"``: ten).
    ``min_confidence``: the face detector's (None: :data:`ferzoo.faces.DEFAULT_MIN_CONFIDENCE`)."""
    from ..faces import FaceDetector
    from ..predict import load_model, weights_label
    from ..recipes import tta_option
    from .app import ServedModel

    say = say or _say_default
    lock = threading.Lock()
    detector = FaceDetector(min_confidence)
    served, names = [], set()
    for model_name, weights in pairs or [(None, None)]:
        model = load_model(model_name, weights, say)
        wanted = tta_option(tta, model.tta)
        if wanted != model.tta:
            say(f"{model.model_name}: --tta {tta} (the card's is {model.tta or 'none'})")
            model.tta = wanted
        label = weights_label(model)
        name = model.model_name if model.model_name not in names else label
        if name in names:
            raise ValueError(f"--model {model_name} --weights {weights}: served twice")
        names.add(name)
        served.append(ServedModel(name, model, label, lock, max_batch=max_batch, max_wait_s=max_wait_ms / 1000.0,
                                  detector=detector))
    if warm_up:  # trace the model and the detector now, not on the first request
        import numpy as np

        import ferzoo
        from .app import PhotoJob

        demo = ferzoo.demo_image(path_only=True)
        for s in served:
            s.predictor.submit(np.zeros((1, *s.input_shape), np.float32)).result()
            s.photos.submit(PhotoJob([("warm-up.png", demo.read_bytes())])).result()
    return served


def serve(models: Sequence[tuple[str | None, str | None]] = ((None, None),), *, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, max_batch: int = DEFAULT_MAX_BATCH, max_body_mb: float = DEFAULT_MAX_BODY_MB,
          max_wait_ms: float = DEFAULT_MAX_WAIT_MS, tta: str = "card", min_confidence: float | None = None,
          say: Callable[[str], None] | None = None) -> None:
    """Load ``models`` and serve them on ``host:port`` until interrupted (``ferzoo serve``)."""
    import uvicorn

    from .app import create_app

    say = say or _say_default
    if max_batch < 1:
        raise ValueError(f"--max-batch: must be an integer >= 1, got {max_batch}")
    if tta not in SERVE_TTA:
        raise ValueError(f"--tta: one of {', '.join(SERVE_TTA)}, got {tta!r}")
    if not max_body_mb > 0:
        raise ValueError(f"--max-body-mb: must be a number > 0, got {max_body_mb}")
    listener = open_listener(host, port)  # held from here on: the port cannot be taken while models load
    served = []
    try:
        if not is_loopback(host):
            say(f"warning: --host {host} listens beyond this machine: anyone who can reach it can use the models "
                f"(there is no authentication); the default is {DEFAULT_HOST}")
        served = load_models(models, max_batch=max_batch, max_wait_ms=max_wait_ms, say=say, tta=tta,
                             min_confidence=min_confidence)
        app = create_app(served, max_body_mb=max_body_mb)
        shown = f"[{host}]" if ":" in host else host
        bound = listener.getsockname()[1]  # --port 0: the free port the system picked
        say(f"serving {', '.join(s.name for s in served)} (default {served[0].name}) on http://{shown}:{bound}/ "
            f"(max batch {max_batch}, body limit {max_body_mb:g} MB); Ctrl-C stops")
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[listener])
    finally:
        for s in served:
            s.close()
        listener.close()
