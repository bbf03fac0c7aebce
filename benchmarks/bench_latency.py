"""Inference latency of any zoo model: batch 1 and batch 64 through Keras ``predict_on_batch`` (the weights'
card's test-time augmentation included) and through ``ferzoo.export.frozen_predictor``.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_latency.py MODEL [--weights TAG|FILE] [--input-shape H,W,C]
        [--b1 15] [--b64 3] [--inter-op N] [--intra-op N]

Without ``--weights`` the model is built with random weights (``--input-shape`` for another input size).
Random pixels; the median of the timed calls after two warm-up calls.
"""

from __future__ import annotations

import argparse
import sys

from timing import median_seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--weights")
    p.add_argument("--input-shape", help="H,W,C (random weights only)")
    p.add_argument("--b1", type=int, default=15, help="timed batch-1 calls")
    p.add_argument("--b64", type=int, default=3, help="timed batch-64 calls")
    p.add_argument("--inter-op", type=int, help="TensorFlow inter-op threads (default: TensorFlow's)")
    p.add_argument("--intra-op", type=int, help="TensorFlow intra-op threads (default: TensorFlow's)")
    args = p.parse_args(argv)
    if args.b1 < 1 or args.b64 < 1:
        p.error("--b1 and --b64 must be >= 1")
    if args.weights and args.input_shape:
        p.error("--input-shape: the weights' card fixes the input shape; give one or the other")

    import numpy as np
    import tensorflow as tf

    if args.inter_op is not None:  # before anything runs: TensorFlow fixes its pools on first use
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if args.intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)

    import ferzoo
    from ferzoo.export import frozen_predictor

    if args.weights:
        model = ferzoo.load(args.model, weights=args.weights)
    else:
        shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
        model = ferzoo.build(args.model, num_classes=7, input_shape=shape)
    x = np.random.default_rng(0).uniform(0, 255, (64, *model.input_shape_hwc)).astype("float32")
    frozen = frozen_predictor(model)
    shape = "x".join(map(str, model.input_shape_hwc))
    threads = (tf.config.threading.get_inter_op_parallelism_threads(),
               tf.config.threading.get_intra_op_parallelism_threads())
    print(f"{args.model} ({args.weights or 'random weights'}), input {shape}, tta {model.tta}, "
          f"inter/intra-op threads {threads[0] or 'default'}/{threads[1] or 'default'}\n")
    print("| path | batch-1 ms | batch-64 ms | batch-64 img/s |")
    print("|---|---:|---:|---:|")
    for label, fn in (("Keras predict_on_batch", model.predict_on_batch), ("frozen graph", frozen)):
        b1 = median_seconds(lambda: fn(x[:1]), args.b1, warmup=2)
        b64 = median_seconds(lambda: fn(x), args.b64, warmup=2)
        print(f"| {label} | {1000 * b1:.1f} | {1000 * b64:.1f} | {64 / b64:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
