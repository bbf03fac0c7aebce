"""Does a network learn at all? A few passes over a small, in-memory slice of FER-2013's train split.

    python benchmarks/probe_daf_cnn_lr.py VARIANT [--data-dir ../shared/datasets/fer2013] [--faces 1024] [--passes 8]
    python benchmarks/probe_daf_cnn_lr.py --gradients daf_cnn|daf_cnn_compact [--data-dir ...]

VARIANT is ``+``-joined words: ``compact`` (``daf_cnn_compact`` with its default recipe; otherwise ``daf_cnn`` with
the ``fer2013`` recipe's config and optimizer), ``lr1e3`` (AdamW 1e-3, weight decay 5e-4: the recipe's first rate),
``sgd`` (SGD 0.01, momentum 0.9, Nesterov), ``lr1e4`` (Adam 1e-4),
``noatt`` (``attention=false``), ``nodrop`` (``dropout=0``). No augmentation, batch 64, mixed bfloat16, seed 0; prints the
train accuracy and loss after each pass. It shows which settings start learning soonest; it cannot tell a slow start
from none (the DAF-CNN paper network at AdamW 1e-3 stayed at 25% here, and in its full run left the majority class
at its third epoch; see ``plugins/daf_cnn/README.md``, "Why 1e-4, not 1e-3" and its correction).

``--gradients``: for one batch of 64 at initialisation, |gradient| and |kernel| of every kernel (cross-entropy on
the logits), and their ratio: how much larger a step is, relative to the weights, near the input than at the head.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WORDS = ("compact", "lr1e3", "sgd", "lr1e4", "noatt", "nodrop")


def _faces(data_dir: str, n: int):
    import numpy as np

    import ferzoo
    from ferzoo.data import prepare

    ds = ferzoo.get_dataset("fer2013", data_dir=data_dir, split="train", shuffle=True, seed=0)
    xs, ys = [], []
    for xb, yb in prepare(ds, (48, 48, 1), batch_size=256):
        xs.append(np.asarray(xb, np.float32))
        ys.append(np.asarray(yb))
        if sum(map(len, xs)) >= n:
            break
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _model(words: set[str]):
    import ferzoo

    if "compact" in words:
        return ferzoo.build("daf_cnn_compact", input_shape=(48, 48, 1)), None
    overrides = {}  # over the recipe's config (caller config wins)
    if "noatt" in words:
        overrides["attention"] = False
    if "nodrop" in words:
        overrides["dropout"] = 0.0
    return ferzoo.build("daf_cnn", recipe="fer2013", **overrides), "fer2013"


def probe(variant: str, data_dir: str, faces: int, passes: int) -> None:
    import keras

    words = set(variant.split("+"))
    unknown = words - set(WORDS) - {"asis"}
    if unknown:
        raise SystemExit(f"probe: unknown variant words {sorted(unknown)}; known: {list(WORDS)} (or asis)")
    x, y = _faces(data_dir, faces)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model, recipe = _model(words)
    optimizer = None  # the recipe's
    if "lr1e3" in words:
        optimizer = keras.optimizers.AdamW(1e-3, weight_decay=5e-4)
    if "sgd" in words:
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
    if "lr1e4" in words:
        optimizer = keras.optimizers.Adam(1e-4)
    model.compile(optimizer=optimizer, recipe=recipe)
    start = time.time()
    history = model.fit(x, y, batch_size=64, epochs=passes, verbose=0, shuffle=True).history
    print(variant, "train accuracy per pass:", " ".join(f"{a:.3f}" for a in history["accuracy"]),
          "| loss:", " ".join(f"{v:.3f}" for v in history["loss"]), f"| {time.time() - start:.0f} s")


def gradients(name: str, data_dir: str) -> None:
    import keras
    import tensorflow as tf

    x, y = _faces(data_dir, 64)
    keras.utils.set_random_seed(0)
    model, _ = _model({"compact"} if name == "daf_cnn_compact" else set())
    with tf.GradientTape() as tape:
        logits = model(x, training=True)["logits"]
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    print(f"| {name} kernel | kernel norm | gradient norm | ratio |\n|---|---:|---:|---:|")
    for var, grad in zip(model.trainable_variables, grads):
        if var.path.endswith("kernel") and grad is not None:
            w, g = float(tf.norm(var)), float(tf.norm(grad))
            print(f"| {var.path} | {w:.3f} | {g:.3g} | {g / w:.2f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant", nargs="?", default="asis")
    parser.add_argument("--data-dir", default="../shared/datasets/fer2013")
    parser.add_argument("--faces", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--gradients", choices=["daf_cnn", "daf_cnn_compact"])
    args = parser.parse_args(argv)
    if args.gradients:
        gradients(args.gradients, args.data_dir)
    else:
        probe(args.variant, args.data_dir, args.faces, args.passes)


if __name__ == "__main__":
    main()
