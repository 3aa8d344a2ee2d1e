"""Data efficiency: test metrics against the training fraction, per recipe (absent with one fraction)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecgadapt.eval.figures import data_efficiency_figure
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.stats import METRICS, summarise
from ecgadapt.eval.report.text import pm, slug


def build(ctx: ReportContext) -> Section:
    """The data-efficiency section."""
    title = "Data efficiency"
    if len(ctx.fractions) < 2:
        return Section(
            "data-efficiency",
            title,
            absent=f"every run used the same training fraction ({ctx.fractions[0]:g}); a curve needs two or more",
        )
    blocks: list[Any] = [
        "Test metric against the fraction of the training folds used (nested, stratified subsets); line = mean "
        "over seeds, band = 95% seed t-interval (absent with one seed)."
    ]
    for setting in ctx.settings:
        part = ctx.table[ctx.table["setting"] == setting]
        frames = []
        for metric in METRICS:
            s = summarise(part, ["task", "recipe", "fraction"], f"test_{metric}", ctx.alpha)
            frames.append(s.assign(metric=metric, low=s["t_low"], high=s["t_high"]))
        summary = ctx.sort(pd.concat(frames, ignore_index=True))
        fig = data_efficiency_figure(summary, METRICS, ctx.colors, title=f"Data efficiency: {setting}")
        blocks.append(ctx.figure(f"data_efficiency_{slug(setting)}", fig, f"Data efficiency of {setting}."))
        auroc = summary[summary["metric"] == "macro_auroc"]
        wide = auroc.assign(v=[pm(m, s) for m, s in zip(auroc["mean"], auroc["std"])]).pivot_table(
            index=["task", "recipe"], columns="fraction", values="v", aggfunc="first"
        )
        wide.columns = [f"fraction {c:g}" for c in wide.columns]
        wide = ctx.sort(wide.reset_index()).rename(columns={"task": "Task", "recipe": "Recipe"})
        blocks += [("h3", f"{setting}: test macro AUROC (mean ± std) by fraction"), wide]
    return Section("data-efficiency", title, blocks)
