"""The CK+ / MMI protocol of the paper (spec 5): five folds, each trained with the recipe and reported as the mean
test-fold accuracy of its last 10 epochs; the reported number is the mean over the folds.

``python -m ferzoo_plugins.lnlattennet.crossval --dataset ckplus --data-dir D --output runs/lnl_ckplus``

Each fold k runs ``ferzoo.train.train(..., dataset_options={**recipe dataset_options, "fold": k})`` into
``OUTPUT/fold<k>/`` (validating on the recipe's ``val_split``, the test fold); ``OUTPUT/summary.json`` holds the
per-fold figures and their mean and standard deviation. The folds are the readers' subject-independent folds
(``ferzoo.data.folds.subject_folds``; spec 8.11: the paper does not say subject-independent). The recipe's
``dataset_options`` say which frames are read (CK+: contempt left out, the last frame and one neutral frame per
sequence; MMI: one apex and one neutral frame per session); ``--dataset-option key=value`` overrides them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence


def fold_summary(fold_metrics: Sequence[Mapping[str, Any]], k: int = 10) -> dict:
    """Per-fold metrics (a weight card's ``metrics``: ``mean_last_{k}_accuracy`` and ``accuracy``) -> the mean
    and population standard deviation over the folds of each fold's last-k-epoch mean."""
    key = f"mean_last_{k}_accuracy"
    if not fold_metrics:
        raise ValueError("fold_summary: no folds")
    values = []
    for i, metrics in enumerate(fold_metrics):
        value = metrics.get(key)
        if value is None:
            raise ValueError(f"fold {i}: its metrics have no {key!r} (the recipe's protocol report_mean_last must "
                             f"be {k}); keys: {sorted(metrics)}")
        values.append(float(value))
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"folds": len(values), "metric": key, "per_fold": values, "mean": mean, "std": std,
            "last_epoch_accuracy": [float(m.get("accuracy", float("nan"))) for m in fold_metrics]}


def run_folds(model: str = "lnlattennet", dataset: str = "ckplus", data_dir=None, *, output, folds: int | None = None,
              recipe: str | None = None, dataset_options: Mapping[str, Any] | None = None, say=None,
              **train_kwargs) -> dict:
    """Train every fold and summarise them (see the module doc); returns the summary written to
    ``output/summary.json``."""
    import ferzoo
    from ferzoo.recipes import resolve_recipe
    from ferzoo.train import recipe_for, train

    recipe_name, _ = recipe_for(model, dataset, recipe)
    rec = resolve_recipe(ferzoo.model_info(model).recipe_table(), recipe_name, model)
    opts = {**dict(rec.get("dataset_options") or {}), **dict(dataset_options or {})}
    folds = int(folds or opts.get("folds") or rec.get("folds") or 5)
    if folds < 2:
        raise ValueError(f"--folds must be an integer >= 2, got {folds}")
    opts["folds"] = folds
    k = int(rec["protocol"]["report_mean_last"]) or 1
    out = Path(output)
    metrics = []
    for fold in range(folds):
        if say:
            say(f"fold {fold + 1}/{folds}")
        result = train(model, dataset=dataset, data_dir=data_dir, recipe=recipe_name, output=str(out / f"fold{fold}"),
                       dataset_options={**opts, "fold": fold}, say=say, **train_kwargs)
        if result["card"] is None or "metrics" not in result["card"]:
            raise ValueError(f"fold {fold}: the run has no validation metrics (does the recipe validate on 'test'?)")
        metrics.append(result["card"]["metrics"])
    summary = {"model": model, "dataset": dataset, "recipe": recipe_name, "dataset_options": opts,
               **fold_summary(metrics, k)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _key_values(items, option: str) -> dict:
    from ferzoo.recipes import key_values

    try:
        return key_values(items)
    except ValueError as exc:
        raise SystemExit(f"error: {option} {exc}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lnlattennet")
    p.add_argument("--dataset", required=True, help="ckplus or mmi (any reader with subject-independent folds)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--output", required=True, help="folder for fold<k>/ and summary.json")
    p.add_argument("--folds", type=int, help="default: the recipe's (5)")
    p.add_argument("--recipe")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-option", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--config", nargs="*", metavar="KEY=VALUE", help="model config overrides")
    args = p.parse_args(argv)
    summary = run_folds(args.model, args.dataset, args.data_dir, output=args.output, folds=args.folds,
                        recipe=args.recipe, dataset_options=_key_values(args.dataset_option, "--dataset-option"),
                        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                        config=_key_values(args.config, "--config"),
                        say=lambda line: print(f"crossval: {line}", file=sys.stderr))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
