"""Candidate default weights side by side as TFLite: file size, batch-1 latency and agreement with Keras.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_default.py daf_cnn_compact.fer2013 daf_cnn_compact.fer2013_kd \
        --data-dir ../shared/datasets/fer2013 [--split val] [--limit 0] [--rounds 5] [--runs 200] [--threads 2]

For each ``MODEL.TAG``: the shipped weights file's size; the float32 TFLite export (one pass, as ``ferzoo export
--format tflite`` writes it) run by LiteRT on every face of the FER-2013 split against Keras' one pass on the
same faces (top-1 agreement, max |p difference|, both accuracies); and the TFLite batch-1 latency (median of
``--runs`` ``set_tensor`` + ``invoke`` + ``get_tensor`` calls on one face). The weights take turns ``--rounds``
times (interleaved, so that both see the same load on a shared machine); the median over the rounds is
reported, and the ratio to the first weights named. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import median_seconds, tflite_call  # noqa: E402  (benchmarks/timing.py: the scripts' shared timing rule)


def _median_ms(fn, runs: int, warmup: int = 10) -> float:
    return 1000 * median_seconds(fn, runs, warmup)


def _faces(model, data_dir, split: str, limit: int):
    """Every face of the split (or the first ``limit``) as the model's input batch, with labels in its order."""
    import numpy as np

    from ferzoo import weights as W
    from ferzoo.data import prepare
    from ferzoo.labels import label_mapping

    ds = W.open_split("fer2013", data_dir, split, None)
    mapping = label_mapping(list(ds.class_names), model.class_names)
    xs, ys = [], []
    for xb, yb in prepare(ds, model.input_shape_hwc, batch_size=256):
        xs.append(np.asarray(xb, np.float32))
        ys.append(np.asarray([mapping[int(v)] for v in np.asarray(yb)]))
        if limit and sum(len(x) for x in xs) >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x[:limit], y[:limit]) if limit else (x, y)


def measure(items, data_dir, split: str, limit: int, rounds: int, runs: int, threads: int) -> list[dict]:
    import numpy as np

    import ferzoo
    from ferzoo import export as E
    from ferzoo import weights as W

    rows, calls = [], []
    faces = None
    for item in items:
        name, tag = item.split(".", 1)
        model = ferzoo.load(name, weights=tag)
        if faces is None:
            faces = _faces(model, data_dir, split, limit)
        x, y = faces
        keras_p = E.keras_probabilities(model, x, batch_size=256)  # one pass, as the TFLite export computes
        with E.with_tta(model, "none"):  # what `ferzoo export --format tflite` writes: one pass
            flat = E.convert_tflite(model, "none")
        tflite_p = E.run_tflite(E.interpreter(model_content=flat, num_threads=threads), x)
        par = E.parity(keras_p, tflite_p)
        rows.append({"weights": item, "file_mb": W.resolve(name, tag)[0].stat().st_size / 1e6,
                     "tflite_mb": len(flat) / 1e6, "faces": len(x),
                     "keras_accuracy": float(np.mean(keras_p.argmax(1) == y)),
                     "tflite_accuracy": float(np.mean(tflite_p.argmax(1) == y)),
                     "top1_agreement": par["top1_agreement"], "max_abs_diff": par["max_abs_diff"], "latency": []})
        calls.append(tflite_call(E.interpreter(model_content=flat, num_threads=threads), x[:1]))
        print(f"{item}: exported and compared on {len(x)} faces", file=sys.stderr)
    for _ in range(rounds):  # the weights take turns
        for row, call in zip(rows, calls):
            row["latency"].append(_median_ms(call, runs))
    for row in rows:
        row["latency_ms"] = statistics.median(row.pop("latency"))
    return rows


def table(rows: list[dict]) -> str:
    base = rows[0]["latency_ms"]
    out = ["| weights | file MB | TFLite MB | faces | Keras one pass | TFLite | top-1 agreement | max abs p diff "
           "| TFLite batch-1 ms | vs first |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['weights']} | {r['file_mb']:.2f} | {r['tflite_mb']:.2f} | {r['faces']} "
                   f"| {100 * r['keras_accuracy']:.2f}% | {100 * r['tflite_accuracy']:.2f}% "
                   f"| {100 * r['top1_agreement']:.2f}% | {r['max_abs_diff']:.1e} | {r['latency_ms']:.3f} "
                   f"| {r['latency_ms'] / base:.2f}x |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", metavar="MODEL.TAG")
    p.add_argument("--data-dir", required=True, help="the FER-2013 folder")
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=0, help="only the first N faces (0: all)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    bad = [w for w in args.weights if "." not in w]
    if bad:
        p.error(f"weights: MODEL.TAG expected, got {bad[0]!r}")
    rows = measure(args.weights, args.data_dir, args.split, args.limit, args.rounds, args.runs, args.threads)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
