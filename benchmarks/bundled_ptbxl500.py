"""Does post-training beat plain fine-tuning of the bundled encoder, fairly? Paired comparisons on ptbxl-500.

Runs, on ``../shared/data/ptbxl-500`` (official split: folds 1-8 train, 9 validation, 10 test, scored once per
run), for the chosen tasks and seeds, with the fair protocol of ``ecgadapt benchmark``:

- every recipe gets the same maximum budget (``--budget-epochs`` in all, shared by its stages, and at least
  ``training.min_steps`` optimiser steps) and the same early stopping (``--patience``, default 5 epochs, and
  ``min_delta`` 1e-3, for every stage of every recipe, ``scratch`` included);
- the bundled ``ecg_vit_tiny`` encoder with ``linear_probe``, the literal ``baseline_ft`` (the preset's
  hyper-parameters, as the paper describes it), and, with the same search on validation fold 9 (``--search``),
  a tuned ``baseline_ft``, ``lp_ft``, ``post_training`` and ``post_training_no_lp``;
- ``ecg_vit_tiny`` from random weights (``scratch``) and ``xresnet1d101`` from scratch, the task-specific CNN.

Then it writes, in ``--out``, ``comparisons.md`` / ``.json``: every recipe's test macro AUROC / AUPRC (mean ±
std over seeds, budget used, values chosen on fold 9), the paired differences (over seeds: mean, t-interval, p;
over test records: bootstrap of the seed-averaged difference, interval, p), and whether the literal baseline's
final training loss is below that of predicting each class's training prevalence (i.e. whether it learns).

    python benchmarks/bundled_ptbxl500.py --out runs/bundled-ptbxl500            # 5 seeds, 2 tasks: hours on 2 cores
    python benchmarks/bundled_ptbxl500.py --tasks superdiagnostic --seeds 3 --search lr=1e-4,1e-3  # smaller
    python benchmarks/bundled_ptbxl500.py --out runs/cnn-ptbxl500 --no-reference --also runs/bundled-ptbxl500 \
        --candidate cnn=xresnet1d_tiny:runs/pretrain-cnn/cnn/encoder.safetensors   # a candidate encoder (issue 12)
    python benchmarks/bundled_ptbxl500.py --out runs/cnn-rotate --protocol rotate-folds --drop-test-fold 9 \
        --candidate cnn=xresnet1d_tiny:src/ecgadapt/weights/xresnet1d_tiny.safetensors \
        --only cnn/post_training --only xresnet1d101/scratch --search lr=1e-4,1e-3   # every fold tests once

Under ``--protocol rotate-folds`` every cell is ten runs (fold k tests, fold k % 10 + 1 validates and chooses
the tuned values, the other eight train), scored on their pooled out-of-fold predictions: about six times the
test records of the official split. ``--drop-test-fold 9`` leaves out the predictions of the run that tests on
fold 9, whose records chose the bundled encoders.

A finished run is never trained again: rerun with more seeds or tasks to extend the same folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ecgadapt.bench.grid import run_benchmark
from ecgadapt.bench.tune import tune_override
from ecgadapt.eval.bootstrap import paired_seed_difference, pooled_paired_bootstrap
from ecgadapt.eval.metrics import macro_auprc, macro_auroc, per_class_table
from ecgadapt.eval.results import (
    ROTATE,
    collect_results,
    load_metrics,
    load_predictions,
    read_final,
    run_patient_ids,
    values_text,
)
from ecgadapt.paths import shared_dir
from ecgadapt.train.config import _numeric

METRICS = {"macro_auroc": macro_auroc, "macro_auprc": macro_auprc}
TUNED = ("baseline_ft_tuned", "lp_ft", "post_training", "post_training_no_lp")
COMPARISONS = (  # (a, b): is a better than b?  Each side is (model label, recipe label)
    (("bundled", "post_training"), ("bundled", "baseline_ft")),
    (("bundled", "post_training"), ("bundled", "baseline_ft_tuned")),
    (("bundled", "baseline_ft_tuned"), ("bundled", "baseline_ft")),
    (("bundled", "post_training"), ("bundled", "lp_ft")),
    (("bundled", "post_training"), ("bundled", "post_training_no_lp")),
    (("bundled", "post_training"), ("bundled", "linear_probe")),
    (("bundled", "post_training"), ("xresnet1d101", "scratch")),
    (("bundled", "post_training"), ("xresnet1d101", "scratch_tuned")),
    (("xresnet1d101", "scratch_tuned"), ("xresnet1d101", "scratch")),
    (("bundled", "post_training"), ("random", "scratch")),
    (("bundled", "linear_probe"), ("random", "scratch")),
)


def candidate_comparisons(label: str) -> tuple:
    """A candidate encoder against the task-specific CNN, today's bundled encoder and its own random init."""
    return (
        ((label, "post_training"), ("xresnet1d101", "scratch")),
        ((label, "post_training"), ("xresnet1d101", "scratch_tuned")),
        ((label, "post_training"), ("bundled", "post_training")),
        ((label, "post_training"), (f"{label}_random", "scratch")),
        ((label, "linear_probe"), (f"{label}_random", "linear_probe")),
        ((label, "post_training"), (label, "linear_probe")),
    )


def parse_candidate(text: str) -> dict:
    """``"cnn=xresnet1d_tiny:runs/pretrain-cnn/cnn/encoder.safetensors"`` -> label, model and weights."""
    label, _, rest = text.partition("=")
    model, _, weights = rest.partition(":")
    if not (label and model and weights):
        raise SystemExit(f"--candidate {text!r}: expected LABEL=MODEL:WEIGHTS")
    if not Path(weights).is_file():
        raise SystemExit(f"--candidate {text!r}: no weights file {weights}; pretrain it first")
    return {"label": label, "model": model, "weights": str(Path(weights).resolve())}


def parse_search(items: list[str]) -> dict:
    """``["lr=1e-4,1e-3", "head_lr_scale=1,10"]`` -> ``{"lr": [1e-4, 1e-3], "head_lr_scale": [1, 10]}``."""
    import yaml

    out = {}
    for item in items:
        key, value = tune_override(item).removeprefix("tune.").split("=", 1)
        out[key] = [_numeric(v) for v in yaml.safe_load(value)]
    return out


def spec(
    tasks: list[str],
    seeds: int,
    budget_epochs: int,
    search: dict,
    weights: str,
    candidates: list[dict] = (),
    reference: bool = True,
    protocol: str = "official",
    only: list[str] = (),
    tune_scratch: bool = False,
    patience: int | None = 5,
    min_delta: float = 1e-3,
) -> dict:
    """The grid: the bundled encoder (six recipes, four of them tuned), random init, and the task-specific CNN
    (``reference``); and per candidate encoder, its linear probe and tuned post-training beside its random init.
    ``tune_scratch`` adds ``xresnet1d101`` from scratch with the same search (``scratch_tuned``); ``only``
    (``"LABEL/RECIPE"`` items) keeps just those cells. Every recipe stops early alike (``patience``,
    ``min_delta``)."""
    bundled = ["linear_probe", "baseline_ft", *TUNED]
    models = (
        [
            {"name": "ecg_vit_tiny", "weights": weights, "label": "bundled", "recipes": bundled},
            {"name": "ecg_vit_tiny", "weights": None, "label": "random", "recipes": ["scratch"]},
            {
                "name": "xresnet1d101",
                "weights": None,
                "recipes": ["scratch", *(["scratch_tuned"] if tune_scratch else [])],
            },
        ]
        if reference
        else []
    )
    for c in candidates:
        models.append(
            {
                "name": c["model"],
                "weights": c["weights"],
                "label": c["label"],
                "recipes": ["linear_probe", "post_training"],
            }
        )
        models.append(
            {
                "name": c["model"],
                "weights": None,
                "label": f"{c['label']}_random",
                "recipes": ["linear_probe", "scratch"],
            }
        )
    if only:
        models = keep_only(models, only)
    return {
        "name": "bundled-ptbxl500",
        "description": "bundled ecg_vit_tiny: literal and tuned baselines against tuned post-training, equal budgets",
        "protocol": protocol,
        "models": models,
        "tasks": list(tasks),
        "recipes": [
            "linear_probe",
            "baseline_ft",
            {"name": "baseline_ft", "label": "baseline_ft_tuned", "tune": search},
            {"name": "lp_ft", "tune": search},
            {"name": "post_training", "tune": search},
            {"name": "post_training_no_lp", "tune": search},
            "scratch",
            {"name": "scratch", "label": "scratch_tuned", "tune": search},
        ],
        "fractions": [1.0],
        "seeds": list(range(seeds)),
        "overrides": {"data.rate": 100, "training.num_workers": 0, "training.progress": False},
        "stage_overrides": {},
        "budget_epochs": budget_epochs,
        "patience": patience,
        "min_delta": min_delta,
    }


def keep_only(models: list[dict], only: list[str]) -> list[dict]:
    """The spec's models with only the ``"LABEL/RECIPE"`` cells of ``only``; an item matching no cell is an error."""
    wanted = {tuple(item.split("/", 1)) for item in only}
    kept = [
        {**m, "recipes": [r for r in m["recipes"] if (m.get("label", m["name"]), r) in wanted]}
        for m in models
    ]
    found = {(m.get("label", m["name"]), r) for m in kept for r in m["recipes"]}
    if wanted - found:
        raise SystemExit(f"--only {sorted('/'.join(w) for w in wanted - found)}: no such cell in this grid")
    return [m for m in kept if m["recipes"]]


def predictions(run_dir: str) -> dict:
    """A run's test predictions; for a rotate-folds cell, its folds' pooled out-of-fold predictions (without
    the dropped test folds when the table was collected with ``drop_test_folds``: its run_dir names that view)."""
    return load_predictions(run_dir)


def _rows(table: pd.DataFrame, task: str, side: tuple[str, str]) -> pd.DataFrame:
    return table[(table.task == task) & (table.model == side[0]) & (table.recipe == side[1])].sort_values(
        "seed"
    )


def _kept_classes(pred: dict, run_dirs, min_test_positives: int) -> np.ndarray:
    """Classes every run of ``run_dirs`` scores: not left out by any of them (untrained, too few test positives)
    and with at least ``min_test_positives`` positives among the test records of ``pred`` (their predictions)."""
    excluded = set()
    for d in run_dirs:
        excluded |= set((read_final(d).get("test") or {}).get("excluded_classes") or [])
    keep = np.array([c not in excluded for c in pred["class_names"]])
    return keep & (pred["y_true"].sum(axis=0) >= min_test_positives)


def _metric(pred: dict, metric: str, keep: np.ndarray) -> float:
    return float(METRICS[metric](pred["y_true"][:, keep], pred["y_score"][:, keep]))


def compare(
    table: pd.DataFrame,
    task: str,
    a: tuple[str, str],
    b: tuple[str, str],
    metric: str,
    n_resamples: int,
    min_test_positives: int = 1,
    bootstrap_groups: str = "records",
) -> dict | None:
    """Paired difference a - b of one test metric over seeds, and by a paired bootstrap over records (or, with
    ``bootstrap_groups="patient"``, over patients), on the classes both score with at least
    ``min_test_positives`` test positives (recomputed from the predictions)."""
    rows = {side: _rows(table, task, side) for side in (a, b)}
    if any(r.empty for r in rows.values()):
        return None
    common = sorted(set(rows[a].seed) & set(rows[b].seed))
    rows = {side: r[r.seed.isin(common)] for side, r in rows.items()}
    preds = {side: [predictions(d) for d in r.run_dir] for side, r in rows.items()}
    ref = preds[a][0]
    for p in preds[a] + preds[b]:
        if not np.array_equal(p["ecg_ids"], ref["ecg_ids"]):
            raise SystemExit("runs were not scored on the same records: cannot pair them")
    keep = _kept_classes(ref, [d for r in rows.values() for d in r.run_dir], min_test_positives)
    by_seed = {
        side: {int(s): _metric(p, metric, keep) for s, p in zip(rows[side].seed, preds[side])}
        for side in rows
    }
    seeds = paired_seed_difference(by_seed[a], by_seed[b])
    groups = None
    if bootstrap_groups == "patient":
        patients = run_patient_ids(rows[a].run_dir.iloc[0], "test", ref)
        groups = np.where(patients < 0, patients.max() + 1 + np.arange(len(patients)), patients)
    boot = pooled_paired_bootstrap(
        ref["y_true"][:, keep],
        [p["y_score"][:, keep] for p in preds[a]],
        [p["y_score"][:, keep] for p in preds[b]],
        metric=metric,
        n_resamples=n_resamples,
        seed=0,
        groups=groups,
    )
    return {
        "task": task,
        "a": "/".join(a),
        "b": "/".join(b),
        "metric": metric,
        "n_classes": int(keep.sum()),
        "a_mean": float(np.mean(list(by_seed[a].values()))),
        "b_mean": float(np.mean(list(by_seed[b].values()))),
        "seed_diff": seeds["mean_diff"],
        "seed_low": seeds["ci_low"],
        "seed_high": seeds["ci_high"],
        "seed_p": seeds["p_value"],
        "n_seeds": seeds["n"],
        "boot_diff": boot["diff"],
        "boot_low": boot["low"],
        "boot_high": boot["high"],
        "boot_p": boot["p_value"],
        "bootstrap_groups": boot["grouping"],
    }


def chosen_counts(run_dirs) -> pd.Series:
    """How often each tuned choice was made: per run, or per fold of rotate-folds cells."""
    choices = []
    for d in run_dirs:
        tuning = read_final(d).get("tuning") or {}
        choices += tuning.get("chosen_values_by_fold") or [tuning.get("chosen_values") or {}]
    return pd.Series([values_text(c) for c in choices if c], dtype=object).value_counts()


def per_class_differences(
    table: pd.DataFrame, task: str, a: tuple[str, str], b: tuple[str, str]
) -> list[dict]:
    """Per class: test positives and the seed-mean AUROC / AUPRC of a and b (paired seeds), to see whether a
    macro difference is broad or one class's."""
    rows = {side: _rows(table, task, side) for side in (a, b)}
    if any(r.empty for r in rows.values()):
        return []
    common = sorted(set(rows[a].seed) & set(rows[b].seed))
    means = {}
    for side, r in rows.items():
        per_seed = [
            per_class_table(p["y_true"], p["y_score"], list(p["class_names"]))
            for p in (predictions(d) for d in r[r.seed.isin(common)].run_dir)
        ]
        means[side] = pd.concat(per_seed).groupby("class", sort=False)[["auroc", "auprc", "n_pos"]].mean()
    out = []
    for cls, ra in means[a].iterrows():
        rb = means[b].loc[cls]
        if np.isfinite(ra.auroc) and np.isfinite(rb.auroc):
            out.append(
                {
                    "task": task,
                    "a": "/".join(a),
                    "b": "/".join(b),
                    "class": str(cls),
                    "n_pos": int(ra.n_pos),
                    "a_auroc": float(ra.auroc),
                    "b_auroc": float(rb.auroc),
                    "a_auprc": float(ra.auprc),
                    "b_auprc": float(rb.auprc),
                }
            )
    return out


def recipe_table(table: pd.DataFrame, min_test_positives: int = 1) -> list[dict]:
    """Per task, model and recipe: seed mean ± std of the test metrics (recomputed from the predictions on the
    classes with at least ``min_test_positives`` test positives), budget, steps used, chosen values."""
    out = []
    for (task, model, recipe), r in table.groupby(["task", "model", "recipe"], sort=True):
        chosen = chosen_counts(r.run_dir)
        preds = [predictions(d) for d in r.run_dir]
        keeps = [_kept_classes(p, [d], min_test_positives) for p, d in zip(preds, r.run_dir)]
        auroc = np.array([_metric(p, "macro_auroc", k) for p, k in zip(preds, keeps)])
        auprc = np.array([_metric(p, "macro_auprc", k) for p, k in zip(preds, keeps)])
        out.append(
            {
                "task": task,
                "model": model,
                "recipe": recipe,
                "n_seeds": len(r),
                "n_classes": int(keeps[0].sum()),
                "auroc_mean": float(auroc.mean()),
                "auroc_std": float(auroc.std(ddof=1)) if len(r) > 1 else float("nan"),
                "auprc_mean": float(auprc.mean()),
                "auprc_std": float(auprc.std(ddof=1)) if len(r) > 1 else float("nan"),
                "max_steps": int(r.max_total_steps.max()) if r.max_total_steps.notna().any() else None,
                "steps_used": float(pd.to_numeric(r.steps_run, errors="coerce").mean()),
                "chosen": "; ".join(f"{k} ({n})" for k, n in chosen.items()),
            }
        )
    return out


def baseline_learns(table: pd.DataFrame) -> list[dict]:
    """Per literal-baseline run: final training loss against the loss of predicting the training prevalences."""
    out = []
    for _, r in table[(table.model == "bundled") & (table.recipe == "baseline_ft")].iterrows():
        final = read_final(r.run_dir)
        last = float(load_metrics(r.run_dir)["train_loss"].iloc[-1])
        prevalence = (final.get("prevalence_loss") or {}).get("train")
        out.append(
            {
                "task": r.task,
                "seed": int(r.seed),
                "final_train_loss": last,
                "prevalence_loss": prevalence,
                "learns": prevalence is not None and last < prevalence,
            }
        )
    return out


def to_markdown(
    recipes: list[dict],
    results: list[dict],
    learns: list[dict],
    protocol: str = "official",
    per_class: list[dict] = (),
    dropped: list[int] = (),
    bootstrap_groups: str = "records",
) -> str:
    """The recipe table, the comparison table and the literal baseline's loss check, as Markdown."""
    chosen = "chosen on fold 9" if protocol == "official" else "chosen on each fold's validation fold (folds)"
    lines = []
    if dropped:
        lines += [
            f"Rotate-folds cells without the runs that test on fold(s) {', '.join(map(str, sorted(dropped)))}: "
            "every column (scores, classes, steps, choices) counts only the other folds.",
            "",
        ]
    lines += [
        f"| task | model | recipe | seeds | classes | test macro AUROC | test macro AUPRC | max steps | steps used | {chosen} |",
        "|---|---|---|---:|---:|---|---|---:|---:|---|",
    ]
    for r in recipes:
        lines.append(
            f"| {r['task']} | {r['model']} | {r['recipe']} | {r['n_seeds']} | {r['n_classes']} "
            f"| {r['auroc_mean']:.3f} ± {r['auroc_std']:.3f} "
            f"| {r['auprc_mean']:.3f} ± {r['auprc_std']:.3f} | {r['max_steps']} | {r['steps_used']:.0f} | {r['chosen'] or '–'} |"
        )
    lines += [
        "",
        "| task | metric | classes | a | b | a mean | b mean | a − b (seeds, 95% t-CI, p) | "
        f"a − b ({'patient' if bootstrap_groups == 'patient' else 'record'} bootstrap, 95% CI, p) |",
        "|---|---|---:|---|---|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['metric']} | {r['n_classes']} | {r['a']} | {r['b']} | {r['a_mean']:.3f} | {r['b_mean']:.3f} | "
            f"{r['seed_diff']:+.3f} [{r['seed_low']:+.3f}, {r['seed_high']:+.3f}], p={r['seed_p']:.3f} | "
            f"{r['boot_diff']:+.3f} [{r['boot_low']:+.3f}, {r['boot_high']:+.3f}], p={r['boot_p']:.3f} |"
        )
    if per_class:
        lines += [
            "",
            "Per class, seed means (every class with test positives, also those the macro scores leave out):",
            "",
            "| task | a | b | class | test positives | AUROC a | AUROC b | a − b | AUPRC a | AUPRC b | a − b |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['task']} | {r['a']} | {r['b']} | {r['class']} | {r['n_pos']} | {r['a_auroc']:.3f} | "
            f"{r['b_auroc']:.3f} | {r['a_auroc'] - r['b_auroc']:+.3f} | {r['a_auprc']:.3f} | {r['b_auprc']:.3f} | "
            f"{r['a_auprc'] - r['b_auprc']:+.3f} |"
            for r in per_class
        ]
    if not learns:
        return "\n".join(lines)
    n_learn = sum(r["learns"] for r in learns)
    lines += ["", f"Literal baseline_ft ends below the prevalence loss in {n_learn} of {len(learns)} runs:"]
    lines += [
        f"- {r['task']} seed {r['seed']}: final train loss {r['final_train_loss']:.4f}, prevalence loss "
        + (f"{r['prevalence_loss']:.4f}" if r["prevalence_loss"] is not None else "– (not recorded)")
        for r in learns
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the grid (resuming finished cells) and write the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(shared_dir() / "data" / "ptbxl-500"))
    parser.add_argument("--out", default="runs/bundled-ptbxl500")
    parser.add_argument("--weights", default="bundled", help="encoder checkpoint (default: the bundled one)")
    parser.add_argument("--tasks", nargs="+", default=["superdiagnostic", "rhythm"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--budget-epochs", type=int, default=40, help="every recipe's total epochs (default 40)"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=5,
        help="every recipe's early-stopping patience in epochs, with min_delta 1e-3 (default 5)",
    )
    parser.add_argument(
        "--search",
        action="append",
        default=None,
        metavar="KEY=V1,V2",
        help="fold-9 search of the tuned recipes (default lr=1e-4,3e-4,1e-3 and head_lr_scale=1,10)",
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="LABEL=MODEL:WEIGHTS",
        help="also evaluate a pretrained candidate encoder (linear probe, tuned post-training, "
        "and the same architecture from random weights)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="train only the candidates (compare them with the reference runs of --also)",
    )
    parser.add_argument(
        "--min-test-positives",
        type=int,
        default=1,
        metavar="K",
        help="score only classes with at least K positives among the test records (default 1)",
    )
    parser.add_argument(
        "--protocol",
        choices=("official", ROTATE),
        default="official",
        help="official split, or rotate-folds: every fold tests once (ten runs per cell, pooled)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="LABEL/RECIPE",
        help="train only these cells of the grid (e.g. cnn/post_training, xresnet1d101/scratch)",
    )
    parser.add_argument(
        "--tune-scratch",
        action="store_true",
        help="also train xresnet1d101 from scratch with the same fold-9 search (scratch_tuned)",
    )
    parser.add_argument(
        "--drop-test-fold",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="rotate-folds: leave out the run that tests on fold K (repeatable; a fold that chose the "
        "encoder: 9 for the bundled ones) from every table, the class exclusions, budgets and choices",
    )
    parser.add_argument(
        "--bootstrap-groups",
        choices=("records", "patient"),
        default="records",
        help="what the paired bootstrap resamples: test records (default), or patients with all their records",
    )
    parser.add_argument(
        "--tables-only", action="store_true", help="write the tables from the runs there; train nothing"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="DIR",
        help="another results folder of this script (same data and seeds) whose runs join the tables",
    )
    args = parser.parse_args()

    search = parse_search(args.search or ["lr=1e-4,3e-4,1e-3", "head_lr_scale=1,10"])
    candidates = [parse_candidate(c) for c in args.candidate]
    grid = spec(
        args.tasks,
        args.seeds,
        args.budget_epochs,
        search,
        args.weights,
        candidates,
        not args.no_reference,
        args.protocol,
        args.only,
        args.tune_scratch,
        args.patience,
    )
    if not args.tables_only:
        run_benchmark(grid, args.data, args.out, jobs=args.jobs)
    table = pd.concat(
        [collect_results(d, drop_test_folds=args.drop_test_fold) for d in [args.out, *args.also]],
        ignore_index=True,
    )
    pairs = COMPARISONS + tuple(p for c in candidates for p in candidate_comparisons(c["label"]))
    results = [
        c
        for task in args.tasks
        for a, b in pairs
        for metric in ("macro_auroc", "macro_auprc")
        if (
            c := compare(
                table, task, a, b, metric, args.n_resamples, args.min_test_positives, args.bootstrap_groups
            )
        )
        is not None
    ]
    recipes, learns = (
        recipe_table(table, args.min_test_positives),
        baseline_learns(table),
    )
    decisive = [
        (c["label"], "post_training") for c in candidates
    ]  # each candidate against the task-specific CNN
    per_class = [
        r
        for task in args.tasks
        for a in decisive
        for r in per_class_differences(table, task, a, ("xresnet1d101", "scratch"))
    ]
    text = to_markdown(
        recipes, results, learns, args.protocol, per_class, args.drop_test_fold, args.bootstrap_groups
    )
    print(text)
    out = Path(args.out)
    suffix = f"-min{args.min_test_positives}pos" if args.min_test_positives > 1 else ""
    suffix += "-patients" if args.bootstrap_groups == "patient" else ""
    (out / f"comparisons{suffix}.md").write_text(text + "\n")
    payload = {
        "search": search,
        "budget_epochs": args.budget_epochs,
        "patience": args.patience,
        "min_test_positives": args.min_test_positives,
        "protocol": args.protocol,
        "drop_test_fold": args.drop_test_fold,
        "bootstrap_groups": args.bootstrap_groups,
        "candidates": candidates,
        "also": args.also,
        "recipes": recipes,
        "comparisons": results,
        "per_class": per_class,
        "literal_baseline_learns": learns,
    }
    (out / f"comparisons{suffix}.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
