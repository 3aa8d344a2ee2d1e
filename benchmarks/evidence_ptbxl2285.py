"""The fair comparison on ptbxl-2285 (issue 19): does post-training beat tuned fine-tuning of the default encoder,
and does the pretrained encoder beat the task-specific CNN, at five times ptbxl-500's scale?

Data: ``../shared/data/ptbxl-2285`` at 100 Hz, official split (folds 1-8 train: 1,773 records; fold 9 validates,
chooses every tuned value and stops early: 259; fold 10 is scored once per run: 253).

Two grids, each an ``ecgadapt benchmark`` results folder under ``--out`` (finished runs are never trained again,
so rerunning resumes and extends):

- ``main`` (every fraction 1.0): the default encoder (``xresnet1d_small`` with the bundled weights, pretrained on
  folds 1-8 only) with ``linear_probe``, the literal ``baseline_ft`` (the preset's lr 1e-4, as the paper describes
  it), and with the same fold-9 search (``--search``, default lr in {1e-4, 1e-3}) ``baseline_ft_tuned``,
  ``lp_ft`` and ``post_training``; the same architecture from random weights (``scratch``); ``xresnet1d101`` from
  scratch with the same search (``scratch_tuned``).
- ``fractions`` (superdiagnostic, 10% and 30% of the training folds, nested): ``post_training`` and
  ``baseline_ft_tuned`` of the default encoder and ``xresnet1d101`` ``scratch_tuned``.

Every recipe has the same budget (``--budget-epochs`` in all, shared by its stages, at least
``training.min_steps`` optimiser steps) and the same early stopping (the spec's shared patience). Then it writes
``OUT/comparisons.md`` / ``.json``: per recipe the test macro AUROC / AUPRC (seed mean ± std), steps, chosen
values; the paired differences (over seeds: mean, t-interval, p; over test records: bootstrap of the
seed-averaged difference) and per-class tables for the decisive comparisons.

    python benchmarks/evidence_ptbxl2285.py --out runs/evidence-2285 --seeds 3 --jobs 2
    python benchmarks/evidence_ptbxl2285.py --out runs/evidence-2285 --seeds 3 --tables-only
    python benchmarks/evidence_ptbxl2285.py --out runs/evidence-2285 --grids main --tasks superdiagnostic

Run it from a clone at a fixed commit (a long grid must not see the tree change half-way).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from bundled_ptbxl500 import (
    baseline_learns,
    compare,
    parse_search,
    per_class_differences,
    recipe_table,
    to_markdown,
)
from ecgadapt.bench.grid import run_benchmark
from ecgadapt.eval.results import collect_results
from ecgadapt.paths import shared_dir
from ecgadapt.weights import DEFAULT_MODEL

TUNED = ("baseline_ft_tuned", "lp_ft", "post_training")
FRACTIONS = (0.1, 0.3)
DEFAULT = "default"
REFERENCE = ("xresnet1d101", "scratch_tuned")
COMPARISONS = (  # (a, b): is a better than b?  Each side is (model label, recipe label)
    ((DEFAULT, "post_training"), (DEFAULT, "baseline_ft")),
    ((DEFAULT, "post_training"), (DEFAULT, "baseline_ft_tuned")),
    ((DEFAULT, "baseline_ft_tuned"), (DEFAULT, "baseline_ft")),
    ((DEFAULT, "post_training"), (DEFAULT, "lp_ft")),  # stochastic depth + dropout
    ((DEFAULT, "lp_ft"), (DEFAULT, "baseline_ft_tuned")),  # the preview probe
    ((DEFAULT, "post_training"), (DEFAULT, "linear_probe")),
    ((DEFAULT, "post_training"), REFERENCE),
    ((DEFAULT, "lp_ft"), REFERENCE),
    ((DEFAULT, "baseline_ft_tuned"), REFERENCE),
    ((DEFAULT, "linear_probe"), REFERENCE),
    ((DEFAULT, "post_training"), ("random", "scratch")),
    ((DEFAULT, "linear_probe"), ("random", "scratch")),
)
FRACTION_COMPARISONS = (  # the paper's data-efficiency claim: post-training on 30% against the baseline on all
    ((f"{DEFAULT}@0.3", "post_training"), (DEFAULT, "baseline_ft_tuned")),
    ((f"{DEFAULT}@0.3", "post_training"), (f"{DEFAULT}@0.3", "baseline_ft_tuned")),
    ((f"{DEFAULT}@0.1", "post_training"), (f"{DEFAULT}@0.1", "baseline_ft_tuned")),
    ((f"{DEFAULT}@0.3", "post_training"), ("xresnet1d101@0.3", "scratch_tuned")),
    ((f"{DEFAULT}@0.1", "post_training"), ("xresnet1d101@0.1", "scratch_tuned")),
    ((f"{DEFAULT}@0.3", "post_training"), REFERENCE),
)


def recipes(search: dict) -> list:
    """Every recipe entry of the grids (a model entry names the ones it runs)."""
    return [
        "linear_probe",
        "baseline_ft",
        {"name": "baseline_ft", "label": "baseline_ft_tuned", "tune": search},
        {"name": "lp_ft", "tune": search},
        {"name": "post_training", "tune": search},
        "scratch",
        {"name": "scratch", "label": "scratch_tuned", "tune": search},
    ]


def main_spec(tasks: list[str], seeds: int, budget_epochs: int, search: dict, weights: str) -> dict:
    """The main grid: every row of the fair comparison at the full training folds."""
    return {
        "name": "evidence-ptbxl2285",
        "description": "default encoder: literal and tuned baselines, lp_ft, post_training, linear probe; random "
        "init; xresnet1d101 tuned from scratch; equal budgets and patience, fold-9 search",
        "protocol": "official",
        "models": [
            {
                "name": DEFAULT_MODEL,
                "weights": weights,
                "label": DEFAULT,
                "recipes": ["linear_probe", "baseline_ft", *TUNED],
            },
            {"name": DEFAULT_MODEL, "weights": None, "label": "random", "recipes": ["scratch"]},
            {"name": "xresnet1d101", "weights": None, "recipes": ["scratch_tuned"]},
        ],
        "tasks": list(tasks),
        "recipes": recipes(search),
        "fractions": [1.0],
        "seeds": list(range(seeds)),
        "overrides": {"data.rate": 100, "training.num_workers": 0, "training.progress": False},
        "stage_overrides": {},
        "budget_epochs": budget_epochs,
    }


def fractions_spec(seeds: int, budget_epochs: int, search: dict, weights: str) -> dict:
    """The data-efficiency grid: superdiagnostic on 10% and 30% of the training folds."""
    spec = main_spec(["superdiagnostic"], seeds, budget_epochs, search, weights)
    spec["name"] = "evidence-ptbxl2285-fractions"
    spec["description"] = "data efficiency: post_training and the tuned baseline against xresnet1d101"
    spec["models"] = [
        {
            "name": DEFAULT_MODEL,
            "weights": weights,
            "label": DEFAULT,
            "recipes": ["baseline_ft_tuned", "post_training"],
        },
        {"name": "xresnet1d101", "weights": None, "recipes": ["scratch_tuned"]},
    ]
    spec["fractions"] = list(FRACTIONS)
    return spec


def with_fraction_labels(table: pd.DataFrame) -> pd.DataFrame:
    """The results table with ``@FRACTION`` appended to the model label of runs below the full training folds."""
    labels = [
        model if float(fraction) >= 1.0 else f"{model}@{float(fraction):g}"
        for model, fraction in zip(table["model"], table["fraction"], strict=True)
    ]
    return table.assign(model=labels)


def fold9_choice(table: pd.DataFrame, model: str = DEFAULT) -> list[dict]:
    """Per task, ``model``'s recipes ranked by mean fold-9 (validation) macro AUROC over seeds: the honest "best
    recipe", chosen without fold 10 (ties keep the table's order)."""
    rows = []
    own = table[table["model"] == model]
    for task, part in own.groupby("task", sort=True):
        means = (
            part.groupby("recipe", sort=False)[["val_macro_auroc", "val_macro_auprc"]]
            .agg(["mean", "count"])
            .sort_values(("val_macro_auroc", "mean"), ascending=False, kind="stable")
        )
        for rank, (recipe, m) in enumerate(means.iterrows()):
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "recipe": recipe,
                    "seeds": int(m[("val_macro_auroc", "count")]),
                    "val_auroc": float(m[("val_macro_auroc", "mean")]),
                    "val_auprc": float(m[("val_macro_auprc", "mean")]),
                    "chosen": rank == 0,
                }
            )
    return rows


def fold9_markdown(rows: list[dict]) -> str:
    """The fold-9 ranking of the default encoder's recipes as Markdown."""
    lines = [
        "Fold 9 (validation) macro AUROC / AUPRC of the default encoder's recipes, seed means; the first row of "
        "each task is its best recipe, chosen without fold 10:",
        "",
        "| task | recipe | seeds | fold-9 AUROC | fold-9 AUPRC | best on fold 9 |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['task']} | {r['recipe']} | {r['seeds']} | {r['val_auroc']:.3f} | {r['val_auprc']:.3f} "
        f"| {'yes' if r['chosen'] else ''} |"
        for r in rows
    ]
    return "\n".join(lines)


LABELS = {
    DEFAULT: "`xresnet1d_small`",
    "random": "`xresnet1d_small` (random init)",
    "xresnet1d101": "`xresnet1d101`",
}


def _model_name(model: str) -> tuple[str, float | None]:
    """``(README's name, training fraction or None)`` of a ``model[@fraction]`` label."""
    name, _, fraction = model.partition("@")
    return LABELS.get(name, name), float(fraction) if fraction else None


def _side(label: str) -> str:
    """``model/recipe`` as README writes it (``default`` is the bundled ``xresnet1d_small``)."""
    model, recipe = label.split("/")
    name, fraction = _model_name(model)
    where = f" at {fraction:.0%}" if fraction is not None else ""
    return f"{name} `{recipe}`{where}"


def _interval(mean: float, low: float, high: float) -> str:
    """``+0.012 [-0.003, +0.027]``, or the mean alone without an interval (one seed)."""
    return f"{mean:+.3f}" + ("" if pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]")


def headline_markdown(recipes: list[dict], results: list[dict]) -> str:
    """README's tables: test macro AUROC / AUPRC per recipe, then every paired difference with both intervals."""
    lines = [
        "| task | model | recipe | seeds | test macro AUROC | test macro AUPRC | chosen on fold 9 |",
        "|---|---|---|---:|---|---|---|",
    ]
    for r in recipes:
        name, fraction = _model_name(r["model"])
        where = f" ({fraction:.0%} of folds 1-8)" if fraction is not None else ""
        std = lambda v: "" if pd.isna(v) else f" ± {v:.3f}"  # noqa: E731 - one seed has no spread
        lines.append(
            f"| {r['task']} | {name}{where} | `{r['recipe']}` | {r['n_seeds']} "
            f"| {r['auroc_mean']:.3f}{std(r['auroc_std'])} | {r['auprc_mean']:.3f}{std(r['auprc_std'])} "
            f"| {r['chosen'] or '–'} |"
        )
    lines += [
        "",
        "| task | a − b | seeds | AUROC: seeds | AUROC: records | AUPRC: seeds | AUPRC: records |",
        "|---|---|---:|---|---|---|---|",
    ]
    pairs: dict[tuple, dict] = {}
    for c in results:
        pairs.setdefault((c["task"], c["a"], c["b"]), {})[c["metric"]] = c
    for (task, a, b), by_metric in pairs.items():
        auroc, auprc = by_metric.get("macro_auroc"), by_metric.get("macro_auprc")
        if auroc is None or auprc is None:
            continue
        cells = [
            cell
            for c in (auroc, auprc)
            for cell in (
                _interval(c["seed_diff"], c["seed_low"], c["seed_high"]),
                _interval(c["boot_diff"], c["boot_low"], c["boot_high"]),
            )
        ]
        lines.append(f"| {task} | {_side(a)} − {_side(b)} | {auroc['n_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run the grids (resuming finished cells) and write the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(shared_dir() / "data" / "ptbxl-2285"))
    parser.add_argument("--out", default="runs/evidence-2285")
    parser.add_argument("--weights", default="bundled", help="encoder checkpoint (default: the bundled one)")
    parser.add_argument("--tasks", nargs="+", default=["superdiagnostic", "rhythm"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--grids", nargs="+", choices=("main", "fractions"), default=["main", "fractions"])
    parser.add_argument("--budget-epochs", type=int, default=40)
    parser.add_argument("--search", action="append", default=None, metavar="KEY=V1,V2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--min-test-positives", type=int, default=1, metavar="K")
    parser.add_argument("--tables-only", action="store_true", help="write the tables; train nothing")
    args = parser.parse_args()

    search = parse_search(args.search or ["lr=1e-4,1e-3"])
    out = Path(args.out)
    specs = {
        "main": main_spec(args.tasks, args.seeds, args.budget_epochs, search, args.weights),
        "fractions": fractions_spec(args.seeds, args.budget_epochs, search, args.weights),
    }
    for name in args.grids:
        if not args.tables_only:
            run_benchmark(specs[name], args.data, out / name, jobs=args.jobs)
    folders = [out / name for name in ("main", "fractions") if (out / name / "runs").is_dir()]
    table = with_fraction_labels(pd.concat([collect_results(d) for d in folders], ignore_index=True))
    pairs = COMPARISONS + (FRACTION_COMPARISONS if "fractions" in args.grids else ())
    results = [
        c
        for task in args.tasks
        for a, b in pairs
        for metric in ("macro_auroc", "macro_auprc")
        if (c := compare(table, task, a, b, metric, args.n_resamples, args.min_test_positives)) is not None
    ]
    recipe_rows = recipe_table(table, args.min_test_positives)
    learns = baseline_learns(table.assign(model=table.model.replace({DEFAULT: "bundled"})))
    per_class = [
        r
        for task in args.tasks
        for a in ((DEFAULT, "post_training"), (DEFAULT, "linear_probe"))
        for r in per_class_differences(table, task, a, REFERENCE)
    ]
    choice = fold9_choice(table)
    text = to_markdown(recipe_rows, results, learns, "official", per_class) + "\n\n" + fold9_markdown(choice)
    print(text)
    suffix = f"-min{args.min_test_positives}pos" if args.min_test_positives > 1 else ""
    (out / f"comparisons{suffix}.md").write_text(text + "\n")
    (out / f"headline{suffix}.md").write_text(headline_markdown(recipe_rows, results) + "\n")
    payload = {
        "data": args.data,
        "search": search,
        "budget_epochs": args.budget_epochs,
        "min_test_positives": args.min_test_positives,
        "weights": args.weights,
        "recipes": recipe_rows,
        "comparisons": results,
        "per_class": per_class,
        "fold9_choice": choice,
        "literal_baseline_learns": learns,
    }
    (out / f"comparisons{suffix}.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
