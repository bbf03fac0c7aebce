"""The detector alone vs the whole `ferzoo predict`, side by side on the same folder of photos.

    python benchmarks/bench_photo.py [--photos 32] [--runs 3] [--size 640x480]

The folder is generated: the bundled public-domain face (ferzoo.demo_image) pasted at random places and
scales onto smooth backgrounds, plus every fourth photo without a face, saved as JPEG. Three timings per run,
interleaved, each over the whole folder:

* ``mtcnn``     the detector as its own documentation uses it: read each file (Pillow), one
                ``MTCNN().detect_faces(image)`` call per photo;
* ``detector``  the detector as ferzoo calls it: ferzoo.faces.read_image + FaceDetector.detect, photos of
                one size batched 8 at a time;
* ``predict``   ``ferzoo.predict_files(folder)``: listing, reading, detection, alignment, cropping, batched
                classification with the default model, the records.

Prints photos/s for each (median of the runs) and predict's ratio to both; the target is >= 0.8.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    import numpy as np
    from PIL import Image

    import ferzoo

    rng = np.random.default_rng(seed)
    face = Image.fromarray(ferzoo.demo_image())
    w, h = size
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        c = rng.uniform(40, 200, 3)
        base = np.stack([c[0] + 50 * xx, c[1] + 40 * yy, c[2] - 30 * xx * yy], -1)
        photo = Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
        if i % 4 != 3:
            side = int(rng.integers(90, min(w, h) // 2))
            x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            photo.paste(face.resize((side, side), Image.BICUBIC), (x, y))
        path = folder / f"photo_{i:03d}.jpg"
        photo.save(path, quality=90)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size", default="640x480", help="photo size WxH")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    import numpy as np
    from PIL import Image

    from ferzoo import faces as F
    from ferzoo.predict import load_model, predict_files

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.photos, (w, h))
        mtcnn = F._shared_mtcnn()
        detector = F.FaceDetector()
        model = load_model(None, None, say=lambda line: None)

        def run_mtcnn():
            found = 0
            for path in paths:
                with Image.open(path) as im:
                    found += len(mtcnn.detect_faces(np.asarray(im.convert("RGB"))))
            return found

        def run_detector():
            images = [F.read_image(path) for path in paths]
            found = 0
            for start in range(0, len(images), 8):
                found += sum(len(f) for f in detector.detect(images[start:start + 8]))
            return found

        def run_predict():
            records = predict_files([folder], model=model, detector=detector, progress=False, say=lambda l: None)
            return sum(r["status"] == "ok" for r in records)

        jobs = {"mtcnn": run_mtcnn, "detector": run_detector, "predict": run_predict}
        found = {name: fn() for name, fn in jobs.items()}  # warm-up: traces, first calls
        times: dict[str, list[float]] = {name: [] for name in jobs}
        for _ in range(args.runs):
            for name, fn in jobs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    rate = {name: args.photos / statistics.median(t) for name, t in times.items()}
    import tensorflow as tf

    print(f"{args.photos} photos {w}x{h} JPEG ({sum(1 for i in range(args.photos) if i % 4 != 3)} with a face), "
          f"{args.runs} interleaved runs, median; TensorFlow {tf.__version__}, {os.cpu_count()} CPUs; "
          f"{F.describe_detector()['detector']} {F.describe_detector()['version']}; model {model.model_name}")
    for name in jobs:
        print(f"  {name:<9} {rate[name]:6.2f} photos/s   faces found {found[name]:3d}   "
              f"runs {', '.join(f'{t:.2f}' for t in times[name])} s")
    print(f"  predict / mtcnn    = {rate['predict'] / rate['mtcnn']:.2f}")
    print(f"  predict / detector = {rate['predict'] / rate['detector']:.2f}   (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
