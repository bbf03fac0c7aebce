"""``ferzoo serve`` under concurrent clients: images per second and latency (p50, p95) of 16 clients at once
against the same requests sent one at a time, on TensorFlow Serving's predict endpoint ({"b64": ...} photos of
the demo face) and on the photo endpoint (face detection + classification).

    python benchmarks/bench_serve.py                       # starts `ferzoo serve` on a free 127.0.0.1 port
    python benchmarks/bench_serve.py --url http://127.0.0.1:8501 --model daf_cnn_compact

Prints a Markdown table (BENCHMARKS.md, "Serving") and, with --json FILE, the measurements.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))


def _face_jpeg(seed: int) -> bytes:
    """The demo photo, cropped a little differently per request (no two requests alike)."""
    import numpy as np
    from PIL import Image

    import ferzoo

    image = ferzoo.demo_image()
    rng = np.random.default_rng(seed)
    dx, dy = (int(v) for v in rng.integers(0, 9, 2))
    buf = io.BytesIO()
    Image.fromarray(image[dy:dy + 120, dx:dx + 120]).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _percentile(values, q):
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run(url: str, kind: str, model: str, clients: int, per_client: int, bodies: list[bytes]) -> dict:
    """``clients`` threads each sending ``per_client`` requests; returns images/s and latencies (ms)."""
    import httpx

    if kind == "predict":
        path = f"/v1/models/{model}:predict"
        payloads = [json.dumps({"signature_name": "serving_bytes", "instances": [
            {"b64": base64.b64encode(b).decode()}]}).encode() for b in bodies]
        headers = {"content-type": "application/json"}
    else:
        path, payloads, headers = "/v1/photos", bodies, {"content-type": "image/jpeg"}
    latencies, errors = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(i):
        with httpx.Client(base_url=url, timeout=120) as c:
            c.get("/healthz")  # connect first
            barrier.wait()
            for j in range(per_client):
                body = payloads[(i * per_client + j) % len(payloads)]
                t0 = time.perf_counter()
                r = c.post(path, content=body, headers=headers)
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if r.status_code == 200 else errors).append(dt if r.status_code == 200 else r.text)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0][:300]}")
    return {"kind": kind, "clients": clients, "requests": len(latencies), "seconds": wall,
            "images_per_second": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies), "p95_ms": 1000 * _percentile(latencies, 0.95)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running ferzoo serve (default: start one on a free 127.0.0.1 port)")
    p.add_argument("--model", default="daf_cnn_compact", help="served model name (default daf_cnn_compact)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=10, help="requests per client (default 10)")
    p.add_argument("--photo-requests", type=int, default=4, help="photo endpoint requests per client (default 4)")
    p.add_argument("--tta", choices=["card", "none", "flip", "tencrop"], default="card",
                   help="the started server's --tta (default card: the weights' test-time augmentation)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    bodies = [_face_jpeg(i) for i in range(64)]

    def measure(url):
        rows = []
        for kind, per in (("predict", args.requests), ("photos", args.photo_requests)):
            if per < 1:
                continue
            total = args.clients * per
            run(url, kind, args.model, 4, 2, bodies)  # warm-up: batch shapes traced
            one = run(url, kind, args.model, 1, total, bodies)
            many = run(url, kind, args.model, args.clients, per, bodies)
            rows.append((kind, one, many))
        health = __import__("httpx").get(url + "/healthz").json()
        return rows, health

    if args.url:
        rows, health = measure(args.url)
    else:
        from serve_fixtures import running_server

        with running_server("--model", args.model, "--tta", args.tta) as (url, _):
            rows, health = measure(url)
    import os

    print(f"ferzoo serve, {args.clients} clients x {args.requests} requests (photos: x {args.photo_requests}); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; model {args.model}"
          f"{'' if args.url else f', --tta {args.tta}'}\n")
    print("| endpoint | clients | requests | images/s | p50 ms | p95 ms | speed-up |")
    print("|---|---|---|---|---|---|---|")
    out = []
    for kind, one, many in rows:
        label = "`:predict` (b64 JPEG, one image)" if kind == "predict" else "`/v1/photos` (JPEG, detect + classify)"
        for r in (one, many):
            ratio = r["images_per_second"] / one["images_per_second"]
            print(f"| {label} | {r['clients']} | {r['requests']} | {r['images_per_second']:.1f} | {r['p50_ms']:.1f} | "
                  f"{r['p95_ms']:.1f} | {ratio:.2f}x |")
        out.append({"kind": kind, "sequential": one, "concurrent": many,
                    "ratio": many["images_per_second"] / one["images_per_second"]})
    print(f"\nbatches after the run: {json.dumps(health['batches'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": out, "health": health}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
