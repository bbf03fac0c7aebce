"""Inference latency of any zoo model: batch 1 and batch 64 through Keras ``predict_on_batch`` (the weights'
card's test-time augmentation included) and through ``ferzoo.export.frozen_predictor`` in float32 and in
bfloat16, and, for models with layers that fold for inference (DAN), the float32 frozen graph without the folds.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_latency.py MODEL [--weights TAG|FILE] [--input-shape H,W,C]
        [--b1 15] [--b64 3] [--rounds 1] [--inter-op N] [--intra-op N] [--data NAME --data-dir DIR --split val]

Without ``--weights`` the model is built with random weights (``--input-shape`` for another input size).
Random pixels; the median of the timed calls after two warm-up calls, per round; with ``--rounds N`` the paths
take turns N times and the median over the rounds is reported. ``--data``: also the accuracy of each path on
that data set's split and the share of images where each path's top-1 class is that of the float32 frozen graph.
"""

from __future__ import annotations

import argparse
import statistics
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
    p.add_argument("--rounds", type=int, default=1, help="times the paths take turns (median over rounds)")
    p.add_argument("--data", help="a data set name: also report accuracy and top-1 agreement on it")
    p.add_argument("--data-dir")
    p.add_argument("--split", default="val")
    args = p.parse_args(argv)
    if args.b1 < 1 or args.b64 < 1 or args.rounds < 1:
        p.error("--b1, --b64 and --rounds must be >= 1")
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
    from ferzoo.layers import foldable_layers

    if args.weights:
        model = ferzoo.load(args.model, weights=args.weights)
    else:
        shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
        model = ferzoo.build(args.model, num_classes=7, input_shape=shape)
    x = np.random.default_rng(0).uniform(0, 255, (64, *model.input_shape_hwc)).astype("float32")
    paths = {"Keras predict_on_batch": model.predict_on_batch, "frozen graph float32": frozen_predictor(model),
             "frozen graph bfloat16": frozen_predictor(model, precision="bfloat16")}
    if foldable_layers(model):
        paths["frozen graph float32, no folds"] = frozen_predictor(model, fold=False)
    shape = "x".join(map(str, model.input_shape_hwc))
    threads = (tf.config.threading.get_inter_op_parallelism_threads(),
               tf.config.threading.get_intra_op_parallelism_threads())
    print(f"{args.model} ({args.weights or 'random weights'}), input {shape}, tta {model.tta}, "
          f"inter/intra-op threads {threads[0] or 'default'}/{threads[1] or 'default'}, {args.rounds} round(s)\n")
    times = {label: ([], []) for label in paths}
    for _ in range(args.rounds):
        for label, fn in paths.items():
            times[label][0].append(median_seconds(lambda: fn(x[:1]), args.b1, warmup=2))
            times[label][1].append(median_seconds(lambda: fn(x), args.b64, warmup=2))
    ref = statistics.median(times["Keras predict_on_batch"][0])
    print("| path | batch-1 ms | vs Keras | batch-64 ms | batch-64 img/s |")
    print("|---|---:|---:|---:|---:|")
    for label, (b1s, b64s) in times.items():
        b1, b64 = statistics.median(b1s), statistics.median(b64s)
        print(f"| {label} | {1000 * b1:.1f} | {b1 / ref:.2f}x | {1000 * b64:.1f} | {64 / b64:.0f} |")
    if args.data:
        images, labels = _data(args.data, args.data_dir, args.split, model.class_names)
        probs = {label: np.concatenate([np.asarray(fn(images[i:i + 64])) for i in range(0, len(images), 64)])
                 for label, fn in paths.items()}
        top1 = {label: p.argmax(1) for label, p in probs.items()}
        ref = "frozen graph float32"
        print(f"\n{args.data} {args.split}: {len(labels)} images\n")
        print(f"| path | accuracy | top-1 as {ref} | max abs probability difference |")
        print("|---|---:|---:|---:|")
        for label in paths:
            print(f"| {label} | {100 * (top1[label] == labels).mean():.2f}% | "
                  f"{100 * (top1[label] == top1[ref]).mean():.2f}% | {np.abs(probs[label] - probs[ref]).max():.4f} |")
    return 0


def _data(name, data_dir, split, class_names):
    """All images and labels (indices into ``class_names``) of a data set's split, as numpy arrays."""
    import numpy as np

    import ferzoo

    ds = ferzoo.get_dataset(name, data_dir=data_dir, split=split)
    if list(ds.class_names) != list(class_names):
        raise SystemExit(f"{name}: classes {list(ds.class_names)} are not the model's {list(class_names)}")
    images, labels = [], []
    for x, y in ds.batch(512):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images).astype("float32"), np.concatenate(labels)


if __name__ == "__main__":
    sys.exit(main())
