"""Faces from photos vs registered crops: the same faces classified as crops and through the whole photo path.

    python benchmarks/bench_photo_path.py --data-dir DIR [--split val] [--limit 300] [--model daf_cnn_compact]
        [--weights fer2013] [--upscale 2,3,4] [--frames 320x240,640x480,480x480] [--min-confidence P] [--out DIR]
    python benchmarks/bench_photo_path.py --small          # a few seconds: a CI smoke run, no data set needed

For each face of an image-folder split (FER-2013 layout ``<split>/<class>/*.jpg``; ``--limit N`` takes a seeded
sample of N, keeping the classes' shares), with the model and weights named (default: the embedded default
``ferzoo.weights.DEFAULT_MODEL`` . ``DEFAULT_WEIGHTS``):

* **crops**: the model on the file itself, as ``ferzoo predict --no-detect`` would see it, in one pass and with
  the card's test-time augmentation (TTA);
* **photo path**: the face upscaled (``--upscale``: 48 px faces are too small for MTCNN to find reliably with
  room for its box; it finds faces of about 20 px and more, and on a bare 48x48 FER-2013 crop its box is about
  the whole image, README "Crop rule") and pasted at a random place into a larger generated frame (sizes from
  ``--frames``; backgrounds in turn: Gaussian ``noise`` around mid-gray, ``flat`` gray, a colour ``gradient``),
  then ``ferzoo.predict.predict_files`` on the frames in memory: MTCNN, eye alignment, the card's crop rule,
  the model with its card's TTA. A face counts as found when a detected box overlaps the pasted face with IoU
  >= 0.3 (the best such box is its answer); a face not found counts as wrong in the photo-path accuracy.

Reported: crop accuracy (one pass and TTA), photo-path accuracy (TTA, and one pass from the same aligned
crops), the share of faces MTCNN found, the accuracy on found faces next to the crop accuracy on the same
faces, **ratio** = photo-path accuracy / crop accuracy (TTA; target >= 0.97) and ``ratio_single`` (one pass),
the detector's box relative to the pasted face (side ratio, centre offset: what ``box_jitter`` should cover),
breakdowns by background, frame size and upscale factor, and the crop rule each found face was cut by
(recorded through ``ferzoo.faces.CROP_OBSERVERS``) against the card's ``input_spec.face_crop``.

Writes ``photo_path.json`` (everything, one entry per face) and ``photo_path.md`` (the tables) in ``--out``,
and prints the command it was run with. ``--small`` builds a FER-layout folder of a few 48x48 gray faces made
from the bundled demo photo (``ferzoo.demo_image()``), labelled with the model's own one-pass answer on each
crop (it tests the plumbing, not the model) and uses two small frame sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BACKGROUNDS = ("noise", "flat", "gradient")
IMAGE_ENDINGS = (".jpg", ".jpeg", ".png", ".bmp")
FOUND_IOU = 0.3


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"bench_photo_path.py: error: {message}\n")
        raise SystemExit(2)


def _fail(message: str) -> None:
    sys.stderr.write(f"bench_photo_path.py: error: {message}\n")
    raise SystemExit(2)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            _fail(f"--frames {text}: give sizes as WxH[,WxH...], e.g. 320x240,640x480")
        if min(w, h) < 64 or max(w, h) > 2048:
            _fail(f"--frames {part}: each side must be in [64, 2048]")
        sizes.append((w, h))
    return sizes


def _parse_factors(text: str) -> list[float]:
    try:
        factors = [float(v) for v in text.split(",")]
    except ValueError:
        _fail(f"--upscale {text}: give factors as numbers, e.g. 2,3,4")
    if any(not 1.0 <= f <= 10.0 for f in factors):
        _fail(f"--upscale {text}: each factor must be in [1, 10]")
    return factors


def list_split(root: Path, limit: int | None, seed: int) -> tuple[list[tuple[Path, str]], list[str]]:
    """``(path, class)`` of a seeded sample of ``limit`` files (all when None), classes kept in proportion."""
    import numpy as np

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    items = [(f, c) for c in classes for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_ENDINGS]
    if limit is not None and limit < len(items):
        order = np.random.default_rng(seed).permutation(len(items))[:limit]
        items = [items[i] for i in sorted(order)]
    return items, classes


def make_frame(face, size, background, rng):
    """(frame RGB uint8, pasted box [x, y, side, side]) with the face (a square RGB array) at a random place."""
    import numpy as np

    w, h = size
    side = face.shape[0]
    if background == "noise":
        frame = rng.normal(128.0, 40.0, (h, w, 1)).repeat(3, axis=2)
    elif background == "flat":
        frame = np.full((h, w, 3), float(rng.uniform(90, 170)))
    else:
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        a, b = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
        t = (xx + yy)[..., None] / 2.0
        frame = a * (1 - t) + b * t
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    frame[y:y + side, x:x + side] = face
    return frame, [x, y, side, side]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def small_dataset(folder: Path, model, n: int = 8) -> Path:
    """A FER-layout split of ``n`` 48x48 gray faces from the demo photo, each labelled with the model's own
    one-pass answer (so the crop accuracy is 1 and the ratios are defined)."""
    import numpy as np
    from PIL import Image

    import ferzoo

    demo = Image.fromarray(ferzoo.demo_image()).convert("L")
    rng = np.random.default_rng(0)
    faces = []
    for i in range(n):
        im = demo.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else demo
        arr = np.asarray(im.resize((48, 48), Image.BICUBIC), np.float32)
        arr = np.clip(arr * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15), 0, 255).astype(np.uint8)
        faces.append(arr)
    kept, model.tta = model.tta, None
    try:
        probs = model.predict_on_batch(model.preprocess([np.repeat(f[..., None], 3, 2) for f in faces]))
    finally:
        model.tta = kept
    labels = [model.class_names[int(j)] for j in np.argmax(np.asarray(probs), axis=1)]
    root = folder / "val"
    for i, (face, label) in enumerate(zip(faces, labels)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(root / label / f"demo_{i}.png")
    return folder


def _classify(model, crops, tta, batch=128):
    import numpy as np

    kept, model.tta = model.tta, tta
    try:
        out = [np.asarray(model.predict_on_batch(model.preprocess(list(crops[i:i + batch]))))
               for i in range(0, len(crops), batch)]
    finally:
        model.tta = kept
    return np.concatenate(out) if out else np.zeros((0, model.num_classes))


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def _share(num, den):
    return None if not den else num / den


def _quantiles(values):
    import numpy as np

    if not values:
        return None
    q = np.percentile(np.asarray(values, float), [5, 50, 95])
    return {"p5": round(float(q[0]), 4), "median": round(float(q[1]), 4), "p95": round(float(q[2]), 4)}


def main(argv=None) -> int:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="an image-folder data set: DATA_DIR/SPLIT/CLASS/*.jpg")
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=300, help="a seeded sample of this many faces (0: all)")
    p.add_argument("--model", default=None, help="model name (default: the embedded default)")
    p.add_argument("--weights", default=None, help="a tag or a .weights.h5 file (default: the default's tag)")
    p.add_argument("--upscale", default="2,3,4", help="factors the faces are enlarged by, taken in turn")
    p.add_argument("--frames", default="320x240,640x480,480x480", help="frame sizes WxH, taken in turn")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="the face detector's (default: ferzoo.faces.DEFAULT_MIN_CONFIDENCE, as ferzoo predict)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_photo_path_out", help="folder for photo_path.json and photo_path.md")
    p.add_argument("--small", action="store_true", help="a few generated faces (CI smoke run)")
    args = p.parse_args(argv)

    # every check before TensorFlow loads
    if args.limit < 0:
        _fail(f"--limit {args.limit}: give a number of faces >= 1, or 0 for all")
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        _fail(f"--min-confidence {args.min_confidence:g}: give a number from 0 to 1")
    factors = _parse_factors(args.upscale)
    sizes = _parse_sizes("256x192,320x240" if args.small and args.frames == p.get_default("frames")
                         else args.frames)
    if not args.small:
        if not args.data_dir:
            _fail("--data-dir: give the data set's folder (DATA_DIR/SPLIT/CLASS/*.jpg), or --small")
        if not Path(args.data_dir).is_dir():
            _fail(f"--data-dir {args.data_dir}: no such folder")
        split_dir = Path(args.data_dir) / args.split
        if not split_dir.is_dir():
            _fail(f"--split {args.split}: no folder {split_dir}")
        if not any(d.is_dir() for d in split_dir.iterdir()):
            _fail(f"--split {args.split}: {split_dir} has no class folders")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir}: is a file; give a folder")
    command = "python benchmarks/bench_photo_path.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(command, flush=True)

    import numpy as np
    from PIL import Image

    import ferzoo
    from ferzoo import faces as F
    from ferzoo import weights as W
    from ferzoo.predict import predict_files

    t0 = time.perf_counter()
    name = args.model or W.DEFAULT_MODEL
    tag = args.weights if args.weights is not None else (W.DEFAULT_WEIGHTS if args.model in (None, W.DEFAULT_MODEL)
                                                         else None)
    if tag is None:
        _fail(f"--weights: give a tag or a weights file for --model {name}")
    model = ferzoo.load(name, tag)
    card = getattr(model, "weights_card", None) or {}
    card_tta = model.tta
    card_rule = ((card.get("input_spec") or {}).get("face_crop")) or card.get("face_crop")
    rule, note = F.crop_for_card(card, f"{name}.{tag}")

    tmp = None
    if args.small:
        tmp = tempfile.TemporaryDirectory(prefix="ferzoo-photo-path-")
        data_dir, split = small_dataset(Path(tmp.name), model), "val"
    else:
        data_dir, split = Path(args.data_dir), args.split
    items, folder_classes = list_split(Path(data_dir) / split, args.limit or None, args.seed)
    if not items:
        _fail(f"--split {split}: no images under {Path(data_dir) / split}")
    unknown = sorted({c for _, c in items} - set(model.class_names))
    if unknown:
        _fail(f"--data-dir: classes {unknown} are not among the model's {list(model.class_names)}")
    index = {c: i for i, c in enumerate(model.class_names)}
    crops = [F.read_image(path) for path, _ in items]
    labels = np.array([index[c] for _, c in items])

    # crops: one pass and the card's TTA
    crop_single = np.argmax(_classify(model, crops, None), axis=1)
    crop_tta = np.argmax(_classify(model, crops, card_tta), axis=1) if card_tta else crop_single

    # frames
    rng = np.random.default_rng(args.seed)
    frames, pasted, configs = [], [], []
    for i, crop in enumerate(crops):
        background = BACKGROUNDS[i % len(BACKGROUNDS)]
        factor = factors[(i // len(BACKGROUNDS)) % len(factors)]
        size = sizes[(i // (len(BACKGROUNDS) * len(factors))) % len(sizes)]
        side = int(round(max(crop.shape[:2]) * factor))
        side = min(side, min(size) - 2)
        face = np.asarray(Image.fromarray(crop).resize((side, side), Image.BICUBIC))
        frame, box = make_frame(face, size, background, rng)
        frames.append(frame)
        pasted.append(box)
        configs.append({"upscale": f"{factor:g}x", "frame": f"{size[0]}x{size[1]}", "background": background})

    # the photo path, frames of one size together; the crop rule of every aligned face is recorded
    observed: list = []

    def observer(face, crop_rule, out_size):
        observed.append((face, crop_rule))

    detector = F.FaceDetector(args.min_confidence)
    notes: list[str] = []
    records_of: dict[int, list[dict]] = {}
    faces_of: dict[int, list] = {}
    t_path = time.perf_counter()
    F.CROP_OBSERVERS.append(observer)
    try:
        order = sorted(range(len(frames)), key=lambda k: configs[k]["frame"])
        for start in range(0, len(order), 32):
            chunk = order[start:start + 32]
            observed.clear()
            recs = predict_files([frames[k] for k in chunk], model=model, detector=detector, progress=False,
                                 say=notes.append)
            ok = [r for r in recs if r["status"] == "ok"]
            if len(ok) != len(observed):
                raise RuntimeError(f"{len(ok)} faces classified but {len(observed)} crops observed")
            seen = iter(observed)
            for r in recs:
                k = chunk[int(r["file"].strip("<>").split()[-1])]
                records_of.setdefault(k, [])
                faces_of.setdefault(k, [])
                if r["status"] == "ok":
                    records_of[k].append(r)
                    faces_of[k].append(next(seen))
    finally:
        F.CROP_OBSERVERS.remove(observer)
    path_seconds = time.perf_counter() - t_path

    per_face = []
    found_crops, found_idx = [], []
    for k, (path, cls) in enumerate(items):
        best, best_iou = None, 0.0
        for j, r in enumerate(records_of.get(k, [])):
            v = iou(r["box"], pasted[k])
            if v > best_iou:
                best, best_iou = j, v
        entry = {"file": str(path), "class": cls, **configs[k], "pasted_box": pasted[k],
                 "crop_single": model.class_names[int(crop_single[k])], "crop_tta": model.class_names[int(crop_tta[k])],
                 "detections": len(records_of.get(k, [])), "found": best is not None and best_iou >= FOUND_IOU,
                 "iou": round(best_iou, 4), "photo": None, "photo_single": None, "box": None, "crop_rule": None}
        if entry["found"]:
            r = records_of[k][best]
            face, used = faces_of[k][best]
            x, y, s, _ = pasted[k]
            bx, by, bw, bh = r["box"]
            entry.update(photo=r["class"], box=r["box"], crop_rule=used.to_dict(),
                         face_confidence=r["face_confidence"], box_side_ratio=round(max(bw, bh) / s, 4),
                         box_offset=[round((bx + bw / 2 - x - s / 2) / s, 4), round((by + bh / 2 - y - s / 2) / s, 4)])
            found_crops.append(F.align_crop(frames[k], face, used, tuple(
                model.eval_crop) if getattr(model, "eval_crop", None) else model.input_shape_hwc[:2]))
            found_idx.append(k)
        per_face.append(entry)
    # the faces not found: did MTCNN see them below the confidence the photo path keeps?
    missed = [k for k, e in enumerate(per_face) if not e["found"]]
    if missed:
        low = F.FaceDetector(min_confidence=0.0)
        for k, dets in zip(missed, low.detect([frames[k] for k in missed])):
            scores = [d.confidence for d in dets if iou(d.box, pasted[k]) >= FOUND_IOU]
            per_face[k]["missed_best_confidence"] = round(float(max(scores)), 4) if scores else None
    if found_crops:
        single = np.argmax(_classify(model, found_crops, None), axis=1)
        for k, j in zip(found_idx, single):
            per_face[k]["photo_single"] = model.class_names[int(j)]

    n = len(items)
    found = [e for e in per_face if e["found"]]

    def acc(key, subset):
        return _share(sum(e[key] == e["class"] for e in subset), len(subset)) if subset else None

    photo_acc = _share(sum(e["found"] and e["photo"] == e["class"] for e in per_face), n)
    photo_single_acc = _share(sum(e["found"] and e["photo_single"] == e["class"] for e in per_face), n)
    crop_acc, crop_single_acc = acc("crop_tta", per_face), acc("crop_single", per_face)
    expected = rule.to_dict()
    mismatches = sum(e["crop_rule"] != expected for e in found)
    rules_used = sorted({json.dumps(e["crop_rule"], sort_keys=True) for e in found})

    def breakdown(key):
        rows = {}
        for value in sorted({str(e[key]) for e in per_face}, key=lambda v: (len(v), v)):
            sub = [e for e in per_face if str(e[key]) == value]
            sub_found = [e for e in sub if e["found"]]
            rows[value] = {"faces": len(sub), "found_share": _share(len(sub_found), len(sub)),
                           "crop_accuracy": acc("crop_tta", sub), "photo_accuracy": _share(
                               sum(e["found"] and e["photo"] == e["class"] for e in sub), len(sub)),
                           "accuracy_on_found": acc("photo", sub_found)}
        return rows

    result = {
        "command": command, "model": name, "weights": tag, "tta": card_tta, "data_dir": str(data_dir),
        "split": split, "limit": args.limit, "seed": args.seed, "faces": n, "classes": list(model.class_names),
        "frames": [f"{w}x{h}" for w, h in sizes], "upscale": factors, "backgrounds": list(BACKGROUNDS),
        "crop_accuracy": crop_acc, "crop_accuracy_single": crop_single_acc,
        "photo_accuracy": photo_acc, "photo_accuracy_single": photo_single_acc,
        "found_share": _share(len(found), n), "accuracy_on_found": acc("photo", found),
        "accuracy_on_found_single": acc("photo_single", found),
        "crop_accuracy_on_found": acc("crop_tta", found), "crop_accuracy_single_on_found": acc("crop_single", found),
        "ratio": None if not crop_acc else photo_acc / crop_acc,
        "ratio_single": None if not crop_single_acc else photo_single_acc / crop_single_acc,
        "ratio_on_found": (None if not found or not acc("crop_tta", found)
                           else acc("photo", found) / acc("crop_tta", found)),
        "missed": len(missed), "missed_seen_below_threshold": sum(
            per_face[k]["missed_best_confidence"] is not None for k in missed),
        "missed_confidence": _quantiles([per_face[k]["missed_best_confidence"] for k in missed
                                         if per_face[k]["missed_best_confidence"] is not None]),
        "detector_min_confidence": detector.min_confidence,
        "extra_detections": sum(max(0, e["detections"] - int(e["found"])) for e in per_face),
        "box_side_ratio": _quantiles([e["box_side_ratio"] for e in found]),
        "box_offset_x": _quantiles([e["box_offset"][0] for e in found]),
        "box_offset_y": _quantiles([e["box_offset"][1] for e in found]),
        "card_face_crop": card_rule, "card_note": note, "expected_rule": expected, "rules_used": rules_used,
        "rule_mismatches": mismatches,
        "by_background": breakdown("background"), "by_frame": breakdown("frame"), "by_upscale": breakdown("upscale"),
        "photo_path_seconds": round(path_seconds, 2), "total_seconds": round(time.perf_counter() - t0, 2),
        "notes": list(dict.fromkeys(notes)), "per_face": per_face,
    }
    md = markdown(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    with W.atomic_path(out_dir / "photo_path.json") as tmp_json:
        tmp_json.write_text(json.dumps(result, indent=1) + "\n")
    with W.atomic_path(out_dir / "photo_path.md") as tmp_md:
        tmp_md.write_text(md)
    print(md)
    print(f"wrote {out_dir / 'photo_path.json'} and {out_dir / 'photo_path.md'}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def markdown(r: dict) -> str:
    tta = r["tta"] or "none"
    lines = [f"`{r['command']}`", "",
             f"{r['model']}.{r['weights']} (card TTA: {tta}), {r['faces']} faces of `{r['split']}`; frames "
             f"{', '.join(r['frames'])}, faces enlarged {', '.join(f'{f:g}x' for f in r['upscale'])}, backgrounds "
             f"{', '.join(r['backgrounds'])} (every combination in turn); photo path {r['photo_path_seconds']} s.", "",
             "| measure | one pass % | card TTA % |", "|---|---|---|",
             f"| crops (the files as they are) | {_pct(r['crop_accuracy_single'])} | {_pct(r['crop_accuracy'])} |",
             f"| photo path (detect, align, crop, classify; a face not found is wrong) | "
             f"{_pct(r['photo_accuracy_single'])} | {_pct(r['photo_accuracy'])} |",
             f"| photo path on the faces MTCNN found | {_pct(r['accuracy_on_found_single'])} | "
             f"{_pct(r['accuracy_on_found'])} |",
             f"| crops of those same found faces | {_pct(r['crop_accuracy_single_on_found'])} | "
             f"{_pct(r['crop_accuracy_on_found'])} |", "",
             f"* faces MTCNN found: **{_pct(r['found_share'])}%** ({r['extra_detections']} other detections); of "
             f"the {r['missed']} missed, {r['missed_seen_below_threshold']} had a box on the face below the "
             f"confidence kept ({r['detector_min_confidence']}; their best: {_q(r['missed_confidence'])})",
             f"* photo path / crops: **{_ratio(r['ratio'])}** with the card's TTA (target >= 0.97), "
             f"{_ratio(r['ratio_single'])} one pass; on found faces {_ratio(r['ratio_on_found'])}",
             f"* MTCNN's box vs the pasted face: longer side {_q(r['box_side_ratio'])}x, centre offset x "
             f"{_q(r['box_offset_x'])}, y {_q(r['box_offset_y'])} face sides (median [p5, p95])",
             f"* crop rule: the card says {json.dumps(r['card_face_crop'])}; used on found faces: "
             f"{'; '.join(r['rules_used']) or '-'}; faces cut by another rule than the card's: "
             f"**{r['rule_mismatches']}**", "",
             "| by | value | faces | found % | crops % (TTA) | photo path % (TTA) | on found % |",
             "|---|---|---|---|---|---|---|"]
    for by in ("background", "frame", "upscale"):
        for value, row in r[f"by_{by}"].items():
            lines.append(f"| {by} | {value} | {row['faces']} | {_pct(row['found_share'])} | "
                         f"{_pct(row['crop_accuracy'])} | {_pct(row['photo_accuracy'])} | "
                         f"{_pct(row['accuracy_on_found'])} |")
    return "\n".join(lines) + "\n"


def _ratio(v):
    return "-" if v is None else f"{v:.3f}"


def _q(q):
    return "-" if q is None else f"{q['median']:.3f} [{q['p5']:.3f}, {q['p95']:.3f}]"


if __name__ == "__main__":
    sys.exit(main())
