"""Batched vs branches local networks, on generated images (no data set needed).

``python -m ferzoo_plugins.lnlattennet.benchmark latency [--batch-sizes 1 64] [--repeats 3] [--small]``
    inference latency of ``predict_on_batch`` for both ``local_impl`` values, on the same weights, interleaved
    (batched, branches, batched, ...) so that background load hits both alike; the median per batch size;
``python -m ferzoo_plugins.lnlattennet.benchmark train [--batch-sizes 32] [--steps 2] [--small]``
    training: for every (implementation, batch size) a fresh Python process builds the model, compiles it with
    the paper's recipe (Adam, CE + L2), runs ``--warmup`` then ``--steps`` timed ``train_on_batch`` steps, and
    reports images/s and its peak resident memory (``VmHWM`` of ``/proc/self/status``: model, optimizer state,
    activations, TensorFlow itself), and the resident memory after building and compiling, before the first step;
``python -m ferzoo_plugins.lnlattennet.benchmark interleaved [--batch-size 16] [--steps 3]``
    training speed of both implementations in one process, their steps alternating, so that background load
    (which moves the separate-process figures of ``train`` by tens of percent here) hits both alike;
``python -m ferzoo_plugins.lnlattennet.benchmark conv``
    one SimpleNet convolution (16 patches, 48 x 48 x 64 -> 64, batch 4, forward + backward) three ways: the
    grouped ``tf.nn.conv2d`` the plugin uses, 16 separate convolutions, and ``keras.ops.conv`` with a grouped
    kernel (which the TensorFlow backend compiles with XLA on CPU);
``python -m ferzoo_plugins.lnlattennet.benchmark all [--small]``: all four, one JSON document.

``--small`` uses the synthetic recipe's few-channel configuration (same geometry) so that a run takes seconds.
Results are JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

IMPLS = ("batched", "branches")


def small_config() -> dict:
    """The synthetic recipe's configuration (the method with a few channels per layer)."""
    from . import recipes

    return dict(recipes()["synthetic"]["config"])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _images(batch: int, shape, seed: int = 0):
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (batch, *shape)).astype("float32")


def latency(batch_sizes=(1, 64), repeats: int = 3, small: bool = False, seed: int = 0) -> dict:
    import keras
    import numpy as np

    import ferzoo

    config = small_config() if small else {}
    keras.utils.set_random_seed(seed)
    models = {impl: ferzoo.build("lnlattennet", local_impl=impl, **config) for impl in IMPLS}
    models["branches"].set_weights(models["batched"].get_weights())
    out = {"what": "inference latency (predict_on_batch), median seconds per call", "small": small,
           "repeats": repeats, "results": {}}
    for batch in batch_sizes:
        x = _images(int(batch), models["batched"].input_shape_hwc, seed)
        probs = {impl: np.asarray(m.predict_on_batch(x)) for impl, m in models.items()}  # warm-up (tracing)
        times = {impl: [] for impl in IMPLS}
        for _ in range(repeats):
            for impl in IMPLS:
                start = time.perf_counter()
                models[impl].predict_on_batch(x)
                times[impl].append(time.perf_counter() - start)
        out["results"][str(batch)] = {
            impl: {"seconds": round(statistics.median(t), 4), "images_per_second": round(batch / statistics.median(t), 2)}
            for impl, t in times.items()}
        out["results"][str(batch)]["max_abs_prob_diff"] = float(np.abs(probs["batched"] - probs["branches"]).max())
    out["cpu_count"] = os.cpu_count()
    return out


def train_one(impl: str, batch_size: int, steps: int = 2, warmup: int = 1, small: bool = False, seed: int = 0) -> dict:
    """One training measurement in *this* process (call it in a fresh one for a clean peak-memory figure)."""
    import keras
    import numpy as np

    import ferzoo

    keras.utils.set_random_seed(seed)
    model = ferzoo.build("lnlattennet", local_impl=impl, **(small_config() if small else {}))
    model.compile()
    x = _images(batch_size, model.input_shape_hwc, seed)
    y = np.random.default_rng(seed).integers(0, 7, batch_size).astype("int32")
    rss_built = _status_kib("VmRSS")
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    seconds = (time.perf_counter() - start) / max(steps, 1)
    return {"impl": impl, "batch_size": batch_size, "small": small, "steps": steps, "warmup": warmup,
            "seconds_per_step": round(seconds, 3), "images_per_second": round(batch_size / seconds, 2),
            "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1), "rss_after_build_mib": round(rss_built / 1024, 1),
            "loss": float(np.asarray(loss[0] if isinstance(loss, (list, tuple)) else loss)),
            "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_weights))}


def train(batch_sizes=(32,), impls=IMPLS, steps: int = 2, warmup: int = 1, small: bool = False) -> dict:
    """:func:`train_one` for every (batch size, implementation), each in its own Python process."""
    results = []
    for batch in batch_sizes:
        for impl in impls:
            cmd = [sys.executable, "-m", "ferzoo_plugins.lnlattennet.benchmark", "_train_one", "--impl", impl,
                   "--batch-size", str(batch), "--steps", str(steps), "--warmup", str(warmup)]
            if small:
                cmd.append("--small")
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                results.append({"impl": impl, "batch_size": batch, "error": proc.stderr.strip().splitlines()[-3:]})
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"what": "training step (train_on_batch, paper recipe) and peak resident memory of a fresh process",
            "results": results, "cpu_count": os.cpu_count()}


def train_interleaved(batch_size: int = 16, steps: int = 3, warmup: int = 1, small: bool = False,
                      seed: int = 0) -> dict:
    """Both implementations (same weights) in one process, their training steps alternating (batched, branches,
    batched, ...), so that changing background load hits both alike; the median seconds per step of each."""
    import keras
    import numpy as np

    import ferzoo

    keras.utils.set_random_seed(seed)
    config = small_config() if small else {}
    models = {impl: ferzoo.build("lnlattennet", local_impl=impl, **config) for impl in IMPLS}
    models["branches"].set_weights(models["batched"].get_weights())
    for model in models.values():
        model.compile()
    x = _images(batch_size, models["batched"].input_shape_hwc, seed)
    y = np.random.default_rng(seed).integers(0, 7, batch_size).astype("int32")
    for _ in range(warmup):
        for model in models.values():
            model.train_on_batch(x, y)
    times = {impl: [] for impl in IMPLS}
    for _ in range(steps):
        for impl, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[impl].append(time.perf_counter() - start)
    return {"what": "training steps of both implementations alternating in one process, median seconds per step",
            "batch_size": batch_size, "steps": steps, "warmup": warmup, "small": small,
            "results": {impl: {"seconds_per_step": round(statistics.median(t), 3), "all": [round(v, 3) for v in t],
                               "images_per_second": round(batch_size / statistics.median(t), 2)}
                        for impl, t in times.items()},
            "cpu_count": os.cpu_count()}


def conv(batch: int = 4, repeats: int = 3) -> dict:
    import keras
    import tensorflow as tf

    m, c, o, size = 16, 64, 64, 48
    x = tf.random.normal((batch, size, size, m * c), seed=0)
    w = tf.random.normal((3, 3, c, m * o), seed=1) * 0.05
    ways = {
        "grouped tf.nn.conv2d (the plugin)": lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"),
        "16 separate convolutions": lambda x, w: tf.concat(
            [tf.nn.conv2d(x[..., i * c:(i + 1) * c], w[..., i * o:(i + 1) * o], 1, "SAME") for i in range(m)], -1),
        "keras.ops.conv, grouped kernel (XLA on CPU)": lambda x, w: keras.ops.conv(x, w, 1, "same"),
    }
    out = {"what": f"one SimpleNet conv, {m} patches {size}x{size}x{c} -> {o}, batch {batch}, forward + backward, "
                   f"median seconds", "results": {}}
    for name, fn in ways.items():
        @tf.function
        def step(x, w, fn=fn):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                loss = tf.reduce_sum(tf.square(fn(x, w)))
            return tape.gradient(loss, [x, w])

        step(x, w)
        times = []
        for _ in range(1 if "XLA" in name else repeats):  # the XLA way takes tens of seconds per call
            start = time.perf_counter()
            _ = [g.numpy() for g in step(x, w)]
            times.append(time.perf_counter() - start)
        out["results"][name] = round(statistics.median(times), 4)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["latency", "train", "interleaved", "conv", "all", "_train_one"])
    p.add_argument("--batch-sizes", type=int, nargs="+")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--impl", choices=IMPLS, nargs="+", default=list(IMPLS))
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--small", action="store_true", help="the synthetic recipe's few-channel model (seconds)")
    args = p.parse_args(argv)
    if args.what == "_train_one":
        print(json.dumps(train_one(args.impl[0], args.batch_size, args.steps, args.warmup, args.small)))
        return 0
    result = {}
    if args.what in ("latency", "all"):
        result["latency"] = latency(args.batch_sizes or (1, 64), args.repeats, args.small)
    if args.what in ("train", "all"):
        result["train"] = train(args.batch_sizes or (args.batch_size,), args.impl, args.steps, args.warmup, args.small)
    if args.what in ("interleaved", "all"):
        result["interleaved"] = train_interleaved(args.batch_size if args.what == "interleaved" else 16,
                                                  args.steps, args.warmup, args.small)
    if args.what in ("conv", "all"):
        result["conv"] = conv(repeats=args.repeats)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
