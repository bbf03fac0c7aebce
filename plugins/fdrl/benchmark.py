"""Cost of FDRL on this machine, on generated images (no data set needed).

``python -m ferzoo_plugins.fdrl.benchmark [--input-size 224] [--runs 10] [--train-steps 5] [--small] [--json]``

* parameters (trainable, per part) and multiply-accumulates per image, counted from the layer shapes
  (convolutions, the branch FCs, the classifier and the inter-feature graph; batch norm, pooling and
  activations are not counted);
* inference latency: the median wall time of ``predict_on_batch`` at batch 1 and at batch 64 (after a warm-up
  call that traces the graph), and the images/s that batch 64 gives;
* training throughput: images/s of ``train_on_batch`` at batch 32 with the paper's recipe (Adam, all four
  losses, the centre rule), after ``--warmup`` steps.

``--small`` runs the same at 64 x 64 with fewer repetitions (a quick check, not the paper's cost).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from ferzoo.benchmark import median_seconds


def count_macs(model) -> dict:
    """Multiply-accumulates per image of the layers that do the arithmetic, by kind."""
    import keras

    from .layers import BranchDense, InterRelation

    out = {"conv": 0, "branch_fc": 0, "dense": 0, "inter_graph": 0}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            out["conv"] += int(h * w * kh * kw * c_in * c_out)
        elif isinstance(layer, BranchDense):
            m, fan_in, units = layer.kernel.shape
            out["branch_fc"] += int(m * fan_in * units)
        elif isinstance(layer, keras.layers.Dense):
            fan_in, units = layer.kernel.shape
            out["dense"] += int(fan_in * units)
        elif isinstance(layer, InterRelation):
            _, m, d = layer.input.shape
            out["inter_graph"] += int(2 * m * m * d)  # squared distances + the aggregation Omega G
    out["total"] = sum(out.values())
    return out


def measure(input_size: int = 224, runs: int = 10, train_steps: int = 5, warmup: int = 2, seed: int = 0) -> dict:
    import keras
    import numpy as np

    import ferzoo

    from .model import head_parameter_counts

    keras.utils.set_random_seed(seed)
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(input_size, input_size, 3), recipe="rafdb")
    rng = np.random.default_rng(seed)
    result = {"model": "fdrl", "input_shape": [input_size, input_size, 3], "cpu_count": os.cpu_count(),
              "trainable_params": int(model.describe()["trainable_params"]),
              "params_by_part": head_parameter_counts(model), "macs_per_image": count_macs(model)}
    for batch in (1, 64):
        x = rng.uniform(0, 255, (batch, input_size, input_size, 3)).astype("float32")
        model.predict_on_batch(x)  # trace
        seconds = median_seconds(lambda: model.predict_on_batch(x), runs if batch == 1 else max(2, runs // 3))
        result[f"latency_batch{batch}_ms"] = round(1000 * seconds, 2)
        if batch == 64:
            result["inference_images_per_second_batch64"] = round(batch / seconds, 1)
    model.compile()
    x = rng.uniform(0, 255, (32, input_size, input_size, 3)).astype("float32")
    y = rng.integers(0, 7, 32).astype("int32")
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(train_steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    result.update(train_batch_size=32, train_steps=train_steps,
                  train_images_per_second=round(train_steps * 32 / seconds, 1),
                  rafdb_epoch_minutes=round(12271 / (train_steps * 32 / seconds) / 60, 1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--runs", type=int, default=10, help="timed inference calls at batch 1 (batch 64: a third)")
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--small", action="store_true", help="64 x 64 input, 3 runs, 2 training steps (a quick check)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    args = p.parse_args(argv)
    if args.small:
        args.input_size, args.runs, args.train_steps, args.warmup = 64, 3, 2, 1
    result = measure(args.input_size, args.runs, args.train_steps, args.warmup)
    if not args.json:
        macs = result["macs_per_image"]["total"]
        print(f"fdrl at {args.input_size}x{args.input_size}: {result['trainable_params']:,} trainable parameters, "
              f"{macs / 1e9:.3f} G multiply-accumulates per image; latency batch 1 {result['latency_batch1_ms']} ms, "
              f"batch 64 {result['latency_batch64_ms']} ms ({result['inference_images_per_second_batch64']} img/s); "
              f"training {result['train_images_per_second']} img/s at batch 32")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
