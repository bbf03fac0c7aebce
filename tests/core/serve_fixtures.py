"""A real ``ferzoo serve`` process on 127.0.0.1 for the serve tests (imported by test_serve*.py)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 180.0):
    """Start ``ferzoo serve --port 0 ARGS`` and yield ``(base_url, process)`` once ``/healthz`` answers: the
    server picks a free port and prints it (``on http://127.0.0.1:PORT/``), so no other process can take the
    port between choosing and binding it."""
    import httpx

    home = tempfile.mkdtemp(prefix="ferzoo-serve-home-")
    env = {**os.environ, "FERZOO_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = Path(home) / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "ferzoo.cli", "serve", "--port", "0", *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = None
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ferzoo serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if base is None:
                said = re.search(r" on http://127\.0\.0\.1:(\d+)/", log.read_text())
                base = f"http://127.0.0.1:{said.group(1)}" if said else None
            try:
                if base is not None and httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ferzoo serve did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        proc.log_path = log
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
