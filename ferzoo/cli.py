"""``ferzoo`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _face_margin(text):
    """An argparse type: ``--face-margin``, a number in ferzoo.faces.MARGIN_RANGE."""
    from ferzoo.faces import MARGIN_RANGE

    lo, hi = MARGIN_RANGE
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [{lo}, {hi}], got {text!r}") from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"must be a number in [{lo}, {hi}], got {value:g}")
    return value


def _crop_override(args, model):
    """The card's crop rule with ``--face-margin`` / ``--align`` put in (None: the card's rule as it is)."""
    if args.face_margin is None and args.align is None:
        return None
    from ferzoo.faces import FaceCrop, crop_for_card
    from ferzoo.predict import weights_label

    base, _note = crop_for_card(getattr(model, "weights_card", None), weights_label(model))
    crop = FaceCrop(margin=base.margin if args.face_margin is None else args.face_margin,
                    align=base.align if args.align is None else args.align, detector=base.detector)
    _say(f"face crop: {crop.describe()} (--face-margin / --align; the card's rule: {base.describe()})")
    return crop


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (argparse names the option in its error)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


TF_COMMANDS = ("train", "evaluate", "predict", "explain", "export", "convert")


def quiet_tensorflow(verbose: bool, command: str | None = None) -> None:
    """Keep TensorFlow's start-up log lines (oneDNN, CPU features, absl's pre-init warning) off the terminal
    unless --verbose. Some are written by C++ code before any log level applies, so TensorFlow is imported
    here with the process's stderr pointed at /dev/null for the duration of the import."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if command not in TF_COMMANDS or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except Exception:  # noqa: BLE001 - re-raised below with stderr back
                pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import tensorflow  # noqa: F401,E402 - a failed import raises here, visibly


def _kv(items):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --config expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _shape(text):
    if not text:
        return None
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise SystemExit(f"error: --input-shape expects H,W,C (e.g. 96,96,3), got {text!r}") from None
    if len(shape) != 3:
        raise SystemExit(f"error: --input-shape expects H,W,C (e.g. 96,96,3), got {text!r}")
    return shape


def cmd_plugins(args):
    import ferzoo

    rows = ferzoo.list_plugins()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        what = ", ".join(f"{k}: {', '.join(r[k])}" for k in ("models", "losses", "datasets", "weights") if r[k])
        status = f"ERROR {r['error']}" if r["error"] else what or "(registers nothing)"
        print(f"{r['name']:<16} {r['version'] or '?':<10} {status}")
    return 1 if args.strict and any(r["error"] for r in rows) else 0


def cmd_models(args):
    import ferzoo

    for name in ferzoo.list_models():
        spec = ferzoo.model_info(name)
        shape = "x".join(map(str, spec.default_input_shape))
        print(f"{name:<16} {shape:<10} plugin {spec.plugin:<14} {spec.description}")
    return 0


def cmd_datasets(args):
    import ferzoo
    from ferzoo.registry import get_registry

    for name in ferzoo.list_datasets():
        spec = get_registry().dataset(name)
        print(f"{name:<12} splits {','.join(spec.splits) or '-':<16} plugin {spec.plugin:<10} {spec.description}")
    return 0


def cmd_losses(args):
    import ferzoo
    from ferzoo.registry import get_registry

    for name in ferzoo.list_losses():
        spec = get_registry().loss(name)
        print(f"{name:<20} plugin {spec.plugin:<14} {spec.description}")
    return 0


def cmd_weights(args):
    import ferzoo
    from ferzoo import weights as W

    print(f"{'name.tag':<28} {'source':<34} {'available':<12} {'data set':<12} {'split':<10} accuracy")
    for name in ferzoo.list_models():
        registered = W.entries(name)
        for tag, where in sorted(W.known_tags(name).items()):
            if where.startswith("local store"):
                path = W.store_dir(name, tag) / f"{name}{W.WEIGHTS_SUFFIX}"
                try:
                    card, available = W.read_card(path), "local"
                except (OSError, ValueError) as exc:
                    card, available = {}, f"bad card ({exc})"
            else:
                card = registered[(name, tag)]
                available = W.availability(name, tag, card)
            metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
            acc = metrics.get("accuracy")
            print(f"{name + '.' + tag:<28} {where:<34} {available:<12} {str(card.get('dataset', '-')):<12} "
                  f"{str(metrics.get('split', '-')):<10} {'-' if acc is None else f'{acc:.3f}'}")
    from ferzoo.backbones.pretrained import list_backbones

    for backbone, tag, _path in list_backbones():
        print(f"{backbone + '.' + tag:<28} {'backbone store (init only)':<34} {'local':<12} {'-':<12} {'-':<10} -")
    return 0


def cmd_train(args):
    from ferzoo.train import train

    result = train(args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                   batch_size=args.batch_size, tag=args.tag, output=args.output, recipe=args.recipe,
                   strategy=args.strategy, seed=args.seed, mixed_precision=args.mixed_precision,
                   limit=args.limit, verbose=1 if sys.stdout.isatty() else 2, config=_kv(args.config),
                   input_shape=_shape(args.input_shape), val_split=args.val_split,
                   dataset_options=_kv(args.dataset_option), init_from=args.init_from, resume=args.resume)
    if result["report"] is not None:
        print(result["report"])
    handle = result["weights"] if args.output else result["tag"]
    print(f"trained {args.model} on {args.dataset} in {result['seconds']:.1f} s; weights: {result['weights']} "
          f"(load with ferzoo.load({args.model!r}, weights={handle!r}))")
    return 0


def _weights_name(weights: str, model: str) -> str:
    """A short name for weights: the tag, or the file's name (its folder's when the file is MODEL.weights.h5)."""
    path = Path(str(weights))
    name = path.name[: -len(".weights.h5")] if path.name.endswith(".weights.h5") else path.name
    return path.parent.name if name == model and path.parent.name not in ("", ".") else name


def cmd_evaluate(args):
    import ferzoo
    from ferzoo.data import prepare
    from ferzoo.plots import write_evaluation

    model = ferzoo.load(args.model, weights=args.weights)
    ds = ferzoo.get_dataset(args.dataset, data_dir=args.data_dir, split=args.split)
    if args.tta is None and model.tta:
        print(f"ferzoo: test-time augmentation {model.tta!r} (the weights' card; --tta none for one pass)",
              file=sys.stderr)
    crop = {"load_size": model.eval_crop, "crop": "center"} if model.eval_crop else {}  # as the card's metrics
    report = model.evaluate(prepare(ds, model.input_shape_hwc, batch_size=args.batch_size, **crop), verbose=0,
                            tta="model" if args.tta is None else args.tta)
    print(json.dumps(report, indent=2) if args.json else report)
    folder = args.output_dir
    short = _weights_name(args.weights, args.model)
    if folder is None:
        folder = Path("evaluation") / f"{args.model}.{short}.{args.dataset}.{args.split}"
        note = " (the default; --output-dir chooses)"
    else:
        note = ""
    meta = {"model": args.model, "weights": str(args.weights), "dataset": args.dataset, "split": args.split,
            "data_dir": args.data_dir, "command": "ferzoo " + " ".join(sys.argv[1:]) if sys.argv[1:] else None}
    paths = write_evaluation(report, folder, meta=meta,
                             title=f"{args.model} ({short}) on {args.dataset} {args.split}")
    print(f"ferzoo: report written to {folder}{note}: " + ", ".join(p.name for p in paths.values()),
          file=sys.stderr)
    return 0


def _say(line: str) -> None:
    print(f"ferzoo: {line}", file=sys.stderr)


def _input_paths(args, what: str) -> list[str]:
    """The PATH arguments (plus the bundled photo with --demo); a model name given as a path is an error that
    says to use --model."""
    import ferzoo

    paths = list(args.paths) + ([str(ferzoo.demo_image(path_only=True))] if args.demo else [])
    if not paths:
        raise SystemExit(f"error: give photos, folders or videos to {what}, or --demo for the bundled photo")
    models = set(ferzoo.list_models())
    for p in args.paths:
        if p in models and not os.path.exists(p):
            raise SystemExit(f"error: {p!r} is a model name, not a file: use --model {p} (ferzoo {args.command} "
                             f"PATH... --model NAME --weights TAG)")
    return paths


def _summary(records) -> tuple[str, bool]:
    """One line about the inputs and whether any failed."""
    from collections import Counter

    from ferzoo.predict import failed

    per_input: dict = {}
    for r in records:
        per_input.setdefault((r["file"], r["frame"]), []).append(r["status"])
    kinds = Counter()
    for statuses in per_input.values():
        status = statuses[0]
        kinds["ok" if status == "ok" else "no face" if not failed(status) else "failed"] += 1
    faces = sum(1 for r in records if r["status"] == "ok")
    bad = [r for r in records if failed(r["status"])]
    line = (f"{len(per_input)} image(s) and video frame(s): {kinds['ok']} with faces ({faces} face(s)), "
            f"{kinds['no face']} without, {kinds['failed']} failed")
    if bad:
        first = bad[0]
        line += f" (e.g. {first['file']}: {first['status']})"
    return line, bool(bad)


def _where(record) -> str:
    return record["file"] + (f" frame {record['frame']}" if record["frame"] is not None else "")


def cmd_predict(args):
    from ferzoo.predict import _check_output, load_model, predict_files

    paths = _input_paths(args, "classify")
    _check_output(args.output)
    model = load_model(args.model, args.weights, _say)
    if args.top_k > model.num_classes:
        raise SystemExit(f"error: --top-k must be at most {model.num_classes} (the model's class count), "
                         f"got {args.top_k}")
    crop = None if args.no_detect else _crop_override(args, model)
    records = predict_files(paths, model=model, detect=not args.no_detect, every=args.every, output=args.output,
                            annotate=args.annotate, crop=crop, progress=False if args.quiet else None, say=_say)
    for r in records:
        if r["status"] != "ok":
            print(f"{_where(r)}: {r['status']}")
            continue
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: args.top_k]
        where = "" if args.no_detect else f"  (face {r['face']}, box {','.join(str(v) for v in r['box'])})"
        print(f"{_where(r)}: " + ", ".join(f"{name} {p:.3f}" for name, p in top) + where)
    line, any_failed = _summary(records)
    _say(line)
    if args.output:
        _say(f"records written to {args.output}")
    if args.annotate:
        _say(f"annotated images in {args.annotate}")
    return 1 if any_failed else 0


def cmd_explain(args):
    from ferzoo.predict import explain_files, load_model

    paths = _input_paths(args, "explain")
    model = load_model(args.model, args.weights, _say)
    crop = None if args.no_detect else _crop_override(args, model)
    records = explain_files(paths, model=model, output=args.output, methods=args.method, detect=not args.no_detect,
                            every=args.every, crop=crop, size=args.size, progress=False if args.quiet else None,
                            say=_say)
    for r in records:
        if r["status"] != "ok":
            _say(f"{_where(r)}: {r['status']}")
        for path in (r.get("explanations") or {}).values():
            print(path)
    line, any_failed = _summary(records)
    _say(line)
    return 1 if any_failed else 0


def cmd_export(args):
    try:
        from ferzoo.export import export
    except ImportError:
        print("error: export to SavedModel/TFLite is not available in this version of ferzoo", file=sys.stderr)
        return 2
    result = export(args.model, weights=args.weights, format=args.format, quantize=args.quantize,
                    output=args.output)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_convert(args):
    import ferzoo
    from ferzoo.specs import resolve

    from ferzoo.backbones.pretrained import BACKBONES, convert_resnet18

    if args.model in BACKBONES:
        path = convert_resnet18(args.checkpoint, tag=args.tag, output=args.output, **_kv(args.config))
        print(f"wrote {path} (use it with --config backbone_weights={args.tag})")
        return 0
    spec = ferzoo.model_info(args.model)
    if spec.converter is None:
        print(f"error: model {args.model!r} has no weight converter", file=sys.stderr)
        return 2
    path = resolve(spec.converter)(args.checkpoint, tag=args.tag, output=args.output, **_kv(args.config))
    print(f"wrote {path}")
    return 0


def _add_crop_options(s) -> None:
    """``--face-margin`` and ``--align`` (read by :func:`_crop_override`) for ``predict`` and ``explain``."""
    s.add_argument("--face-margin", type=_face_margin, metavar="M",
                   help="crop a square of the detector box's longer side x (1 + 2M) (default: the card's rule, printed)")
    s.add_argument("--align", choices=["eyes", "none"], help="rotate the crop so the eyes are level (default: the card's)")


def build_parser() -> argparse.ArgumentParser:
    from ferzoo.recipes import TTA_OPTIONS

    p = argparse.ArgumentParser(prog="ferzoo", description="Facial expression recognition model zoo.")
    p.add_argument("--version", action="version", version=f"ferzoo {__import__('ferzoo').__version__}")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("plugins", help="list plugins, their versions, what they register and load errors")
    s.add_argument("--json", action="store_true")
    s.add_argument("--strict", action="store_true", help="exit 1 if a plugin failed to load")
    s.set_defaults(fn=cmd_plugins)
    sub.add_parser("models", help="list models").set_defaults(fn=cmd_models)
    sub.add_parser("datasets", help="list data set readers").set_defaults(fn=cmd_datasets)
    sub.add_parser("losses", help="list losses").set_defaults(fn=cmd_losses)
    sub.add_parser("weights", help="list weights (registry and local store)").set_defaults(fn=cmd_weights)

    s = sub.add_parser("train", help="train a model with its recipe; the best weights go to the local store")
    s.add_argument("model")
    s.add_argument("--dataset", default="synthetic")
    s.add_argument("--data-dir")
    s.add_argument("--epochs", type=_int_at_least(1), help="default: the recipe's (printed)")
    s.add_argument("--batch-size", type=_int_at_least(1), help="per replica; default: the recipe's (printed)")
    s.add_argument("--tag", help="store tag (default: the data set name)")
    s.add_argument("--output", help="write weights + card here instead of the store")
    s.add_argument("--recipe", help="recipe name (default: the data set's, else 'default')")
    s.add_argument("--strategy", default="auto", choices=["auto", "default", "one-device", "mirrored", "multiworker"],
                   help="tf.distribute strategy (auto: all local GPUs, else the CPU; multiworker: the machines "
                        "TF_CONFIG lists, each running this same command)")
    s.add_argument("--mixed-precision", nargs="?", const="auto", default=None, metavar="float16|bfloat16",
                   help="train in mixed precision; bare: float16 on a GPU, bfloat16 on a CPU (printed)")
    s.add_argument("--seed", type=_int_at_least(0), default=0)
    s.add_argument("--limit", type=_int_at_least(1), help="use only the first N examples of each split (smoke runs)")
    s.add_argument("--val-split",
                   help="split that validates and selects (default: the recipe's, e.g. test for RAF-DB; none: no validation)")
    s.add_argument("--init-from", metavar="TAG|FILE",
                   help="start from these weights (fine-tuning); layers that do not fit are listed")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --output (or the store) from its last checkpoint")
    s.add_argument("--dataset-option", nargs="*", metavar="KEY=VALUE",
                   help="options for the data set reader, e.g. val_folds=1 fold=0 for the lab data sets")
    s.add_argument("--config", nargs="*", metavar="KEY=VALUE", help="model config overrides")
    s.add_argument("--input-shape", metavar="H,W,C", help="override the model's input size, e.g. 96,96,3")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="accuracy, balanced accuracy, macro-F1, confusion matrix (PNG + reports)")
    s.add_argument("model")
    s.add_argument("--weights", required=True, help="tag or .weights.h5 path")
    s.add_argument("--dataset", required=True)
    s.add_argument("--data-dir")
    s.add_argument("--split", default="val")
    s.add_argument("--batch-size", type=_int_at_least(1), default=64)
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--tta", choices=TTA_OPTIONS,
                   help="test-time augmentation (default: the weights' card's; flip: mean with the mirror image; "
                        "tencrop: mean over the 4 corner and centre crops of the image enlarged 13/12 times and "
                        "their mirror images)")
    s.add_argument("--output-dir", metavar="DIR",
                   help="write confusion_matrix.png, report.json and report.md here "
                        "(default: evaluation/MODEL.WEIGHTS.DATASET.SPLIT, printed)")
    s.set_defaults(fn=cmd_evaluate)

    from ferzoo.weights import DEFAULT_MODEL, DEFAULT_WEIGHTS

    photo_help = (f"(default: {DEFAULT_MODEL} with its embedded weights {DEFAULT_WEIGHTS}, printed)")
    s = sub.add_parser("predict", help="classify the faces in photos, folders (recursively) and videos")
    s.add_argument("paths", nargs="*", metavar="PATH", help="photos, folders, videos")
    s.add_argument("--model", help=f"model name {photo_help}")
    s.add_argument("--weights", help="tag or .weights.h5 file (without --model: the model its card names)")
    s.add_argument("--demo", action="store_true", help="also classify the bundled public-domain photo")
    s.add_argument("--output", metavar="FILE", help="also write the records to FILE.json or FILE.csv")
    s.add_argument("--annotate", metavar="DIR", help="write each photo / sampled frame with boxes and labels here")
    s.add_argument("--no-detect", action="store_true", help="each image is an already cropped face (FER-2013, CK+48)")
    s.add_argument("--every", type=_int_at_least(1), metavar="N", help="read every N-th video frame (default 10)")
    _add_crop_options(s)
    s.add_argument("--top-k", type=_int_at_least(1), default=3, help="classes printed per face")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("explain", help="per face, heat maps of what the model looks at (PNG overlays)")
    s.add_argument("paths", nargs="*", metavar="PATH", help="photos, folders, videos")
    s.add_argument("--model", help=f"model name {photo_help}")
    s.add_argument("--weights", help="tag or .weights.h5 file")
    s.add_argument("--method", action="append", metavar="M",
                   help="explanation method, repeat for several (default: the model's own and gradcam++)")
    s.add_argument("--output", required=True, metavar="DIR", help="folder for the pictures")
    s.add_argument("--demo", action="store_true", help="also explain the bundled public-domain photo")
    s.add_argument("--no-detect", action="store_true", help="each image is an already cropped face")
    s.add_argument("--every", type=_int_at_least(1), metavar="N", help="read every N-th video frame (default 10)")
    _add_crop_options(s)
    s.add_argument("--size", type=_int_at_least(64), default=256, help="height of each picture in pixels")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_explain)

    s = sub.add_parser("export", help="export to SavedModel or TFLite")
    s.add_argument("model")
    s.add_argument("--weights", required=True)
    s.add_argument("--format", choices=["savedmodel", "tflite"], default="savedmodel")
    s.add_argument("--quantize", choices=["none", "float16", "dynamic", "int8"], default="none")
    s.add_argument("--output", required=True)
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("convert", help="convert published (e.g. PyTorch) weights into ferzoo weights")
    s.add_argument("model")
    s.add_argument("checkpoint")
    s.add_argument("--tag", required=True)
    s.add_argument("--output")
    s.add_argument("--config", nargs="*", metavar="KEY=VALUE")
    s.set_defaults(fn=cmd_convert)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--verbose"]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    quiet_tensorflow(verbose, args.command)
    # paths may come after options too (`ferzoo predict --weights T a.jpg b.jpg`)
    if extra and hasattr(args, "paths") and not any(e.startswith("-") for e in extra):
        args.paths = list(args.paths) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from ferzoo.registry import PluginError

    try:
        return int(args.fn(args) or 0)
    except (KeyError, ValueError, FileNotFoundError, NotImplementedError, PluginError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
