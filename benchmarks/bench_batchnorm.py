"""DAN with ferzoo's fused batch norm (``ferzoo.layers.BatchNormalization``) against the same model on Keras'
own batch-norm code path, side by side in one process, interleaved.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_batchnorm.py [--size 224] [--rounds 3] [--policy float32]

Both models have the same weights (random init, seed 0); the second one's batch-norm layers get
``use_fused_kernel = False`` before their first call. Each round times one training step at batch 32 and the
median of 5 batch-1 ``predict_on_batch`` calls per model; the medians over the rounds and the ratios
(fused / Keras) are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--policy", default="float32", choices=["float32", "mixed_bfloat16"])
    args = p.parse_args(argv)
    if args.size < 32 or args.rounds < 1:
        p.error("--size must be >= 32 and --rounds >= 1")

    import keras
    import numpy as np

    import ferzoo
    from ferzoo.layers import BatchNormalization

    models = {}
    for name in ("fused", "keras"):
        keras.mixed_precision.set_global_policy(args.policy)
        try:
            keras.utils.set_random_seed(0)
            model = ferzoo.build("dan", num_classes=7, input_shape=(args.size, args.size, 3), backbone_weights=None)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        bns = [layer for layer in model._flatten_layers() if isinstance(layer, BatchNormalization)]
        for layer in bns:
            layer.use_fused_kernel = name == "fused"
        model.compile()
        models[name] = (model, len(bns))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 7, 32).astype("int32")
    for model, _ in models.values():  # tracing
        for _ in range(2):
            model.train_on_batch(x, y)
            model.predict_on_batch(x[:1])
    samples = {name: {"train": [], "b1": []} for name in models}
    for _ in range(args.rounds):
        for name, (model, _) in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            samples[name]["train"].append(32 / (time.perf_counter() - start))
            calls = []
            for _ in range(5):
                start = time.perf_counter()
                model.predict_on_batch(x[:1])
                calls.append(time.perf_counter() - start)
            samples[name]["b1"].append(1000 * statistics.median(calls))
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    print(f"DAN {args.size}x{args.size}x3, {args.policy}, median of {args.rounds} interleaved rounds "
          f"({models['fused'][1]} ferzoo batch-norm layers)\n")
    print("| batch norm | train b32 img/s | batch-1 ms |")
    print("|---|---:|---:|")
    for name, label in (("keras", "Keras' code path"), ("fused", "fused kernel")):
        print(f"| {label} | {med[name]['train']:.1f} | {med[name]['b1']:.1f} |")
    print(f"| fused / Keras | {med['fused']['train'] / med['keras']['train']:.2f}x | "
          f"{med['fused']['b1'] / med['keras']['b1']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
