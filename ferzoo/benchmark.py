"""``ferzoo benchmark``: the leaderboard. Every available (model, tag), or those named, evaluated on one split.

For each weights it measures, on the split: accuracy in one pass and with the test-time augmentation its card
names, balanced accuracy and macro-F1 (both with the card's augmentation: the way the weights predict),
parameters and multiply-accumulates of one forward pass (counted in the traced TensorFlow graph of a batch of
one: convolutions, matrix products and einsums; ``n/a`` where the graph hides a shape), the median batch-1
latency of one pass on the CPU, the storage and sha256 of the weights file. ``results.csv`` and ``results.md``
(atomic) hold one row per weights and the command that made them.

Classes are matched by name. A model class the data set lacks is dropped: the prediction is the argmax over
the shared classes (a FER-2013 model on a data set without ``disgust``), and the row and the output say so.
Examples of a class the model does not know are not scored (counted in the row). Weights that fail to load or
evaluate become a row with the error, and the rest go on.

``record=True`` (``--record``) writes each measured row into the weights' own card, under
``benchmarks["DATASET.SPLIT"]`` (and into its ``zoo_registry.json`` entry when the registry holds these very
weights, same sha256): the one place from which ``ferzoo weights`` and the README's models table take their
numbers.
"""

from __future__ import annotations

import csv
import gc
import io
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from . import weights as W

#: the columns of results.csv, in order
COLUMNS = ("model", "tag", "dataset", "split", "examples", "accuracy", "tta", "tta_accuracy",
           "balanced_accuracy", "balanced_accuracy_one_pass", "macro_f1", "recall", "params", "macs", "latency_ms",
           "storage", "sha256", "dropped_classes", "unscored_examples", "error", "command")
#: the ``model`` column of the ensemble row
ENSEMBLE = "ensemble"


# -- what to evaluate ------------------------------------------------------------------------------------------------
def available() -> list[tuple[str, str]]:
    """(model, tag) of every weights usable without a download: the local store, files embedded in installed
    packages and verified downloads already cached."""
    import ferzoo

    out = []
    for name in ferzoo.list_models():
        registered = W.entries(name)
        for tag, where in sorted(W.known_tags(name).items()):
            if where.startswith("local store") or \
                    W.availability(name, tag, registered[(name, tag)]) in ("embedded", "cached"):
                out.append((name, tag))
    return out


def parse_items(items: Sequence[str]) -> list[tuple[str, str]]:
    """``MODEL``, ``MODEL.TAG`` or a ``.weights.h5`` path (with its card) -> ``(model, tag or path)`` pairs; no
    items: :func:`available`. Unknown models and tags are errors naming the argument, before any model loads."""
    import ferzoo

    if not items:
        found = available()
        if not found:
            raise ValueError("MODEL[.TAG]: no weights are available here (ferzoo weights lists them); name some")
        return found
    out: list[tuple[str, str]] = []
    for item in items:
        if W._looks_like_path(item):
            path = W.weights_file(item, "MODEL[.TAG]")
            try:
                card = W.read_card(path)
            except (OSError, ValueError) as exc:
                raise ValueError(f"MODEL[.TAG]: {exc}") from None
            out.append((card["model"], str(path)))
            continue
        name, _, tag = item.partition(".")
        try:
            ferzoo.model_info(name)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"MODEL[.TAG]: {exc.args[0] if exc.args else exc}") from None
        tags = W.known_tags(name)
        if tag:
            if tag not in tags:
                raise ValueError(f"MODEL[.TAG]: model {name!r} has no weights tagged {tag!r}; known tags: "
                                 f"{sorted(tags)}")
            out.append((name, tag))
            continue
        mine = [(m, t) for m, t in available() if m == name]
        if not mine:
            raise ValueError(f"MODEL[.TAG]: model {name!r} has no weights available here (known tags: "
                             f"{sorted(tags)}); name one as {name}.TAG")
        out += mine
    return list(dict.fromkeys(out))


# -- measurements ----------------------------------------------------------------------------------------------------
def count_params(model) -> int:
    """Parameters of the network from the input to the logits (auxiliary losses' state excluded)."""
    return int(model.output_model("logits").count_params())


def count_macs(model) -> int | None:
    """Multiply-accumulates of one forward pass of one image (single pass, no test-time augmentation), from the
    traced TensorFlow graph: Conv2D / Conv3D / depthwise / transposed convolutions, MatMul, BatchMatMul and
    Einsum. ``None`` when a counted operation has an unknown shape or the graph calls a function it cannot read."""
    import tensorflow as tf

    net = model.output_model("logits")
    h, w, c = model.input_shape_hwc
    fn = tf.function(lambda x: net(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((1, h, w, c), tf.float32)).graph
    return _graph_macs(graph)


_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _graph_macs(graph, depth: int = 0) -> int | None:
    total = 0
    for op in graph.get_operations():
        if op.type in _CALLS:
            inner = getattr(graph, "_functions", {}).get(op.get_attr("f").name)
            inner_graph = getattr(inner, "graph", None)
            if inner_graph is None or depth > 8:
                return None
            part = _graph_macs(inner_graph, depth + 1)
            if part is None:
                return None
            total += part
            continue
        try:
            part = _op_macs(op)
        except (ValueError, TypeError):
            return None
        total += part
    return total


def _shape(tensor) -> list[int]:
    dims = tensor.shape.as_list()
    if dims is None or any(d is None for d in dims):
        raise ValueError(f"unknown shape {tensor.shape}")
    return dims


def _op_macs(op) -> int:
    kind = op.type
    if kind in ("Conv2D", "Conv3D"):
        kernel = _shape(op.inputs[1])
        return math.prod(_shape(op.outputs[0])) * math.prod(kernel[:-1])
    if kind == "DepthwiseConv2dNative":
        kh, kw = _shape(op.inputs[1])[:2]
        return math.prod(_shape(op.outputs[0])) * kh * kw
    if kind in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        kernel = _shape(op.inputs[1])  # (..., out_channels of the transposed conv, in_channels)
        return math.prod(_shape(op.inputs[2])) * math.prod(kernel[:-1])
    if kind == "MatMul":
        a = _shape(op.inputs[0])
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return math.prod(_shape(op.outputs[0])) * inner
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _shape(op.inputs[0])
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
        return math.prod(_shape(op.outputs[0])) * inner
    if kind == "Einsum" and len(op.inputs) == 2:
        equation = op.get_attr("equation")
        equation = equation.decode() if isinstance(equation, bytes) else equation
        operands = equation.split("->")[0].split(",")
        if "." in equation:
            raise ValueError("ellipsis einsum")
        sizes: dict[str, int] = {}
        for letters, tensor in zip(operands, op.inputs):
            for letter, size in zip(letters, _shape(tensor)):
                sizes[letter] = size
        return math.prod(sizes.values())
    return 0


def median_seconds(fn, runs: int, warmup: int = 0) -> float:
    """Median wall time of ``runs`` calls of ``fn`` after ``warmup`` untimed calls: the one timing rule of
    ``ferzoo benchmark``, the plugins' benchmarks and ``benchmarks/``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, int(runs))):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(statistics.median(times))


def latency_ms(model, runs: int = 20) -> float:
    """Median wall time of one forward pass (single pass) of one image on the CPU, in milliseconds, after two
    warm-up calls of a traced function."""
    import numpy as np
    import tensorflow as tf

    net = model.output_model("logits")
    h, w, c = model.input_shape_hwc
    with tf.device("/CPU:0"):
        fn = tf.function(lambda x: net(x, training=False))
        x = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, h, w, c)).astype("float32"))
        return 1000 * median_seconds(lambda: np.asarray(fn(x)), runs, warmup=2)


def _predict_pass(model, data, tta) -> tuple:
    """(labels, probabilities) of one pass over the batched ``data`` with test-time augmentation ``tta``."""
    import keras
    import numpy as np

    kept = model.tta
    model.tta = tta
    try:
        labels, probs = [], []
        with W.quiet_retracing():
            for xb, yb in data:
                probs.append(np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(xb))))
                labels.append(np.asarray(yb).reshape(-1))
    finally:
        model.tta = kept
    if not labels:
        raise ValueError("the split is empty")
    return np.concatenate(labels).astype(np.int64), np.concatenate(probs)


def _class_match(prob_names: Sequence[str], shared: Sequence[str], data_names: Sequence[str]):
    """``(columns, to_shared)``: the columns of ``shared`` classes among probabilities over ``prob_names``, and
    each data label's index among ``shared`` (-1 for a class outside it). Classes are matched by name."""
    import numpy as np

    shared = list(shared)
    columns = np.asarray([list(prob_names).index(n) for n in shared])
    to_shared = np.asarray([shared.index(n) if n in shared else -1 for n in data_names])
    return columns, to_shared


def evaluate_shared(model, data, data_names: Sequence[str]) -> dict:
    """Scores of ``model`` on ``data`` (batched, labels index ``data_names``) over the classes both know:
    ``single`` and ``tta`` reports (``tta`` None when the card names no augmentation), ``dropped_classes`` (the
    model's classes the data lacks: not predicted) and ``unscored`` (examples of classes the model lacks)."""
    import numpy as np

    from .metrics import classification_report

    names = list(model.class_names)
    shared = [n for n in names if n in data_names]
    if not shared:
        raise ValueError(f"the model's classes {names} and the data's {list(data_names)} have none in common")
    dropped = [n for n in names if n not in data_names]
    columns, to_shared = _class_match(names, shared, data_names)
    out = {"dropped_classes": dropped, "shared_classes": shared}
    for key, tta in (("single", None), ("tta", model.tta)):
        if key == "tta" and tta is None:
            out["tta"] = None
            continue
        labels, probs = _predict_pass(model, data, tta)
        target = to_shared[labels]
        keep = target >= 0
        out["unscored"] = int((~keep).sum())
        if not keep.any():
            raise ValueError("no example of the split belongs to a class the model knows")
        predicted = probs[keep][:, columns].argmax(-1)
        out[key] = classification_report(target[keep], predicted, shared)
        # the probabilities over the data's classes (0 for a class the model lacks), for an ensemble row
        spread = np.zeros((probs.shape[0], len(data_names)), np.float64)
        for j, name in enumerate(data_names):
            if name in names:
                spread[:, j] = probs[:, names.index(name)]
        out.setdefault("probabilities", {})[key] = spread
        out["labels"] = labels
    return out


def _recall_text(report) -> str:
    """``angry:0.6123 disgust:...``: each class's recall (the ``recall`` column)."""
    return " ".join(f"{name}:{values['recall']:.4f}" for name, values in report["per_class"].items()
                    if values["support"] > 0)


def ensemble_row(members: Sequence[tuple[str, dict, dict]], data_names: Sequence[str], *, dataset: str,
                 split: str, command: str | None = None) -> dict:
    """The row of the members' average: ``members`` are ``(label, row, scores)`` of rows measured by
    :func:`run`. Accuracy averages the members' one-pass probabilities; the TTA accuracy (and balanced
    accuracy, macro-F1 and recall) averages each member's probabilities under its own card's augmentation:
    the way each member predicts. Parameters and MACs are the members' sums; latency is not measured."""
    import numpy as np

    from .metrics import classification_report

    labels = members[0][2]["labels"]
    for label, _, scores in members[1:]:
        if not np.array_equal(scores["labels"], labels):
            raise ValueError(f"{label}: its pass saw the split's examples in another order than "
                             f"{members[0][0]}'s; the ensemble needs the same examples in the same order")
    names = list(data_names)
    known = set()
    for _, _, scores in members:
        known.update(scores["shared_classes"])
    shared = [n for n in names if n in known]
    columns, to_shared = _class_match(names, shared, names)
    target = to_shared[labels]
    keep = target >= 0
    reports = {}
    for key in ("single", "tta"):
        probs = np.mean([scores["probabilities"]["tta" if key == "tta" and scores["tta"] else "single"]
                         for _, _, scores in members], axis=0)
        reports[key] = classification_report(target[keep], probs[keep][:, columns].argmax(-1), shared)

    def total(column):
        values = [row[column] for _, row, _ in members]
        return "n/a" if any(v in ("", None, "n/a") for v in values) else sum(int(v) for v in values)

    row = {k: "" for k in COLUMNS}
    row.update(model=ENSEMBLE, tag="+".join(label for label, _, _ in members), dataset=dataset, split=split,
               examples=reports["single"]["num_examples"], accuracy=reports["single"]["accuracy"],
               tta="members' cards", tta_accuracy=reports["tta"]["accuracy"],
               balanced_accuracy=reports["tta"]["balanced_accuracy"], macro_f1=reports["tta"]["macro_f1"],
               balanced_accuracy_one_pass=reports["single"]["balanced_accuracy"],
               recall=_recall_text(reports["tta"]), params=total("params"), macs=total("macs"),
               dropped_classes=" ".join(n for n in names if n not in known), unscored_examples=int((~keep).sum()),
               command=command or "")
    return row


# -- the run ---------------------------------------------------------------------------------------------------------
def output_folder(output, dataset: str, split: str) -> Path:
    """Where :func:`run` writes: ``output``, else ``benchmark/DATASET.SPLIT``."""
    return Path(output) if output is not None else Path("benchmark") / f"{dataset}.{split}"


def _resolve(name: str, tag: str) -> tuple[Path, dict, str]:
    """(file, card, short tag) of a named tag or a weights path."""
    if W._looks_like_path(tag):
        path = Path(tag)
        return path, W.read_card(path), path.name[: -len(W.WEIGHTS_SUFFIX)]
    path, card = W.resolve(name, tag)
    return path, card, tag


#: the fields of a row that a card's ``benchmarks`` entry keeps
RECORDED = ("examples", "accuracy", "tta", "tta_accuracy", "balanced_accuracy", "balanced_accuracy_one_pass",
            "macro_f1", "params", "macs", "latency_ms", "dropped_classes", "unscored_examples", "command")


def benchmark_entry(row: dict, scores: dict | None = None) -> dict:
    """What a card keeps of a measured row: accuracies as fractions, the recall of each class, the date."""
    entry = {k: row[k] for k in RECORDED if row.get(k) not in ("", None)}
    if scores is not None:
        best = scores["tta"] or scores["single"]
        entry["recall"] = {n: round(v["recall"], 6) for n, v in best["per_class"].items() if v["support"] > 0}
    entry["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    return entry


def record_row(row: dict, path, *, name: str, tag: str | None, scores: dict | None = None) -> list[str]:
    """Write ``row`` into the card beside the weights file ``path`` under ``benchmarks["DATASET.SPLIT"]``, and
    into the registry entry ``name.tag`` when it describes the same file (sha256); both atomic. Returns where
    it was written. A card that is not writable here (an installed package) is an error naming it."""
    import json
    import os

    key = f"{row['dataset']}.{row['split']}"
    entry = benchmark_entry(row, scores)
    written = []
    card_file = W.card_path_for(path)
    if card_file.exists():
        if not os.access(card_file, os.W_OK) or not os.access(card_file.parent, os.W_OK):
            raise PermissionError(f"--record: {card_file} is not writable here (an installed package?)")
        card = json.loads(card_file.read_text())
        card.setdefault("benchmarks", {})[key] = entry
        W.write_json_atomic(card_file, card)
        written.append(str(card_file))

    def put(data: dict) -> bool:  # only into the entry that describes the same file
        registered = data["models"].get(name, {}).get("weights", {}).get(tag) if tag else None
        if registered is None or registered.get("sha256") != row.get("sha256"):
            return False
        registered.setdefault("benchmarks", {})[key] = entry
        return True

    if W.update_registry(put) is not None:
        written.append(f"{W.registry_path()} ({name}.{tag})")
    return written


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def run(items: Sequence[str] = (), *, dataset: str, data_dir=None, split: str = "val", output=None,
        dataset_options: dict | None = None, batch_size: int = 64, latency_runs: int = 20,
        command: str | None = None, progress: bool | None = None, ensemble: bool = False,
        record: bool = False, say: Callable[[str], None] | None = None) -> dict:
    """Evaluate ``items`` (see :func:`parse_items`) on ``dataset``'s ``split``; write ``results.csv`` and
    ``results.md`` into ``output`` (default ``benchmark/DATASET.SPLIT``). Returns ``{"rows", "csv", "md"}``.
    ``ensemble``: one more row, the average of the rows that were measured (:func:`ensemble_row`; at least two).
    ``record``: each measured row is written into its weights' card (:func:`record_row`).
    Arguments (items, data set, split, output folder) are checked before any model loads."""
    say = say or (lambda line: print(f"ferzoo: {line}", file=sys.stderr))
    if int(batch_size) < 1 or int(latency_runs) < 0:
        raise ValueError("--batch-size must be >= 1 and --latency-runs >= 0")
    folder = output_folder(output, dataset, split)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output: {folder} is a file, not a folder")
    pairs = parse_items(items)
    if ensemble and len(pairs) < 2:
        raise ValueError(f"--ensemble averages two or more weights; {len(pairs)} named or available")
    ds = W.open_split(dataset, data_dir, split, dataset_options)
    data_names = list(ds.class_names)

    from tqdm.auto import tqdm

    rows, members = [], []
    bar = tqdm(pairs, desc="benchmark", unit="weights", disable=None if progress is None else not progress)
    for name, tag in bar:
        label = f"{name}.{Path(tag).name if W._looks_like_path(tag) else tag}"
        bar.set_postfix_str(label)
        row = {k: "" for k in COLUMNS}
        row.update(model=name, tag=tag, dataset=dataset, split=split, command=command or "")
        try:
            scores, path = _measure_into(row, name, tag, ds, data_names, label=label, batch_size=int(batch_size),
                                         latency_runs=latency_runs, say=say)
            if ensemble:
                members.append((label, row, scores))
            if record:
                _record(row, path, name, tag, label, scores, say)
        except Exception as exc:  # noqa: BLE001 - one broken model must not stop the leaderboard
            row["error"] = _one_line(exc)
            say(f"{label}: failed: {row['error']}")
        finally:
            gc.collect()
        rows.append(row)
    bar.close()
    if ensemble:
        rows.extend(_ensemble_rows(members, data_names, dataset=dataset, split=split, command=command, say=say))
    csv_path, md_path = folder / "results.csv", folder / "results.md"
    with W.atomic_path(csv_path) as tmp:
        tmp.write_text(_csv(rows))
    with W.atomic_path(md_path) as tmp:
        tmp.write_text(_markdown(rows, dataset=dataset, split=split, data_names=data_names, command=command))
    return {"rows": rows, "csv": csv_path, "md": md_path}


def _measure_into(row: dict, name: str, tag: str, ds, data_names: list, *, label: str, batch_size: int,
                  latency_runs: int, say) -> tuple[dict, Path]:
    """One leaderboard row: load the weights, score them on ``ds`` (classes matched by name), count parameters
    and MACs, time batch-1 latency; fills ``row`` and returns the scores and the weights file."""
    from .data import prepare

    path, card, _short = _resolve(name, tag)
    row["sha256"] = card.get("sha256") or W.sha256_of(path)
    row["storage"] = card.get("storage_dtype") or W.storage_of(path)
    model = W.load_file(name, path, card, tag=None if W._looks_like_path(tag) else tag)
    crop = {"load_size": model.eval_crop, "crop": "center"} if model.eval_crop else {}
    data = prepare(ds, model.input_shape_hwc, batch_size=batch_size, **crop)
    scores = evaluate_shared(model, data, data_names)
    best = scores["tta"] or scores["single"]
    row.update(examples=scores["single"]["num_examples"], accuracy=scores["single"]["accuracy"],
               tta=model.tta or "none", tta_accuracy="" if scores["tta"] is None else scores["tta"]["accuracy"],
               balanced_accuracy=best["balanced_accuracy"], macro_f1=best["macro_f1"],
               balanced_accuracy_one_pass=scores["single"]["balanced_accuracy"],
               recall=_recall_text(best),
               dropped_classes=" ".join(scores["dropped_classes"]), unscored_examples=scores["unscored"],
               params=count_params(model))
    if scores["dropped_classes"]:
        say(f"{label}: classes {', '.join(scores['dropped_classes'])} are not in {row['dataset']}: dropped, the "
            f"prediction is the argmax over the {len(scores['shared_classes'])} shared classes")
    if scores["unscored"]:
        missing = [n for n in data_names if n not in model.class_names]
        say(f"{label}: {scores['unscored']} examples of {', '.join(missing)} (unknown to the model) not scored")
    try:
        macs = count_macs(model)
    except Exception:  # noqa: BLE001 - a count we cannot make is reported as n/a
        macs = None
    row["macs"] = "n/a" if macs is None else macs
    if latency_runs:
        row["latency_ms"] = round(latency_ms(model, latency_runs), 3)
    return scores, path


def _record(row: dict, path, name: str, tag: str, label: str, scores: dict, say) -> None:
    """``--record``: the measured row into its weights' card (the packaged card and the registry entry's)."""
    places = record_row(row, path, name=name, tag=None if W._looks_like_path(tag) else tag, scores=scores)
    for where in places:
        say(f"{label}: recorded in {where}")
    if not places:
        say(f"{label}: not recorded: no card file beside {path} and no registry entry of this file")


def _ensemble_rows(members: list, data_names: list, *, dataset: str, split: str, command, say) -> list[dict]:
    """``--ensemble``: one row averaging the measured members' probabilities, or a row with its error; none
    when fewer than two were measured."""
    if len(members) < 2:
        say(f"ensemble: only {len(members)} of the weights were measured; no ensemble row")
        return []
    try:
        return [ensemble_row(members, data_names, dataset=dataset, split=split, command=command)]
    except ValueError as exc:
        row = {**{k: "" for k in COLUMNS}, "model": ENSEMBLE, "dataset": dataset, "split": split,
               "tag": "+".join(m[0] for m in members), "error": _one_line(exc)}
        say(f"ensemble: failed: {row['error']}")
        return [row]


def _csv(rows) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _pct(value) -> str:
    return "-" if value in ("", None) else f"{100 * float(value):.2f}"


def _count(value) -> str:
    if value in ("", None):
        return "-"
    if value == "n/a":
        return "n/a"
    value = int(value)
    return f"{value / 1e9:.2f} G" if value >= 1e9 else f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.1f} k"


def _markdown(rows, *, dataset, split, data_names, command) -> str:
    lines = [f"# ferzoo benchmark: {dataset} {split}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Data classes: {', '.join(data_names)}. Accuracy: one pass; TTA: the card's test-time augmentation "
              "and the accuracy with it; balanced accuracy and macro-F1 with the card's augmentation (one pass "
              "where it names none; the one-pass balanced accuracy beside it). MACs and latency: one pass of one "
              "image (latency: median on the CPU). Classes a model has and the data set lacks are dropped (argmax "
              "over the shared classes).", "",
              "| weights | examples | accuracy % | TTA | accuracy with TTA % | balanced accuracy % | balanced, one "
              "pass % | macro-F1 % | parameters | MACs | latency ms | storage | sha256 | notes |",
              "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        notes = []
        if r["dropped_classes"]:
            notes.append(f"dropped classes: {r['dropped_classes']}")
        if r["unscored_examples"]:
            notes.append(f"{r['unscored_examples']} examples of classes the model lacks not scored")
        if r["error"]:
            notes.append(f"error: {r['error']}")
        tag = Path(r["tag"]).name if W._looks_like_path(r["tag"]) else r["tag"]
        latency = "-" if r["latency_ms"] in ("", None) else f"{float(r['latency_ms']):.2f}"
        lines.append(
            f"| {r['model']}.{tag} | {r['examples'] or '-'} | {_pct(r['accuracy'])} | {r['tta'] or '-'} | "
            f"{_pct(r['tta_accuracy'])} | {_pct(r['balanced_accuracy'])} | {_pct(r['balanced_accuracy_one_pass'])} | "
            f"{_pct(r['macro_f1'])} | "
            f"{_count(r['params'])} | {_count(r['macs'])} | {latency} | {r['storage'] or '-'} | "
            f"{str(r['sha256'])[:12] or '-'} | {'; '.join(notes).replace('|', '/')} |")
    measured = [r for r in rows if r.get("recall")]
    if measured:
        lines += ["", "Recall of each class % (with the card's augmentation; an ensemble: its members' cards):", "",
                  "| weights | " + " | ".join(data_names) + " |", "|---|" + "---:|" * len(data_names)]
        for r in measured:
            recall = dict(item.split(":") for item in r["recall"].split())
            tag = Path(r["tag"]).name if W._looks_like_path(r["tag"]) else r["tag"]
            cells = [_pct(recall[n]) if n in recall else "-" for n in data_names]
            lines.append(f"| {r['model']}.{tag} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
