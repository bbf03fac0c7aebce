"""Size and batch-1 latency of every built-in model as Keras, SavedModel and each TFLite variant.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_export.py [--models deep_emotion dan] [--runs 50]

Weights: a model's ``--weights`` tag when it resolves (``deep_emotion`` defaults to ``fer2013``, the
embedded weights), otherwise random weights (size and latency do not depend on the values; parity of the
int8 variant does, so it is only meaningful for trained weights). Latency is the median of ``--runs``
single-image calls after warm-up, each computing the weights' card's test-time augmentation (the ``tta``
column; the exports compute it in their graph): Keras = the model's ``predict_step`` called through
``tf.function``; SavedModel = its ``serving_default`` signature after ``tf.saved_model.load``; TFLite =
``set_tensor`` + ``invoke`` + ``get_tensor`` on the LiteRT interpreter with ``--threads`` threads. Parity columns
compare each export with Keras on 64 synthetic images (max |dp| and top-1 agreement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import median_seconds, tflite_call  # noqa: E402  (benchmarks/timing.py: the scripts' shared timing rule)


def _median_ms(fn, runs: int, warmup: int = 5) -> float:
    return 1000 * median_seconds(fn, runs, warmup)


def bench_model(name: str, weights: str | None, runs: int, threads: int, calibration: int, input_shape=None) -> list[dict]:
    import tensorflow as tf

    import ferzoo
    from ferzoo import export as E
    from ferzoo import weights as W

    import keras

    kwargs = {"input_shape": tuple(input_shape)} if input_shape else {}
    keras.utils.set_random_seed(0)
    if weights and weights in W.known_tags(name):
        model = ferzoo.load(name, weights=weights)
    else:
        weights = None
        model = ferzoo.build(name, num_classes=7, **kwargs)
    rows = []
    tta = getattr(model, "tta", None) or "none"
    check = E.sample_images(model, count=64, seed=1)
    ref = E.keras_probabilities(model, check, tta=True)  # the card's augmentation, as the exports compute it
    x1 = check[:1]
    tag = weights or "random"
    shape = "x".join(map(str, model.input_shape_hwc))
    with tempfile.TemporaryDirectory(prefix="ferzoo-bench-") as tmp:
        tmp = Path(tmp)
        wpath = W.save(model, tmp / f"{name}.weights.h5")
        call = tf.function(model.predict_step, autograph=False)  # the probabilities, with the card's augmentation
        xt = tf.constant(x1)
        rows.append({"model": name, "weights": tag, "input": shape, "tta": tta, "format": "Keras .weights.h5",
                     "size_bytes": wpath.stat().st_size, "latency_ms": _median_ms(lambda: call(xt).numpy(), runs),
                     "max_abs_diff": 0.0, "top1_agreement": 1.0})

        t = time.perf_counter()
        sm = E.write_savedmodel(model, tmp / "sm")
        sm_seconds = time.perf_counter() - t
        fn = tf.saved_model.load(str(sm)).signatures["serving_default"]
        par = E.parity(ref, E.run_savedmodel(sm, check))
        rows.append({"model": name, "weights": tag, "input": shape, "tta": tta, "format": "SavedModel",
                     "size_bytes": E._tree_size(sm),
                     "latency_ms": _median_ms(lambda: fn(images=xt)["probabilities"].numpy(), runs),
                     "max_abs_diff": par["max_abs_diff"], "top1_agreement": par["top1_agreement"],
                     "export_seconds": round(sm_seconds, 1)})

        representative = E.sample_images(model, split="train", count=calibration, seed=0)
        for quantize in E.QUANTIZATIONS:
            t = time.perf_counter()
            flat = E.convert_tflite(model, quantize, representative if quantize == "int8" else None, saved_model=sm)
            seconds = time.perf_counter() - t
            par = E.parity(ref, E.run_tflite(E.interpreter(model_content=flat), check))
            run = tflite_call(E.interpreter(model_content=flat, num_threads=threads), x1)
            rows.append({"model": name, "weights": tag, "input": shape, "tta": tta, "format": f"TFLite {quantize}",
                         "size_bytes": len(flat), "latency_ms": _median_ms(run, runs),
                         "max_abs_diff": par["max_abs_diff"], "top1_agreement": par["top1_agreement"],
                         "export_seconds": round(seconds, 1)})
            print(f"  {name} TFLite {quantize}: {len(flat)} bytes", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    import ferzoo

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", help="default: every built-in model")
    p.add_argument("--weights", nargs="*", default=["deep_emotion=fer2013"], metavar="MODEL=TAG")
    p.add_argument("--input-shape", nargs="*", default=[], metavar="MODEL=HxWxC")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration", type=int, default=100, help="int8 calibration images (synthetic train)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    tags = dict(item.split("=", 1) for item in args.weights)
    shapes = {k: [int(v) for v in s.split("x")] for k, s in (i.split("=", 1) for i in args.input_shape)}
    models = args.models or [m for m in ferzoo.list_models() if ferzoo.model_info(m).plugin in ("deep_emotion", "dan")]
    rows = []
    for name in models:
        print(f"benchmarking {name} ...", file=sys.stderr)
        rows += bench_model(name, tags.get(name), args.runs, args.threads, args.calibration, shapes.get(name))
    import tensorflow as tf

    print(f"\nTF {tf.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.threads} interpreter threads, median of {args.runs} batch-1 calls\n")
    print("| model | weights | input | TTA | format | size | latency (ms) | max abs dp | top-1 agreement |")
    print("|---|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        size = f"{r['size_bytes'] / 1e6:.2f} MB" if r["size_bytes"] >= 1e5 else f"{r['size_bytes'] / 1e3:.1f} kB"
        print(f"| {r['model']} | {r['weights']} | {r['input']} | {r['tta']} | {r['format']} | {size} | {r['latency_ms']:.2f} | "
              f"{r['max_abs_diff']:.2e} | {100 * r['top1_agreement']:.1f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
