"""Training-step throughput of a DAF-CNN model on generated images (no data set needed).

``python -m ferzoo_plugins.daf_cnn.benchmark [--model daf_cnn_compact] [--batch-size 128] [--steps 20] [--fit]``

Builds the model, compiles it with its recipe (optimizer, label smoothing, TC loss with the rule update) and
times ``train_on_batch`` on random 0..255 images after ``--warmup`` steps (graph tracing). Prints images/s and
the time one FER-2013 epoch (28,709 images) would take at that rate. ``--fit`` times ``model.fit`` instead, on
generated 48 x 48 faces through ``ferzoo.data.prepare`` with the recipe's augmentation (the tf.data pipeline
shares the CPU with the step, as in a real run); the second of two epochs is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

FER2013_TRAIN = 28_709


def measure(model_name: str = "daf_cnn_compact", batch_size: int = 128, steps: int = 20, warmup: int = 3,
            seed: int = 0, recipe: str = "fer2013", **config) -> dict:
    import keras
    import numpy as np

    import ferzoo

    keras.utils.set_random_seed(seed)
    model = ferzoo.build(model_name, num_classes=7, recipe=recipe, **config)
    model.compile()
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch_size, *model.input_shape_hwc)).astype("float32")
    y = rng.integers(0, 7, batch_size).astype("int32")
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    ips = steps * batch_size / seconds
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    return {"model": model_name, "input_shape": list(model.input_shape_hwc), "batch_size": batch_size,
            "steps": steps, "seconds": round(seconds, 3), "images_per_second": round(ips, 1),
            "fer2013_epoch_seconds": round(FER2013_TRAIN / ips, 1), "trainable_params": trainable,
            "cpu_count": os.cpu_count()}


def measure_fit(model_name: str = "daf_cnn_compact", batch_size: int = 128, steps: int = 20, seed: int = 0,
                recipe: str = "fer2013", **config) -> dict:
    import time as _time

    import keras
    import numpy as np

    import ferzoo
    from ferzoo.data import prepare
    from ferzoo.data.augment import build_augmentation

    keras.utils.set_random_seed(seed)
    model = ferzoo.build(model_name, num_classes=7, recipe=recipe, **config)
    model.compile()
    rec = model.recipe()
    shape = model.input_shape_hwc
    augment = build_augmentation(rec["augmentation"], shape, seed=seed) if rec.get("augmentation") else None
    data = ferzoo.get_dataset("synthetic", per_class=max(1, batch_size * steps // 7 + 1), seed=seed)
    pipe = prepare(data, shape, batch_size=batch_size, shuffle=2048, seed=seed, augment=augment, cache=True,
                   drop_remainder=True, repeat=True)

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = _time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = _time.perf_counter() - self.start

    clock = Clock()
    model.fit(pipe, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock])
    ips = steps * batch_size / clock.seconds
    return {"model": model_name, "mode": "fit with augmentation", "input_shape": list(shape),
            "batch_size": batch_size, "steps": steps, "seconds": round(clock.seconds, 3),
            "images_per_second": round(ips, 1), "fer2013_epoch_seconds": round(FER2013_TRAIN / ips, 1),
            "augmentation": rec.get("augmentation"),
            "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_weights)),
            "cpu_count": os.cpu_count()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="daf_cnn_compact")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--recipe", default="fer2013")
    p.add_argument("--fit", action="store_true", help="time model.fit with the recipe's augmentation")
    args = p.parse_args(argv)
    if args.fit:
        result = measure_fit(args.model, args.batch_size, args.steps, recipe=args.recipe)
    else:
        result = measure(args.model, args.batch_size, args.steps, args.warmup, recipe=args.recipe)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
