"""Deep-Emotion speed on this machine: inference latency (batch 1 and 64) and training throughput.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_deep_emotion.py [--json out.json] [--stn-on features|input|none]

Latency: a ``tf.function`` of ``model(x, training=False)`` on random 48x48x1 images, median (and p90) over
``--repeats`` calls after ``--warmup`` calls. Throughput: ``model.fit`` with the recipe's optimizer and loss
(``model.compile()``) on in-memory random data at the recipe's batch size (128), timed over ``--epochs``
epochs after one warm-up epoch (tracing), so the input pipeline of a real data set is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def latency(model, batch: int, warmup: int, repeats: int) -> dict:
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, 48, 48, 1)).astype("float32"))
    fn = tf.function(lambda t: model(t, training=False)["probabilities"])
    for _ in range(warmup):
        fn(x).numpy()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t0)
    times = np.array(times) * 1000.0
    return {"batch": batch, "median_ms": round(float(np.median(times)), 3),
            "p90_ms": round(float(np.percentile(times, 90)), 3),
            "images_per_s": round(batch / (float(np.median(times)) / 1000.0), 1)}


def throughput(model, n: int, batch: int, epochs: int) -> dict:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (n, 48, 48, 1)).astype("float32")
    y = rng.integers(0, model.num_classes, n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(2)
    model.compile()
    model.fit(ds, epochs=1, verbose=0)  # tracing
    t0 = time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - t0
    return {"batch": batch, "images": n * epochs, "seconds": round(seconds, 2),
            "images_per_s": round(n * epochs / seconds, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stn-on", default="features", choices=["features", "input", "none"])
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--train-images", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    import ferzoo

    keras.utils.set_random_seed(0)
    model = ferzoo.build("deep_emotion", stn_on=args.stn_on)
    result = {
        "model": "deep_emotion", "stn_on": args.stn_on, "params": int(model.count_params()),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "tensorflow": tf.__version__, "keras": keras.__version__,
                    "gpus": len(tf.config.list_physical_devices("GPU"))},
        "latency": [latency(model, b, args.warmup, args.repeats) for b in (1, 64)],
        "training": throughput(model, args.train_images, args.batch_size, args.epochs),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
