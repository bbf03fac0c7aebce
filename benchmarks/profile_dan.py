"""Where DAN's CPU time goes: TensorFlow's profiler on batch-1 inference (Keras ``predict_on_batch`` and the
frozen graph of ``ferzoo.export.frozen_predictor``) and on a training step, summarised by op type.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/profile_dan.py [--size 224] [--calls 20] [--train-steps 3] [--top 8]

For each path it prints the wall time per call and the share of the profiled host time per TensorFlow op type
(self time, as TensorBoard's "framework op stats" tool reports it; ``IDLE`` is time the executor waited).
Random weights and pixels, 7 classes, TensorFlow's default threading.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import sys
import tempfile
import time


def op_type_shares(run, calls: int) -> tuple[float, list[tuple[str, float, int]]]:
    """Profile ``calls`` calls of ``run``: (seconds per call, [(op type, share of self time, occurrences)])."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin  # TensorBoard's converter

    logdir = tempfile.mkdtemp(prefix="ferzoo-profile-")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(calls):
        run()
    seconds = (time.perf_counter() - start) / calls
    tf.profiler.experimental.stop()
    planes = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    raw, _ok = plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    table = json.loads(raw)[0]
    cols = [c["id"] for c in table["cols"]]
    by_type, count = collections.Counter(), collections.Counter()
    for row in table["rows"]:
        rec = dict(zip(cols, (cell.get("v") if isinstance(cell, dict) else cell for cell in row["c"])))
        if rec.get("host_or_device") not in (None, "Host"):
            continue
        by_type[rec["type"]] += float(rec["total_self_time"] or 0.0)
        count[rec["type"]] += int(rec["occurrences"] or 0)
    total = sum(by_type.values()) or 1.0
    return seconds, [(t, v / total, count[t] // calls) for t, v in by_type.most_common()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--calls", type=int, default=20, help="profiled batch-1 calls per inference path")
    p.add_argument("--train-steps", type=int, default=3, help="profiled training steps at batch 32")
    p.add_argument("--top", type=int, default=8, help="op types listed per path")
    args = p.parse_args(argv)
    for name in ("size", "calls", "train_steps", "top"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    import keras
    import numpy as np

    import ferzoo
    from ferzoo.export import frozen_predictor

    keras.utils.set_random_seed(0)
    model = ferzoo.build("dan", num_classes=7, input_shape=(args.size, args.size, 3), backbone_weights=None)
    model.compile()
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 255, (1, args.size, args.size, 3)).astype("float32")
    x32 = rng.uniform(0, 255, (32, args.size, args.size, 3)).astype("float32")
    y32 = rng.integers(0, 7, 32).astype("int32")
    frozen = frozen_predictor(model)
    paths = {"keras predict_on_batch, batch 1": (lambda: model.predict_on_batch(x1), args.calls),
             "frozen graph, batch 1": (lambda: frozen(x1), args.calls),
             "train_on_batch, batch 32": (lambda: model.train_on_batch(x32, y32), args.train_steps)}
    for label, (run, calls) in paths.items():
        run()
        run()  # tracing and oneDNN primitive creation stay out of the profile
        seconds, shares = op_type_shares(run, calls)
        print(f"\n{label}: {1000 * seconds:.1f} ms per call ({calls} profiled calls, {args.size}x{args.size})")
        print("| op type | share of host self time | ops per call |")
        print("|---|---:|---:|")
        for op_type, share, per_call in shares[:args.top]:
            print(f"| {op_type} | {100 * share:.1f} % | {per_call} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
