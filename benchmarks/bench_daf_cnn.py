"""DAF-CNN, the paper's configuration next to the compact one: size, cost, speed, and TFLite agreement.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_daf_cnn.py [--fer-dir ../shared/datasets/fer2013]
        [--runs 20] [--train-steps 10] [--small] [--json out.json]

For ``daf_cnn`` (96x96x1) and ``daf_cnn_compact`` (48x48x1), in one process and one after the other:

* trainable parameters and multiply-accumulates per image (TensorFlow's graph profiler counts the forward
  pass's float operations; MACs = FLOPs / 2);
* inference latency at batch 1 (median of ``--runs`` calls) and throughput at batch 64, for Keras
  (``predict_on_batch``) and for the float32 TFLite export (``tf.lite.Interpreter``, 2 threads);
* training throughput (``train_on_batch`` at the recipe's batch size, TC loss and centre rule included) in
  float32 and in mixed bfloat16.

With ``--fer-dir``, the shipped compact weights (``daf_cnn_compact.fer2013``) are exported to TFLite and run on
every FER-2013 ``val`` (PublicTest) face: the top-1 agreement with Keras' single pass, and both accuracies.
``--small`` (CI smoke run) times a few calls only. Random weights unless said otherwise (speed does not depend
on them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from timing import median_seconds


def forward_macs(model) -> int:
    """Multiply-accumulates of one image's forward pass (graph profiler FLOPs / 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    probs = model.output_model("probabilities") if hasattr(model, "output_model") else model
    fn = tf.function(lambda x: probs(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, *model.input_shape_hwc], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    opts = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation()
                                               ).with_empty_output().build()
    flops = model_analyzer.profile(frozen.graph, options=opts).total_float_ops
    return int(flops // 2)


def _median_seconds(fn, runs: int, warmup: int = 3) -> float:
    return median_seconds(fn, runs, warmup)


def speed(model, runs: int, train_steps: int, tflite_bytes: bytes | None) -> dict:
    import keras
    import numpy as np

    from ferzoo.export import interpreter, run_tflite

    rng = np.random.default_rng(0)
    shape = model.input_shape_hwc
    x1 = rng.uniform(0, 255, (1, *shape)).astype("float32")
    x64 = rng.uniform(0, 255, (64, *shape)).astype("float32")
    out = {"keras_b1_ms": 1000 * _median_seconds(lambda: model.predict_on_batch(x1), runs),
           "keras_b64_img_s": 64 / _median_seconds(lambda: model.predict_on_batch(x64), max(3, runs // 4))}
    for tta in ("flip", "tencrop"):  # the test-time augmentations a card can name (2 and 10 passes)
        model.tta = tta
        try:
            out[f"keras_{tta}_b1_ms"] = 1000 * _median_seconds(lambda: model.predict_on_batch(x1), runs)
            out[f"keras_{tta}_b64_img_s"] = 64 / _median_seconds(lambda: model.predict_on_batch(x64),
                                                                 max(3, runs // 4))
        finally:
            model.tta = None
    if tflite_bytes is not None:
        interp = interpreter(model_content=tflite_bytes, num_threads=2)
        out["tflite_b1_ms"] = 1000 * _median_seconds(lambda: run_tflite(interp, x1), runs)
        interp64 = interpreter(model_content=tflite_bytes, num_threads=2)
        out["tflite_b64_img_s"] = 64 / _median_seconds(lambda: run_tflite(interp64, x64), max(3, runs // 4))
    batch = int(model.recipe()["batch_size"])
    y = rng.integers(0, model.num_classes, batch).astype("int32")
    xb = rng.uniform(0, 255, (batch, *shape)).astype("float32")
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            import ferzoo

            trainee = ferzoo.build(model.model_name, num_classes=model.num_classes, recipe="fer2013")
            trainee.compile()
            seconds = _median_seconds(lambda: trainee.train_on_batch(xb, y), train_steps, warmup=2)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        out[f"train_{policy}_img_s"] = batch / seconds
    out["train_batch"] = batch
    return out


def tflite_agreement(fer_dir: str) -> dict:
    """The shipped compact weights, Keras single pass vs float32 TFLite, on every FER-2013 val face."""
    import numpy as np

    import ferzoo
    from ferzoo.export import convert_tflite, interpreter, keras_probabilities, parity, run_tflite

    model = ferzoo.load("daf_cnn_compact", weights="fer2013")
    ds = ferzoo.get_dataset("fer2013", data_dir=fer_dir, split="val")
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(int(y))
    images = model.preprocess(np.stack(images))
    native = list(ds.class_names)
    y = np.array([model.class_names.index(native[i]) for i in labels])
    reference = keras_probabilities(model, images, batch_size=256)
    interp = interpreter(model_content=convert_tflite(model, "none"), num_threads=2)
    lite = np.concatenate([run_tflite(interp, images[i:i + 256]) for i in range(0, len(images), 256)])
    report = parity(reference, lite)
    report.update(keras_accuracy=float(np.mean(reference.argmax(-1) == y)),
                  tflite_accuracy=float(np.mean(lite.argmax(-1) == y)))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer-dir", help="FER-2013 folder: also check the shipped compact weights' TFLite export")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--small", action="store_true", help="a quick smoke run (CI): few calls, compact model only")
    p.add_argument("--models", nargs="+", choices=["daf_cnn", "daf_cnn_compact"], help="default: both")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    import keras
    import numpy as np

    import ferzoo
    from ferzoo.export import convert_tflite

    runs, steps = (3, 2) if args.small else (args.runs, args.train_steps)
    results = {"cpu_count": os.cpu_count(), "models": {}}
    for name in args.models or (["daf_cnn_compact"] if args.small else ["daf_cnn", "daf_cnn_compact"]):
        keras.utils.set_random_seed(0)
        model = ferzoo.build(name, num_classes=7, recipe="fer2013")
        row = {"input": "x".join(map(str, model.input_shape_hwc)),
               "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_weights)),
               "macs": forward_macs(model)}
        lite = convert_tflite(model, "none")
        row["tflite_mb"] = len(lite) / 2 ** 20
        row.update(speed(model, runs, steps, lite))
        results["models"][name] = row
        print(name, json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.fer_dir:
        results["tflite_fer2013_val"] = tflite_agreement(args.fer_dir)
        print("tflite vs keras on FER-2013 val:", json.dumps(results["tflite_fer2013_val"]), flush=True)
    print()
    print("| model | input | params | MACs | TFLite MB | Keras b1 ms | Keras b64 img/s | TFLite b1 ms | "
          "TFLite b64 img/s | train f32 img/s | train bf16 img/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results["models"].items():
        print(f"| {name} | {r['input']} | {r['trainable_params']:,} | {r['macs'] / 1e6:,.1f} M | {r['tflite_mb']:.2f} | "
              f"{r['keras_b1_ms']:.2f} | {r['keras_b64_img_s']:,.0f} | {r['tflite_b1_ms']:.2f} | "
              f"{r['tflite_b64_img_s']:,.0f} | {r['train_float32_img_s']:,.1f} | {r['train_mixed_bfloat16_img_s']:,.1f} |")
    print()
    print("| model | Keras b1 ms: one pass / flip / ten-crop | Keras b64 img/s: one pass / flip / ten-crop |")
    print("|---|---|---|")
    for name, r in results["models"].items():
        print(f"| {name} | {r['keras_b1_ms']:.2f} / {r['keras_flip_b1_ms']:.2f} / {r['keras_tencrop_b1_ms']:.2f} | "
              f"{r['keras_b64_img_s']:,.0f} / {r['keras_flip_b64_img_s']:,.0f} / {r['keras_tencrop_b64_img_s']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
