"""Images per second of the training input pipeline (read + decode + convert + batch + augment).

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_pipeline.py --fer-dir ../shared/datasets/fer2013 [--write]

Cases:
* FER-2013 train (28,709 48x48 gray JPEGs, the image-folder release): decode only; decode + the
  Deep-Emotion FER-2013 recipe (flip, rotation, zoom, translation, shear; the 0.5 oversampler);
* a generated 224x224 RGB JPEG data set (``--rgb-n`` images, written to a temporary folder, read with the
  ``folder`` reader): decode only; decode + the DAN RAF-DB recipe (flip, p=0.2 rotation + padded crop,
  torchvision random erasing); decode + the DAN AffectNet recipe (+ p=0.7 affine, class-balanced sampler).

Each case runs ``--epochs`` passes after one warm-up pass and reports the best; the machine's load average
is printed with the results because a shared machine slows everything down. ``--write`` replaces the
``data`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEEP_EMOTION_FER = {"flip": True, "rotation": 10, "zoom": 0.1, "translate": 0.1, "shear": {"radians": 0.1}}
DAN_RAFDB = {"flip": True, "random_apply": {"p": 0.2, "ops": {"affine": {"degrees": 20}, "crop_padding": 32}},
             "random_erasing": {"p": 0.5, "scale": [0.02, 0.25], "ratio": [0.3, 3.3],
                                "value": [123.675, 116.28, 103.53]}}
DAN_AFFECTNET = {"flip": True, "affine": {"degrees": 20, "translate": [0.2, 0.2], "scale": [0.8, 1.0], "p": 0.7},
                 "random_erasing": {"p": 0.5, "scale": [0.02, 0.33], "ratio": [0.3, 3.3],
                                    "value": [123.675, 116.28, 103.53]}}


def recipe_augmentation(model: str, dataset: str, fallback: dict) -> dict:
    """The model plugin's own recipe when it is installed, else the copy above."""
    try:
        import ferzoo
        from ferzoo.recipes import resolve_recipe

        return dict(resolve_recipe(ferzoo.model_info(model).recipe_table(), dataset, model).get("augmentation")
                    or fallback)
    except Exception:  # noqa: BLE001
        return fallback


def make_rgb(folder: str, n: int, size: int = 224, seed: int = 0) -> None:
    """``n`` 224x224 RGB JPEGs (smooth gradients + noise, ~15-25 KB like real face crops) in 7 class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    for i in range(n):
        c = classes[i % 7]
        os.makedirs(os.path.join(folder, c), exist_ok=True)
        base = np.stack([120 + 80 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy + k) for k in range(3)], -1)
        img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, c, f"{i:06d}.jpg"), quality=90)


def measure(ds, n_epochs: int) -> tuple[float, int]:
    """Best images/s over ``n_epochs`` full passes (after one warm-up pass) and the images per pass."""
    best = 0.0
    for epoch in range(n_epochs + 1):
        start, n = time.perf_counter(), 0
        for x, _ in ds:
            n += int(x.shape[0])
        rate = n / (time.perf_counter() - start)
        if epoch > 0:
            best = max(best, rate)
    return best, n


def train_throughput(model_name: str, shape, batch: int, steps: int = 8) -> float:
    """Images/s of ``model.fit`` (forward + backward + update) on random in-memory tensors, after a warm-up."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(0)
    model = ferzoo.build(model_name, input_shape=shape)
    model.compile()
    x = np.random.default_rng(0).uniform(0, 255, (batch * steps, *shape)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, model.num_classes, batch * steps).astype(np.int32)
    model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - start)


def pipeline(name, data_dir, shape, batch, augmentation=None, sampler=None, limit=None, **options):
    import ferzoo
    from ferzoo.data import prepare, with_class_names
    from ferzoo.data.augment import apply_sampler, build_augmentation

    ds = ferzoo.get_dataset(name, data_dir=data_dir, split="train", **options)
    names, n = ds.class_names, len(ds.labels)
    if sampler:
        ds = apply_sampler(ds, sampler, seed=0)
    if limit:
        ds = with_class_names(ds.take(limit), names)
    aug = build_augmentation(augmentation, shape, seed=0) if augmentation else None
    return prepare(ds, shape, batch_size=batch, class_names=names, shuffle=min(n, 20000), seed=0, augment=aug), n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "fer2013"))
    p.add_argument("--rgb-n", type=int, default=1024, help="images in the generated 224x224 RGB data set")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="measured passes per case (after one warm-up)")
    p.add_argument("--skip-fer", action="store_true")
    p.add_argument("--train-models", default="deep_emotion:48x48x1:128,dan:224x224x3:32",
                   help="model:HxWxC:batch list whose fit() throughput on in-memory tensors is measured for "
                        "comparison ('' to skip)")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md (section data)")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rows = []
    load_before = os.getloadavg()
    if not args.skip_fer:
        fer_aug = recipe_augmentation("deep_emotion", "fer2013", DEEP_EMOTION_FER)
        for label, aug, sampler in (("decode only", None, None),
                                    (f"decode + Deep-Emotion augmentation `{_short(fer_aug)}`", fer_aug, None),
                                    ("decode + augmentation + oversampler 0.5", fer_aug, {"oversample": 0.5})):
            ds, n = pipeline("fer2013", args.fer_dir, (48, 48, 1), args.batch, aug, sampler)
            rate, n = measure(ds, args.epochs)
            rows.append(("FER-2013 train, 48x48x1 JPEG", label, n, rate))
            print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        make_rgb(os.path.join(tmp, "train"), args.rgb_n)
        raf_aug = recipe_augmentation("dan", "rafdb", DAN_RAFDB)
        aff_aug = recipe_augmentation("dan", "affectnet8", DAN_AFFECTNET)
        for label, aug, sampler in (("decode only", None, None),
                                    (f"decode + DAN RAF-DB augmentation `{_short(raf_aug)}`", raf_aug, None),
                                    (f"decode + DAN AffectNet augmentation `{_short(aff_aug)}` + balanced sampler",
                                     aff_aug, "balanced")):
            ds, n = pipeline("folder", tmp, (224, 224, 3), args.batch, aug, sampler)
            rate, n = measure(ds, args.epochs)
            rows.append((f"generated {args.rgb_n} x 224x224x3 JPEG", label, n, rate))
            print(rows[-1], flush=True)
    for item in filter(None, args.train_models.split(",")):
        model, shape, batch = item.split(":")
        shape = tuple(int(v) for v in shape.split("x"))
        try:
            rate = train_throughput(model, shape, int(batch))
        except Exception as exc:  # noqa: BLE001 - a model plugin may be missing
            print(f"cannot measure {model}: {exc}", file=sys.stderr)
            continue
        rows.append((f"model `{model}` training step, {'x'.join(map(str, shape))}, batch {batch}",
                     "`fit()` on in-memory tensors (no input pipeline), recipe optimizer", int(batch) * 8, rate))
        print(rows[-1], flush=True)
    load_after = os.getloadavg()
    command = "TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_pipeline.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]) if a != "--write")
    text = report(rows, args, tf.__version__, load_before, load_after, command)
    print(text)
    if args.write:
        write_section(text)


def _short(spec: dict) -> str:
    import json

    return json.dumps(spec, separators=(",", ":"))


def report(rows, args, tf_version, load_before, load_after, command) -> str:
    lines = [
        "## Input pipelines",
        "",
        f"Training input pipeline throughput: files -> `ferzoo.get_dataset` (parallel `tf.io.decode_image`) -> "
        f"`ferzoo.data.prepare` (convert, shuffle, batch {args.batch}) -> recipe augmentation on the batch "
        f"(`ferzoo.data.augment.build_augmentation`), best of {args.epochs} full passes after a warm-up.",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU, "
        f"TensorFlow {tf_version}; load average {load_before[0]:.1f} before / {load_after[0]:.1f} after "
        f"(other jobs shared the 2 cores, so these are lower bounds).",
        f"Command: `{command.strip()}`",
        "",
        "| data | pipeline | images per epoch | images/s |",
        "|---|---|---:|---:|",
    ]
    for data, label, n, rate in rows:
        lines.append(f"| {data} | {label} | {n} | {rate:,.0f} |")
    return "\n".join(lines)


NOTES = "<!-- data: notes (kept by --write) -->"


def write_section(text: str) -> None:
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as f:
        content = f.read()
    start, end = "<!-- section: data -->", "<!-- end: data -->"
    i, j = content.index(start) + len(start), content.index(end)
    notes = content[i:j].find(NOTES)  # hand-written notes below this marker are kept
    kept = content[i:j][notes:] if notes >= 0 else NOTES + "\n"
    content = content[:i] + "\n" + text + "\n\n" + kept + content[j:]
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write(content)
    os.replace(tmp, path)
    print(f"wrote {path} (section data)")


if __name__ == "__main__":
    main()
