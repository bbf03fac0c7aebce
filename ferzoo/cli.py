"""``ferzoo`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _number(kind, ok, allowed: str, name: str):
    """An argparse type: a ``kind`` (``int`` or ``float``) value for which ``ok(value)`` holds; its error says it
    ``must be {allowed}`` and what was given (argparse puts the option's name in front)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value:g}")
        return value

    parse.__name__ = name
    return parse


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    return _number(int, lambda v: v >= minimum, f"an integer >= {minimum}", f"integer >= {minimum}")


def _face_margin(text):
    """An argparse type: ``--face-margin``, a number in ferzoo.faces.MARGIN_RANGE."""
    from ferzoo.faces import MARGIN_RANGE

    lo, hi = MARGIN_RANGE
    return _number(float, lambda v: lo <= v <= hi, f"a number in [{lo}, {hi}]", "face margin")(text)


_unit_interval = _number(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1", "number from 0 to 1")
_positive_number = _number(float, lambda v: v > 0, "a number > 0", "number > 0")
_port = _number(int, lambda v: 0 <= v <= 65535, "an integer 0..65535", "port")


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


def _detector(args):
    """The face detector with ``--min-confidence`` (not given: ferzoo.faces.DEFAULT_MIN_CONFIDENCE)."""
    from ferzoo.faces import FaceDetector

    return FaceDetector(args.min_confidence)


TF_COMMANDS = ("train", "evaluate", "predict", "explain", "export", "convert", "serve", "benchmark", "weights pack",
               "weights half")


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


def _kv(items, option: str = "--config"):
    from ferzoo.recipes import key_values

    try:
        return key_values(items)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _shape(text):
    if not text:
        return None
    try:
        shape = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"--input-shape: expects H,W,C (e.g. 96,96,3), got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"--input-shape: expects H,W,C (e.g. 96,96,3), got {text!r}")
    return shape


# -- usage errors: the options and paths of a command are checked here, before TensorFlow is imported or any
# -- model loads (from the registry, the weight cards and the file system), so a mistake costs no epoch, no
# -- model load and leaves no folder behind. main() prints one line `ferzoo: error: ...` and exits 2.
class UsageError(Exception):
    """A mistake on the command line; the message names the option and what is allowed."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in ferzoo's one-line form (exit code 2, as argparse's)."""

    def error(self, message):
        self.exit(2, f"ferzoo: error: {message} (see `{self.prog} --help`)\n")


def _registered(option: str, kind: str, name: str):
    """The spec of model / data set ``name`` (``kind``: "model" or "dataset"); unknown: a usage error."""
    from ferzoo.registry import UnknownNameError, get_registry

    try:
        return getattr(get_registry(), kind)(name)
    except UnknownNameError as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise UsageError(f"{option}: {message}" if option else message) from None


def _weights_card(option: str, model: str | None, weights: str, *, same_model: bool = True) -> dict:
    """The card of ``weights`` (a tag of ``model`` or a file, whose card names the model when ``model`` is None),
    read without TensorFlow and without downloading; a missing file or an unknown tag is a usage error."""
    from ferzoo import weights as W

    if W._looks_like_path(weights):
        try:
            path = W.weights_file(weights, option)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        try:
            card = W.read_card(path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{option}: {exc}") from None
        if model is not None and same_model and card["model"] != model:
            raise UsageError(f"{option}: {path} holds weights of model {card['model']!r}, not {model!r}")
        _registered(f"{option} {weights}", "model", card["model"])
        return card
    tags = W.known_tags(model)
    if weights not in tags:
        try:
            W.resolve(model, weights)  # an unknown tag fails here at once, saying how such weights are made
        except W.WeightsError as exc:
            raise UsageError(f"{option}: {exc}") from None
        return {}
    if tags[weights].startswith("local store"):
        try:
            return W.read_card(W.store_file(model, weights))
        except (OSError, ValueError):
            return {}  # loading reports the unusable copy
    return W.entries(model).get((model, weights), {})


def _creatable_folder(option: str, folder, given=None) -> None:
    """``folder`` is a folder, or one that can be made: probed by making and removing a folder in its nearest
    existing ancestor (permissions, read-only and virtual file systems), so nothing is left behind."""
    import tempfile

    given = folder if given is None else given
    folder = base = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {given}: {folder} is a file, not a folder")
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{option} {given}: {base} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ferzoo-check-", dir=base))
    except OSError as exc:
        raise UsageError(f"{option} {given}: cannot create files or folders in {base} ({exc.strerror})") from None


def _data_dir(args, spec) -> None:
    if args.data_dir is not None and not Path(args.data_dir).exists():
        raise UsageError(f"--data-dir {args.data_dir}: no such file or folder (give what the {spec.name!r} reader "
                         f"takes{': ' + spec.description if spec.description else ''})")


def _split(option: str, split, spec) -> None:
    if split is not None and spec.splits and split not in spec.splits:
        raise UsageError(f"{option}: data set {spec.name!r} has no split {split!r}; its splits: "
                         f"{', '.join(spec.splits)}")


#: names that say "a file": train writes a folder, so such an --output is a slip
_FILE_SUFFIXES = (".h5", ".keras", ".json", ".csv", ".tflite", ".pb", ".npz", ".zip")


def _check_train(args) -> None:
    from ferzoo.train import PRECISIONS, recipe_for

    spec = _registered("", "model", args.model)
    data = _registered("--dataset", "dataset", args.dataset)
    _data_dir(args, data)
    if args.val_split != "none":
        _split("--val-split", args.val_split, data)
    if args.recipe is not None:
        try:
            recipe_for(args.model, args.dataset, args.recipe)
        except ValueError as exc:
            raise UsageError(f"--recipe: {exc}") from None
    if args.mixed_precision is not None and args.mixed_precision not in ("auto", *PRECISIONS):
        raise UsageError(f"--mixed-precision: {args.mixed_precision!r} is not one of auto, "
                         f"{', '.join(sorted(PRECISIONS))}")
    shape = _shape(args.input_shape)
    if shape is not None:
        try:
            spec.check(min(spec.num_classes) if spec.num_classes else 7, shape)
        except ValueError as exc:
            raise UsageError(f"--input-shape: {exc}") from None
    _kv(args.config, "--config")
    _kv(args.dataset_option, "--dataset-option")
    if args.init_from not in (None, "none"):
        _weights_card("--init-from", args.model, args.init_from, same_model=False)
    try:  # --teacher / --temperature / --alpha / --distill-mode, and the recipe's teachers
        from ferzoo.distill import resolve_request
        from ferzoo.recipes import resolve_recipe

        rec = resolve_recipe(spec.recipe_table(), recipe_for(args.model, args.dataset, args.recipe)[0], args.model)
        resolve_request(rec, args.teacher, _distillation(args))
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    if args.output is not None:
        out = Path(args.output)
        allowed = "a folder (new or existing) for MODEL.weights.h5, its card and the run's checkpoints"
        if out.exists() and not out.is_dir():
            raise UsageError(f"--output {args.output}: is a file; give {allowed}")
        if not out.is_dir() and out.name.lower().endswith(_FILE_SUFFIXES):
            raise UsageError(f"--output {args.output}: names a file, but train writes a folder; give {allowed} "
                             f"(e.g. --output {out.with_name(out.name.split('.')[0] or 'run')})")
        _creatable_folder("--output", out)


def _distillation(args) -> dict:
    return {"temperature": args.temperature, "alpha": args.alpha, "mode": args.distill_mode}


def _check_evaluate(args) -> None:
    _registered("", "model", args.model)
    _weights_card("--weights", args.model, args.weights)
    data = _registered("--dataset", "dataset", args.dataset)
    _data_dir(args, data)
    _split("--split", args.split, data)
    if args.output_dir is not None:
        _creatable_folder("--output-dir", args.output_dir)
    else:
        _creatable_folder("--output-dir", "evaluation", "(default evaluation/...)")


def _check_photos(args) -> None:
    """predict / explain: the inputs, the model and weights as load_model will pick them, --top-k against the
    card's classes, the output file and folders."""
    import ferzoo
    from ferzoo import weights as W

    models = set(ferzoo.list_models())
    for p in args.paths:
        if p in models and not os.path.exists(p):
            raise UsageError(f"{p!r} is a model name, not a file: use --model {p} (ferzoo {args.command} "
                             f"PATH... --model NAME --weights TAG)")
    if not args.paths and not args.demo and not getattr(args, "stream", None):
        raise UsageError(f"PATH: give photos, folders or videos to {args.command}, or --demo for the bundled photo")
    if args.no_detect:
        for option in ("face_margin", "align", "min_confidence"):
            if getattr(args, option, None) is not None:
                raise UsageError(f"--{option.replace('_', '-')}: an option of face detection; --no-detect classifies "
                                 f"each image as it is (give one or the other)")
    model, weights = args.model, args.weights
    if model is not None:
        _registered("--model", "model", model)
        if weights is None:
            if model != W.DEFAULT_MODEL:
                raise UsageError(f"--weights: model {model!r} needs weights (a tag or a .weights.h5 file); known "
                                 f"tags: {sorted(W.known_tags(model))}")
            weights = W.DEFAULT_WEIGHTS
    elif weights is None:
        model, weights = W.DEFAULT_MODEL, W.DEFAULT_WEIGHTS
    elif not W._looks_like_path(weights):
        model = W.DEFAULT_MODEL
    card = _weights_card("--weights", model, weights)
    args.checked_model = model or card["model"]
    classes = len(card.get("class_names") or ())
    top_k = getattr(args, "top_k", None)
    if top_k is not None and classes and top_k > classes:
        raise UsageError(f"--top-k: must be at most {classes}, the number of classes of "
                         f"{args.checked_model} ({weights}), got {top_k}")
    if args.command == "predict" and args.output is not None:
        from ferzoo.predict import OUTPUT_FORMATS

        out = Path(args.output)
        if out.suffix.lower() not in OUTPUT_FORMATS or out.is_dir():
            raise UsageError(f"--output {args.output}: give a file ending in {' or '.join(OUTPUT_FORMATS)}"
                             + (" (this is a folder)" if out.is_dir() else ""))
        _creatable_folder("--output", out.parent, args.output)
    if args.command == "explain":
        _creatable_folder("--output", args.output)
    if getattr(args, "annotate", None) is not None:
        _creatable_folder("--annotate", args.annotate)


def _check_export(args) -> None:
    _registered("", "model", args.model)
    _weights_card("--weights", args.model, args.weights)
    if args.format == "savedmodel" and args.quantize != "none":
        raise UsageError(f"--quantize {args.quantize}: quantization applies to TFLite only (--format tflite); "
                         f"a SavedModel is float32")
    if args.format == "tflite" and args.layout == "serving":
        raise UsageError("--layout serving: TensorFlow Serving's layout holds SavedModels (--format savedmodel)")
    data = _registered("--dataset", "dataset", args.dataset)
    _data_dir(args, data)
    out = Path(args.output)
    if args.format == "savedmodel" or out.is_dir():
        _creatable_folder("--output", out)
    else:
        _creatable_folder("--output", out.parent, args.output)


def _check_convert(args) -> None:
    from ferzoo.backbones.pretrained import BACKBONES

    if args.model not in BACKBONES:
        _registered("", "model", args.model)
    if not Path(args.checkpoint).is_file():
        raise UsageError(f"CHECKPOINT {args.checkpoint}: no such file")
    _kv(args.config, "--config")
    if args.output is not None:
        _creatable_folder("--output", Path(args.output).parent, args.output)


def _serve_pairs(args) -> list[tuple[str | None, str | None]]:
    """``--model`` / ``--weights`` of ``ferzoo serve`` as ``(model, weights)`` pairs (each --weights follows its
    --model; none: the default model)."""
    models, weights = args.model or [], args.weights or []
    if len(weights) > max(1, len(models)):
        raise UsageError(f"--weights: given {len(weights)} times for {len(models)} --model; each --weights "
                         f"follows the --model it is for")
    return [(m, weights[i] if i < len(weights) else None) for i, m in enumerate(models)] or \
        [(None, weights[0] if weights else None)]


def _check_serve(args) -> None:
    from ferzoo import weights as W
    from ferzoo.serve import check_address

    for model, weights in _serve_pairs(args):
        if model is not None:
            _registered("--model", "model", model)
        if weights is not None:  # without --model: a file names its model, a tag is the default model's
            _weights_card("--weights", model or (None if W._looks_like_path(weights) else W.DEFAULT_MODEL), weights)
        elif model is not None and model != W.DEFAULT_MODEL:
            raise UsageError(f"--weights: model {model!r} needs weights (a tag or a .weights.h5 file) after its --model")
    try:
        check_address(args.host, args.port)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


_CHECKS = {"train": _check_train, "evaluate": _check_evaluate, "predict": _check_photos,
           "explain": _check_photos, "export": _check_export, "convert": _check_convert, "serve": _check_serve}


def _check_args(args) -> None:
    """Raise :class:`UsageError` for the first option or path of ``args`` that cannot work."""
    check = _CHECKS.get(args.command)
    if check is not None:
        check(args)
    elif isinstance(getattr(args, "dataset", None), str):  # other commands that read a data set
        data = _registered("--dataset", "dataset", args.dataset)
        if hasattr(args, "data_dir"):
            _data_dir(args, data)
        _split("--split", getattr(args, "split", None), data)
        if hasattr(args, "dataset_option"):
            _kv(args.dataset_option, "--dataset-option")
    # where results will be written: checked now, not after every model has been evaluated
    if args.command == "benchmark":
        from ferzoo.benchmark import output_folder

        _creatable_folder("--output", output_folder(args.output, args.dataset, args.split))
    elif getattr(args, "weights_command", None) == "pack":
        _creatable_folder("--into", args.into)


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


def _measured(card: dict) -> tuple[str, str, str]:
    """(where, one pass, with TTA) for ``ferzoo weights``: the card's ``ferzoo benchmark --record`` row on its own
    data set's val split (else its first recorded row); else the training run's own validation, marked so."""
    benchmarks = card.get("benchmarks") if isinstance(card.get("benchmarks"), dict) else {}
    key = f"{card.get('dataset')}.val"
    if benchmarks:
        key = key if key in benchmarks else sorted(benchmarks)[0]
        row = benchmarks[key]
        tta = f"{100 * row['tta_accuracy']:.2f}% {row['tta']}" if row.get("tta_accuracy") is not None else "-"
        return key, f"{100 * row['accuracy']:.2f}%", tta
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    if metrics.get("accuracy") is None:
        return "-", "-", "-"
    on = f"{card.get('dataset', '-')}.{metrics.get('split', '-')} (training run)"
    if metrics.get("tta"):  # ferzoo weights pack's metrics: accuracy is with the card's tta
        single = metrics.get("single_pass_accuracy")
        return (on.replace("training run", "weights pack"), "-" if single is None else f"{100 * single:.2f}%",
                f"{100 * metrics['accuracy']:.2f}% {metrics['tta']}")
    return on, f"{100 * metrics['accuracy']:.2f}%", "-"


def cmd_weights(args):
    import ferzoo
    from ferzoo import weights as W

    rows = [("name.tag", "source", "available", "measured on", "one pass", "with TTA")]
    for name in ferzoo.list_models():
        registered = W.entries(name)
        for tag, where in sorted(W.known_tags(name).items()):
            if where.startswith("local store"):
                path = W.store_file(name, tag)
                try:
                    card, available = W.read_card(path), "local"
                except (OSError, ValueError) as exc:
                    card, available = {}, f"bad card ({exc})"
            else:
                card = registered[(name, tag)]
                available = W.availability(name, tag, card)
            rows.append((f"{name}.{tag}", where, available, *_measured(card)))
    from ferzoo.backbones.pretrained import list_backbones

    for backbone, tag, _path in list_backbones():
        rows.append((f"{backbone}.{tag}", "backbone store (init only)", "local", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]  # columns as wide as their longest cell
    for row in rows:
        print(" ".join(f"{cell:<{w}}" for cell, w in zip(row[:4], widths)) + f" {row[4]:>{widths[4]}}  {row[5]}")
    print("measured on: ferzoo benchmark --record (one pass, and with the card's test-time augmentation); "
          "'training run': the run's own validation, not re-measured")
    return 0


def cmd_weights_command(args):
    """``ferzoo weights add|sync|half|set-tta|pack``: the maintenance of weights files and zoo_registry.json."""
    from ferzoo import weights as W

    if args.weights_command == "add":
        card = W.add_to_registry(args.weights_path, args.tag, license=args.license, dataset_terms=args.dataset_terms,
                                 package=args.package, urls=args.url, metrics_command=args.metrics_command,
                                 registry=args.registry)
        print(f"added {card['model']}.{args.tag} to {args.registry or W.registry_path()}")
        shadow = W.store_shadow(card["model"], args.tag, card["sha256"])
        if shadow is not None:
            _say(f"warning: the local store holds other weights under the same name ({shadow}); they are what "
                 f"ferzoo.load('{card['model']}', weights='{args.tag}') finds first: rename that folder (e.g. to "
                 f"{args.tag}-run) to use the file just added")
    elif args.weights_command == "sync":
        W.sync_registry(args.registry, models=args.models or None)
        print(f"updated {args.registry or W.registry_path()}")
    elif args.weights_command == "half":
        if not Path(args.weights_path).is_file():
            raise FileNotFoundError(f"WEIGHTS: {args.weights_path}: no such weights file")
        out = W.half_precision_copy(args.weights_path, args.output, tta="card" if args.tta is None else args.tta,
                                    note=args.note)
        card = W.read_card(out)
        print(f"wrote {out} ({card['size'] / 1e6:.2f} MB, float16 arrays; top-1 agreement with the float32 "
              f"file on {card['half_check']['n']} check images: {card['half_check']['top1_agreement']:.1%})")
    elif args.weights_command == "set-tta":
        card = W.set_card_tta(args.weights_path, None if args.tta == "none" else args.tta, note=args.note)
        print(f"{W.card_path_for(args.weights_path)}: tta {card['tta']!r}")
    else:  # pack
        import shlex

        from ferzoo.recipes import tta_option

        out = W.pack(args.run_weights, args.into, tag=args.tag, dataset=args.dataset, data_dir=args.data_dir,
                     split=args.split, dataset_options=_kv(args.dataset_option, "--dataset-option"), model=args.model,
                     max_drop=args.max_drop, batch_size=args.batch_size, say=_say,
                     tta=tta_option(args.tta, "card"),
                     command=shlex.join(["ferzoo", *sys.argv[1:]]) if sys.argv[1:] else None)
        card = W.read_card(out)
        print(f"wrote {out} ({card['storage_dtype']}, {card['size'] / 1e6:.2f} MB; {card['metrics']['split']} "
              f"accuracy {100 * card['metrics']['accuracy']:.2f}% with tta {card['metrics']['tta'] or 'none'}; "
              f"sha256 {card['sha256'][:16]}...)")
    return 0


def _add_weights_commands(sub) -> None:
    from ferzoo.recipes import TTA_OPTIONS

    w = sub.add_parser("weights", help="list weights (registry and local store); add|sync|half|set-tta|pack "
                                       "maintain weights files and zoo_registry.json")
    w.set_defaults(fn=cmd_weights)
    ws = w.add_subparsers(dest="weights_command", metavar="{add,sync,half,set-tta,pack}")
    s = ws.add_parser("add", help="add or replace a zoo_registry.json entry from a weights file and its card")
    s.add_argument("weights_path", metavar="WEIGHTS")
    s.add_argument("--tag", required=True)
    s.add_argument("--package", help="the file is embedded in this package (path taken relative to it)")
    s.add_argument("--url", action="append", default=[], help="a URL where the file is published (repeatable)")
    s.add_argument("--license", required=True)
    s.add_argument("--dataset-terms", required=True)
    s.add_argument("--metrics-command", help="the command that measured the card's metrics")
    s.add_argument("--registry", help="the catalogue to edit (default: the package's zoo_registry.json)")
    s = ws.add_parser("sync", help="refresh plugin, description and paper of every (or the named) model")
    s.add_argument("models", nargs="*", metavar="MODEL")
    s.add_argument("--registry", help="the catalogue to edit (default: the package's zoo_registry.json)")
    s = ws.add_parser("half", help="re-save a weights file and its card with float16 arrays (half the size)")
    s.add_argument("weights_path", metavar="WEIGHTS")
    s.add_argument("--output", required=True, help="the new .weights.h5 (its card is written beside it)")
    s.add_argument("--tta", choices=TTA_OPTIONS, help="the copy's test-time augmentation (default: the card's)")
    s.add_argument("--note", help="a note for the copy's card (e.g. how its figures were measured)")
    s = ws.add_parser("set-tta", help="change the test-time augmentation a card names (the weights file is kept)")
    s.add_argument("weights_path", metavar="WEIGHTS")
    s.add_argument("--tta", required=True, choices=TTA_OPTIONS)
    s.add_argument("--note", help="replaces the card's note (e.g. the accuracies with each tta and the command)")
    s = ws.add_parser("pack", help="measure trained weights on a validation split and ship them as int8 per "
                                   "channel (val accuracy drop < --max-drop points) or float16, with their card")
    s.add_argument("run_weights", metavar="RUN_WEIGHTS", help="a .weights.h5 with its card, or the run folder")
    s.add_argument("--model", help="the model the weights must be for (default: the card's)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--data-dir")
    s.add_argument("--split", default="val", help="the split that measures (default: val)")
    s.add_argument("--dataset-option", nargs="*", metavar="KEY=VALUE", help="options for the data set reader")
    s.add_argument("--into", required=True, metavar="DIR", help="the folder for MODEL_TAG.weights.h5 and its card "
                                                                 "(e.g. a plugin's weights/ folder)")
    s.add_argument("--tag", required=True, help="the tag the weights will have (e.g. fer2013)")
    s.add_argument("--max-drop", type=float, default=0.3, metavar="POINTS",
                   help="keep int8 when the accuracy drops by less than this (default 0.3 points)")
    s.add_argument("--tta", choices=TTA_OPTIONS, help="the shipped card's test-time augmentation, and the protocol "
                                                      "the int8 rule is judged on (default: the card's)")
    s.add_argument("--batch-size", type=_int_at_least(1), default=64)
    for s in ws.choices.values():
        s.set_defaults(fn=cmd_weights_command)


def cmd_benchmark(args):
    import shlex

    from ferzoo.benchmark import run

    result = run(args.items, dataset=args.dataset, data_dir=args.data_dir, split=args.split, output=args.output,
                 dataset_options=_kv(args.dataset_option, "--dataset-option"), batch_size=args.batch_size,
                 latency_runs=args.latency_runs, progress=False if args.quiet else None, say=_say,
                 ensemble=args.ensemble, record=args.record,
                 command=shlex.join(["ferzoo", *sys.argv[1:]]) if sys.argv[1:] else None)
    print(result["md"].read_text(), end="")
    _say(f"results written to {result['csv']} and {result['md']}")
    return 1 if any(r["error"] for r in result["rows"]) else 0


def _add_benchmark_command(sub) -> None:
    s = sub.add_parser("benchmark", help="evaluate every available (or each named) weights on one split: "
                                         "results.csv and results.md")
    s.add_argument("items", nargs="*", metavar="MODEL[.TAG]", help="models, model.tag pairs or .weights.h5 files "
                                                                  "(default: every weights available here)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--data-dir")
    s.add_argument("--split", default="val")
    s.add_argument("--dataset-option", nargs="*", metavar="KEY=VALUE", help="options for the data set reader")
    s.add_argument("--output", metavar="DIR", help="folder for results.csv and results.md "
                                                    "(default: benchmark/DATASET.SPLIT)")
    s.add_argument("--batch-size", type=_int_at_least(1), default=64)
    s.add_argument("--latency-runs", type=_int_at_least(0), default=20, metavar="N",
                   help="batch-1 CPU runs whose median is the latency (0: not measured)")
    s.add_argument("--ensemble", action="store_true",
                   help="add a row for the average of the weights' probabilities (each with its card's "
                        "test-time augmentation); needs two or more weights")
    s.add_argument("--record", action="store_true",
                   help="write each row into its weights' card (benchmarks[DATASET.SPLIT]) and registry entry: "
                        "what ferzoo weights and the README show")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_benchmark)


def cmd_train(args):
    from ferzoo.train import train

    result = train(args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                   batch_size=args.batch_size, tag=args.tag, output=args.output, recipe=args.recipe,
                   strategy=args.strategy, seed=args.seed, mixed_precision=args.mixed_precision,
                   limit=args.limit, verbose=1 if sys.stdout.isatty() else 2, config=_kv(args.config),
                   input_shape=_shape(args.input_shape), val_split=args.val_split,
                   dataset_options=_kv(args.dataset_option, "--dataset-option"), init_from=args.init_from, resume=args.resume,
                   teachers=args.teacher, distillation=_distillation(args))
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
    """The PATH arguments (plus the bundled photo with --demo), as :func:`_check_photos` checked them."""
    import ferzoo

    return list(args.paths) + ([str(ferzoo.demo_image(path_only=True))] if args.demo else [])


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

    if args.stream is not None:
        return _cmd_stream(args)
    paths = _input_paths(args, "classify")
    _check_output(args.output)
    model = load_model(args.model, args.weights, _say)
    if args.top_k > model.num_classes:  # checked against the card before; this is for a card without classes
        raise UsageError(f"--top-k: must be at most {model.num_classes}, the number of classes of the model, "
                         f"got {args.top_k}")
    crop = None if args.no_detect else _crop_override(args, model)
    records = predict_files(paths, model=model, detect=not args.no_detect, every=args.every, output=args.output,
                            annotate=args.annotate, crop=crop, detector=_detector(args),
                            progress=False if args.quiet else None, say=_say)
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


def _cmd_stream(args):
    """``ferzoo predict --stream SOURCE``: JSON lines on stdout as frames arrive; Ctrl-C ends it cleanly."""
    if args.paths or args.demo:
        raise UsageError("--stream: reads one live source; give no PATH and no --demo with it")
    for option, value in (("--output", args.output), ("--annotate", args.annotate)):
        if value is not None:
            raise UsageError(f"{option}: not with --stream, which writes JSON lines to stdout (redirect them to a "
                             f"file instead)")
    if not str(args.stream).strip():
        raise UsageError("--stream: give a camera index (0), a video file or a stream URL")
    from ferzoo.predict import failed, load_model, stream

    faces = frames = 0
    records = None
    try:
        model = load_model(args.model, args.weights, _say)
        crop = None if args.no_detect else _crop_override(args, model)
        records = stream(args.stream, model=model, detect=not args.no_detect, every=args.every, crop=crop,
                         detector=_detector(args), say=_say)
        for r in records:
            if failed(r["status"]):
                _say(r["status"])
                return 1
            print(json.dumps(r), flush=True)
            frames += r["face"] in (None, 0)
            faces += r["status"] == "ok"
    except KeyboardInterrupt:
        _say("stopped (Ctrl-C)")
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if records is not None:
            records.close()
    _say(f"{frames} sampled frame(s), {faces} face(s)")
    return 0


def cmd_explain(args):
    from ferzoo.predict import explain_files, load_model

    paths = _input_paths(args, "explain")
    name = getattr(args, "checked_model", None)  # set by _check_photos
    if args.method and name:  # before the model loads (the methods come from the registry, needing TensorFlow)
        from ferzoo.explain import list_explainers

        known = list_explainers(name)
        bad = [m for m in args.method if m not in known]
        if bad:
            raise UsageError(f"--method {bad[0]!r}: model {name!r} has the methods {', '.join(known)}")
    model = load_model(args.model, args.weights, _say)
    crop = None if args.no_detect else _crop_override(args, model)
    records = explain_files(paths, model=model, output=args.output, methods=args.method, detect=not args.no_detect,
                            every=args.every, crop=crop, size=args.size, detector=_detector(args),
                            progress=False if args.quiet else None,
                            say=_say)
    for r in records:
        if r["status"] != "ok":
            _say(f"{_where(r)}: {r['status']}")
        if len(r.get("explanations") or ()) > 1:
            print(r["explanation"])  # the methods side by side, then each alone
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
                    output=args.output, tta=args.tta, dataset=args.dataset, data_dir=args.data_dir,
                    check_size=args.check_size,
                    layout=args.layout or ("serving" if args.format == "savedmodel" else "plain"))
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_serve(args):
    from ferzoo.serve import serve

    serve(_serve_pairs(args), host=args.host, port=args.port, max_batch=args.max_batch, max_body_mb=args.max_body_mb,
          max_wait_ms=args.max_wait_ms, tta=args.tta, min_confidence=args.min_confidence, say=_say)
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


def _add_min_confidence(s) -> None:
    """``--min-confidence`` for ``predict`` / ``explain`` (read by :func:`_detector`) and ``serve`` (passed to
    :func:`ferzoo.serve.serve`)."""
    from ferzoo.faces import DEFAULT_MIN_CONFIDENCE

    s.add_argument("--min-confidence", type=_unit_interval, metavar="P",
                   help=f"keep the faces MTCNN scores at least P, 0-1 (default {DEFAULT_MIN_CONFIDENCE:g}; lower finds "
                        f"more faces and more false ones: docs/photos.md)")


def _add_crop_options(s) -> None:
    """``--face-margin`` and ``--align`` (read by :func:`_crop_override`) and ``--min-confidence`` for ``predict``
    and ``explain``: options of the photo path, refused with ``--no-detect``."""
    _add_min_confidence(s)
    s.add_argument("--face-margin", type=_face_margin, metavar="M",
                   help="crop a square of the detector box's longer side x (1 + 2M) (default: the card's rule, printed)")
    s.add_argument("--align", choices=["eyes", "none"], help="rotate the crop so the eyes are level (default: the card's)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ferzoo", description="Facial expression recognition model zoo.")
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
    _add_weights_commands(sub)
    _add_benchmark_command(sub)
    _add_train_command(sub)
    _add_evaluate_command(sub)
    _add_photo_commands(sub)
    _add_export_command(sub)
    _add_serve_command(sub)
    _add_convert_command(sub)
    return p


def _add_train_command(sub) -> None:
    """``ferzoo train``'s options."""
    s = sub.add_parser("train", help="train a model with its recipe; the best weights go to the local store")
    s.add_argument("model")
    s.add_argument("--dataset", default="synthetic")
    s.add_argument("--data-dir")
    s.add_argument("--epochs", type=_int_at_least(1),
                   help="default: the recipe's (printed); a cosine schedule over the recipe's whole run follows it")
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
    s.add_argument("--init-from", metavar="TAG|FILE|none",
                   help="start from these weights (fine-tuning); layers that do not fit are listed (default: the "
                        "recipe's init_from, printed; none: from scratch)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --output (or the store) from its last checkpoint")
    s.add_argument("--dataset-option", nargs="*", metavar="KEY=VALUE",
                   help="options for the data set reader, e.g. val_folds=1 fold=0 for the lab data sets; "
                        "each overrides the recipe's dataset_options (printed)")
    s.add_argument("--config", nargs="*", metavar="KEY=VALUE", help="model config overrides")
    s.add_argument("--input-shape", metavar="H,W,C", help="override the model's input size, e.g. 96,96,3")
    from ferzoo.distill import DEFAULTS as DISTILL, MODES as DISTILL_MODES

    s.add_argument("--teacher", action="append", metavar="NAME.TAG|FILE",
                   help="distil these weights into the model (repeat for several; default: the recipe's teachers)")
    s.add_argument("--temperature", type=_positive_number, metavar="T",
                   help=f"distillation temperature (default: the recipe's, else {DISTILL['temperature']:g})")
    s.add_argument("--alpha", type=float, metavar="A", help="weight of the teachers' term in [0, 1], the labels' is "
                   f"1 - A (default: the recipe's, else {DISTILL['alpha']:g})")
    s.add_argument("--distill-mode", choices=DISTILL_MODES,
                   help="teacher outputs cached once per image (no augmentation) or run online on every batch "
                        "(default: the recipe's, else auto: cached for teachers larger than the model; printed)")
    s.set_defaults(fn=cmd_train)


def _add_evaluate_command(sub) -> None:
    """``ferzoo evaluate``'s options."""
    from ferzoo.recipes import TTA_OPTIONS

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


def _add_photo_commands(sub) -> None:
    """``ferzoo predict`` and ``ferzoo explain``'s options."""
    photo_help = _default_model_help()
    s = sub.add_parser("predict", help="classify the faces in photos, folders (recursively) and videos")
    s.add_argument("paths", nargs="*", metavar="PATH", help="photos, folders, videos")
    s.add_argument("--model", help=f"model name {photo_help}")
    s.add_argument("--weights", help="tag or .weights.h5 file (without --model: the model its card names)")
    s.add_argument("--demo", action="store_true", help="also classify the bundled public-domain photo")
    s.add_argument("--output", metavar="FILE", help="also write the records to FILE.json or FILE.csv")
    s.add_argument("--annotate", metavar="DIR", help="write each photo / sampled frame with boxes and labels here")
    s.add_argument("--no-detect", action="store_true", help="each image is an already cropped face (FER-2013, CK+48)")
    s.add_argument("--every", type=_int_at_least(1), metavar="N", help="read every N-th video frame (default 10)")
    s.add_argument("--stream", metavar="SOURCE", help="live input: a camera index (0), a video file or a stream URL; "
                   "one JSON line per face per sampled frame on stdout as frames arrive, until it ends or Ctrl-C")
    _add_crop_options(s)
    s.add_argument("--top-k", type=_int_at_least(1), default=3, help="classes printed per face")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("explain", help="per face, heat maps of what the model looks at (PNG overlays)")
    s.add_argument("paths", nargs="*", metavar="PATH", help="photos, folders, videos")
    s.add_argument("--model", help=f"model name {photo_help}")
    s.add_argument("--weights", help="tag or .weights.h5 file")
    s.add_argument("--method", action="append", metavar="M",
                   help="explanation method, repeat for several (default: occlusion, else saliency, then the "
                        "model's own map)")
    s.add_argument("--output", required=True, metavar="DIR", help="folder for the pictures")
    s.add_argument("--demo", action="store_true", help="also explain the bundled public-domain photo")
    s.add_argument("--no-detect", action="store_true", help="each image is an already cropped face")
    s.add_argument("--every", type=_int_at_least(1), metavar="N", help="read every N-th video frame (default 10)")
    _add_crop_options(s)
    s.add_argument("--size", type=_int_at_least(64), default=256, help="height of each picture in pixels")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_explain)


def _add_export_command(sub) -> None:
    """``ferzoo export``'s options."""
    s = sub.add_parser("export", help="export to SavedModel or TFLite")
    s.add_argument("model")
    s.add_argument("--weights", required=True)
    s.add_argument("--format", choices=["savedmodel", "tflite"], default="savedmodel")
    s.add_argument("--quantize", choices=["none", "float16", "dynamic", "int8"], default="none")
    s.add_argument("--output", required=True,
                   help="SavedModel: a folder that gets TensorFlow Serving's layout OUTPUT/MODEL/VERSION/ (the next "
                        "free version); TFLite: a .tflite file or a folder")
    s.add_argument("--layout", choices=["serving", "plain"],
                   help="SavedModel folder layout (default serving: OUTPUT/MODEL/VERSION/; plain: OUTPUT is the "
                        "SavedModel)")
    s.add_argument("--tta", choices=["card", "none"],
                   help="test-time augmentation in the graph (default: the weights' card's for a SavedModel, "
                        "none for TFLite; the report's tta says which)")
    s.add_argument("--dataset", default="synthetic",
                   help="images for the parity check against Keras and for int8 calibration (default: generated "
                        "faces; name a data set, e.g. fer2013 with --data-dir, to check on real faces)")
    s.add_argument("--data-dir", help="the data set's folder (as released)")
    s.add_argument("--check-size", type=_int_at_least(1), default=64,
                   help="how many images of the data set's val split the parity check uses (default 64)")
    s.set_defaults(fn=cmd_export)


def _add_serve_command(sub) -> None:
    """``ferzoo serve``'s options."""
    photo_help = _default_model_help()
    from ferzoo.serve import (DEFAULT_HOST, DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_MB, DEFAULT_MAX_WAIT_MS, DEFAULT_PORT,
                              SERVE_TTA)

    s = sub.add_parser("serve", help="HTTP service: TensorFlow Serving's REST API, a photo endpoint, a web page")
    s.add_argument("--model", action="append", metavar="NAME",
                   help=f"model to serve; repeat for several (the first is the default) {photo_help}")
    s.add_argument("--weights", action="append", metavar="TAG|FILE", help="weights of the --model before it")
    s.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 warns)")
    s.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT} (TF Serving's REST port); 0: a free port, printed")
    s.add_argument("--max-batch", type=_int_at_least(1), default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"images of concurrent requests classified in one pass, at most (default {DEFAULT_MAX_BATCH})")
    s.add_argument("--max-wait-ms", type=_positive_number, default=DEFAULT_MAX_WAIT_MS, metavar="MS",
                   help=f"how long a request waits for others to share its pass (default {DEFAULT_MAX_WAIT_MS:g})")
    s.add_argument("--max-body-mb", type=_positive_number, default=DEFAULT_MAX_BODY_MB, metavar="MB",
                   help=f"larger request bodies are refused (413) before they are read (default {DEFAULT_MAX_BODY_MB:g})")
    s.add_argument("--tta", choices=SERVE_TTA, default="card",
                   help="test-time augmentation: the weights' card's (default, as ferzoo predict), or none (one "
                        "pass), flip (two) or tencrop (ten) for every model")
    _add_min_confidence(s)
    s.set_defaults(fn=cmd_serve)


def _add_convert_command(sub) -> None:
    """``ferzoo convert``'s options."""
    s = sub.add_parser("convert", help="convert published (e.g. PyTorch) weights into ferzoo weights")
    s.add_argument("model")
    s.add_argument("checkpoint")
    s.add_argument("--tag", required=True)
    s.add_argument("--output")
    s.add_argument("--config", nargs="*", metavar="KEY=VALUE")
    s.set_defaults(fn=cmd_convert)


def _default_model_help() -> str:
    from ferzoo.weights import DEFAULT_MODEL, DEFAULT_WEIGHTS

    return f"(default: {DEFAULT_MODEL} with its embedded weights {DEFAULT_WEIGHTS}, printed)"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--verbose"]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # paths may come after options too (`ferzoo predict --weights T a.jpg b.jpg`)
    if extra and hasattr(args, "paths") and not any(e.startswith("-") for e in extra):
        args.paths = list(args.paths) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from ferzoo.registry import PluginError

    def error(message) -> int:
        print("ferzoo: error: " + " ".join(str(message).split("\n")), file=sys.stderr)
        return 2

    try:
        _check_args(args)  # before TensorFlow is imported: a usage error is answered at once
        quiet_tensorflow(verbose, " ".join(filter(None, (args.command, getattr(args, "weights_command", None)))))
        return int(args.fn(args) or 0)
    except UsageError as exc:
        return error(exc)
    # what the API refuses (unknown names, unusable weights or data, impossible requests) is the caller's to
    # fix: exit 2 too; a failure while running (an input that cannot be read) is reported by the command, exit 1
    except (KeyError, ValueError, FileNotFoundError, NotImplementedError, PluginError) as exc:
        return error(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    except BrokenPipeError:  # `ferzoo weights | head`: the reader left; say nothing more, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
