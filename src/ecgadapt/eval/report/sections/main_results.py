"""Main results: each recipe's test metrics at the main fraction, with both intervals, budget and tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgadapt.eval.bootstrap import seed_summary
from ecgadapt.eval.metrics import MetricInputError
from ecgadapt.eval.pooling import ROTATE
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.stats import METRICS, sd, seed_averaged_bootstrap
from ecgadapt.eval.report.text import METRIC_NAMES, budget_text, ci, early_stopping_text, fmt, pm
from ecgadapt.eval.report.tuning import tuned_text


def build(ctx: ReportContext) -> Section:
    """The main results table."""
    rows = []
    for (setting, task, recipe), part in ctx.main.groupby(["setting", "task", "recipe"], sort=False):
        row = {"Model": setting, "Task": task, "Recipe": recipe, "Seeds": len(part)}
        aligned = ctx.predictions.aligned(list(part["run_dir"]))
        for metric in METRICS:
            values = part[f"test_{metric}"].to_numpy(float)
            s = seed_summary(values, ctx.alpha) if np.isfinite(values).all() else None
            label = METRIC_NAMES[metric]
            row[f"{label} mean ± std"] = pm(s["mean"], s["std"]) if s else "–"
            records_ci = "–"
            if aligned is not None:
                try:
                    b = seed_averaged_bootstrap(
                        aligned[0],
                        aligned[1],
                        metric,
                        ctx.n_resamples,
                        ctx.seed,
                        ctx.alpha,
                        ctx.predictions.groups(list(part["run_dir"])),
                    )
                    records_ci = ci(b["low"], b["high"])
                except MetricInputError:
                    pass
            row[f"{label} CI ({ctx.unit})"] = records_ci
            row[f"{label} CI (seeds, t)"] = ci(s["ci_low"], s["ci_high"]) if s else "–"
        ece = part["test_ece"].to_numpy(float)
        row["ECE mean ± std"] = pm(float(np.mean(ece)), sd(ece))
        if ROTATE in set(part["protocol"]):
            for metric in METRICS:
                fold_mean = pd.to_numeric(part.get(f"fold_mean_test_{metric}"), errors="coerce").to_numpy(
                    float
                )
                row[f"{METRIC_NAMES[metric]} per-fold mean"] = (
                    fmt(float(np.nanmean(fold_mean))) if np.isfinite(fold_mean).any() else "–"
                )
        row["Steps: max / used (mean)"] = budget_text(part)
        row["Early stopping: patience"] = early_stopping_text(part)
        row["Chosen on fold 9 (seeds)"] = tuned_text(part)
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("Chosen on fold 9 (seeds)", "Steps: max / used (mean)", "Early stopping: patience"):
        if col in df and not (df[col] != "–").any():
            df = df.drop(columns=[col])
    df = df.assign(setting=df["Model"], task=df["Task"], recipe=df["Recipe"])
    df = ctx.sort(df).drop(columns=["setting", "task", "recipe"])
    text = (
        f"Test-set results at training fraction {ctx.main_fraction:g}: mean ± std over seeds, "
        f"95% bootstrap CI over test {ctx.unit} of the seed-averaged metric, and 95% seed t-interval. Steps: the recipe's "
        "maximum optimiser steps (every recipe of a comparison gets the same) and the mean it used before early "
        "stopping. Early stopping: each stage's patience in epochs without a validation gain above min Δ "
        "(a spec shares one setting between its recipes unless a recipe sets its own). Chosen on fold 9: a tuned "
        "recipe's values picked by validation macro AUROC, with how many seeds picked them."
    )
    if ROTATE in set(ctx.main["protocol"]):
        text += (
            " Rotate-folds rows also give the per-fold mean: the mean of the ten folds' own test metrics, beside "
            "the pooled out-of-fold score."
        )
    return Section("main-results", "Main results", [text, df])
