"""Training throughput of every built-in model, with and without mixed precision and XLA, next to a bare
ResNet-18, and the input pipeline against in-memory input: the GPU benchmark of the speed-and-scale issue.

    # on a GPU machine (the whole table, paper input sizes):
    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_train_throughput.py --json gpu.json
    # anywhere, as CI does (tiny inputs, two steps; checks that the script runs, not the speed):
    python benchmarks/bench_train_throughput.py --small

For each model: images/s of ``train_on_batch`` at its paper input size (``default_input_shape``) and a batch
size (``--batch-size``, default 64; 8 with ``--small``) under the four settings float32 / mixed precision
(float16 on a GPU, bfloat16 on a CPU) x graph / XLA (``jit_compile``). The reference is the bare ResNet-18
(keras-hub layout: torchvision's ResNet-18 without its classifier, a 7-way Dense head, softmax CE) at
224x224x3; DAN-sized models are judged as a ratio to it (target >= 0.6 on a GPU). The pipeline rows time a
training epoch fed by ``ferzoo.data.prepare`` on generated JPEG files (decode, resize, the recipe's
augmentation) against the same steps fed from a tensor already in memory (target >= 0.9).
Every number is the median of ``--repeats`` timings of ``--steps`` steps after a warm-up (tracing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _policy_for(mixed: bool) -> str:
    import tensorflow as tf

    if not mixed:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def _time_steps(step, steps: int, repeats: int) -> float:
    step()  # trace
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _bare_resnet18(shape, num_classes=7):
    import keras

    from ferzoo.backbones.resnet import resnet18_features

    inputs = keras.Input(shape)
    features = resnet18_features(keras.layers.Rescaling(1 / 255.0)(inputs), prefix="resnet18")
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(num_classes, dtype="float32")(pooled)
    return keras.Model(inputs, logits)


def train_throughput(name: str, shape, batch: int, steps: int, repeats: int, mixed: bool, xla: bool) -> float:
    import keras
    import numpy as np

    import ferzoo

    keras.mixed_precision.set_global_policy(_policy_for(mixed))
    try:
        keras.utils.set_random_seed(0)
        if name == "resnet18":
            model = _bare_resnet18(shape)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=xla,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        else:
            spec = ferzoo.model_info(name)
            extra = {"backbone_weights": None} if "backbone_weights" in (spec.init_config or ()) else {}
            model = ferzoo.build(name, num_classes=7, input_shape=shape, **extra)
            model.compile()
            model.jit_compile = xla
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (batch, *shape)).astype("float32")
        y = rng.integers(0, 7, batch).astype("int32")
        seconds = _time_steps(lambda: model.train_on_batch(x, y), steps, repeats)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return steps * batch / seconds


def pipeline_ratio(name: str, shape, batch: int, steps: int, repeats: int, folder: Path) -> dict:
    """One model's fit epoch from JPEG files through ferzoo.data.prepare vs from an in-memory tensor."""
    import keras
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    import ferzoo
    from ferzoo.data import prepare
    from ferzoo.data.augment import build_augmentation

    rng = np.random.default_rng(0)
    n = batch * steps
    h, w, c = shape
    for i in range(n):
        d = folder / "train" / ("happy" if i % 2 else "sad")
        d.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"{i:05d}.jpg", quality=90)
    spec = ferzoo.model_info(name)
    extra = {"backbone_weights": None} if "backbone_weights" in (spec.init_config or ()) else {}
    keras.utils.set_random_seed(0)
    model = ferzoo.build(name, num_classes=2, class_names=["happy", "sad"], input_shape=shape, **extra)
    model.compile()
    rec = model.recipe()
    augment = build_augmentation(rec["augmentation"], shape, seed=0) if rec.get("augmentation") else None
    files = ferzoo.get_dataset("folder", data_dir=str(folder), split="train", color="rgb" if c == 3 else "grayscale")
    piped = prepare(files, shape, batch_size=batch, augment=augment, drop_remainder=True)
    x = tf.constant(rng.uniform(0, 255, (batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, 2, batch).astype("int32"))
    memory = tf.data.Dataset.from_tensors((x, y)).repeat(steps)

    def epoch(ds):
        return lambda: model.fit(ds, epochs=1, verbose=0)

    epoch(memory)()  # trace once for both
    t_pipe = statistics.median(_time(epoch(piped)) for _ in range(repeats))
    t_mem = statistics.median(_time(epoch(memory)) for _ in range(repeats))
    return {"pipeline_img_s": n / t_pipe, "in_memory_img_s": n / t_mem, "ratio": t_mem / t_pipe}


def _shape_for(name: str, small: bool):
    """The paper input size; with ``small``, the smallest size the model accepts (at least 32 x 32)."""
    import ferzoo

    spec = ferzoo.model_info(name)
    shape = tuple(spec.default_input_shape)
    if small and not spec.input_shapes:
        shape = (max(32, int(spec.min_size or 32)),) * 2 + (shape[-1],)
    return shape


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", help="default: every built-in model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-xla", action="store_true", help="skip the XLA rows")
    p.add_argument("--small", action="store_true", help="tiny inputs and two steps: a smoke run for CI")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    import tensorflow as tf

    import ferzoo

    names = args.models or sorted(m for m in ferzoo.list_models() if ferzoo.model_info(m).plugin in BUILT_IN_PLUGINS)
    batch, steps, repeats = (8, 2, 1) if args.small else (args.batch_size, args.steps, args.repeats)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    rows = []
    for name in ["resnet18", *names]:
        if name == "resnet18":
            shape = (32, 32, 3) if args.small else (224, 224, 3)
        else:
            shape = _shape_for(name, args.small)
        for mixed in (False, True):
            for xla in (False,) if args.no_xla or args.small else (False, True):
                ips = train_throughput(name, shape, batch, steps, repeats, mixed, xla)
                rows.append({"model": name, "input": "x".join(map(str, shape)), "precision": _policy_for(mixed),
                             "xla": xla, "images_per_second": ips})
                print(json.dumps(rows[-1]), flush=True)
    base = {(r["precision"], r["xla"]): r["images_per_second"] for r in rows if r["model"] == "resnet18"}
    for r in rows:
        r["ratio_to_resnet18"] = r["images_per_second"] / base[(r["precision"], r["xla"])]
    pipes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names[:1] if args.small else names:
            shape = _shape_for(name, args.small)
            pipes[name] = pipeline_ratio(name, shape, batch, steps, repeats, Path(tmp) / name)
            print(name, "pipeline", json.dumps(pipes[name]), flush=True)
    print(f"\ndevice: {device}; batch {batch}; {steps} steps x {repeats} repeats\n")
    print("| model | input | precision | XLA | images/s | / bare ResNet-18 |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['precision']} | {'yes' if r['xla'] else 'no'} | "
              f"{r['images_per_second']:,.1f} | {r['ratio_to_resnet18']:.2f} |")
    print("\n| model | pipeline img/s | in-memory img/s | ratio |")
    print("|---|---:|---:|---:|")
    for name, r in pipes.items():
        print(f"| {name} | {r['pipeline_img_s']:,.1f} | {r['in_memory_img_s']:,.1f} | {r['ratio']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "rows": rows, "pipeline": pipes}, indent=2))
    return 0


#: the plugins that ship with ferzoo (third-party models are measured when named with --models)
BUILT_IN_PLUGINS = {"deep_emotion", "dan", "daf_cnn", "fdrl", "lnlattennet"}

if __name__ == "__main__":
    sys.exit(main())
