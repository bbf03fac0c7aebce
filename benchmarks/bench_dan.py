"""DAN on this machine: inference latency (batch 1, batch 64) and training throughput (images/s).

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_dan.py                       # 224 x 224, as in BENCHMARKS.md
    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_dan.py --size 96 --train-batch 64 --skip-inference

Random weights and random pixels (speed does not depend on the values). Inference runs the model's compiled
``predict_on_batch``; training runs ``fit`` with the recipe (``compile()``: SGD, coupled weight decay, affinity +
partition losses) on an in-memory batch, timing epochs after one warm-up epoch. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timed(fn, x, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn(x)`` after one warm-up call."""
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--repeats", type=int, default=20, help="timed batch-1 calls")
    p.add_argument("--big-batch", type=int, default=64)
    p.add_argument("--big-repeats", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=4, help="timed training steps (after a warm-up epoch)")
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import ferzoo

    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, 3)
    model = ferzoo.build("dan", num_classes=args.classes, input_shape=shape)
    rng = np.random.default_rng(0)
    result = {"model": "dan", "input_shape": list(shape), "num_classes": args.classes,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "load_average_at_start": os.getloadavg()[0]}
    if not args.skip_inference:
        one = rng.uniform(0, 255, (1, *shape)).astype(np.float32)
        big = rng.uniform(0, 255, (args.big_batch, *shape)).astype(np.float32)
        times = _timed(model.predict_on_batch, one, args.repeats)
        big_times = _timed(model.predict_on_batch, big, args.big_repeats)
        result["latency_batch1_ms_median"] = round(1000 * statistics.median(times), 1)
        result["latency_batch1_ms_min"] = round(1000 * min(times), 1)
        result[f"batch{args.big_batch}_seconds_median"] = round(statistics.median(big_times), 3)
        result[f"batch{args.big_batch}_images_per_s"] = round(args.big_batch / statistics.median(big_times), 1)
    if not args.skip_training:
        n = args.train_batch * args.train_steps
        x = rng.uniform(0, 255, (n, *shape)).astype(np.float32)
        y = rng.integers(0, args.classes, n)
        model.compile()
        t = time.perf_counter()
        model.fit(x, y, batch_size=args.train_batch, epochs=1, verbose=0)
        result["train_first_epoch_seconds_incl_tracing"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        model.fit(x, y, batch_size=args.train_batch, epochs=1, verbose=0)
        seconds = time.perf_counter() - t
        result["train_batch"] = args.train_batch
        result["train_images_per_s"] = round(n / seconds, 1)
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
