"""Per-class results: each class's test AUROC and AUPRC per recipe, beside its prevalence."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.text import fmt
from ecgadapt.eval.results import collect_per_class


def build(ctx: ReportContext) -> Section:
    """The per-class section."""
    title = "Per-class results"
    long = collect_per_class(ctx.main)
    if long.empty:
        return Section("per-class", title, absent="final.json of the runs holds no per-class metrics")
    setting_of = dict(zip(ctx.main["run_dir"], ctx.main["setting"]))
    long["setting"] = long["run_dir"].map(setting_of)
    blocks: list[Any] = [
        f"Test AUROC and AUPRC per class at fraction {ctx.main_fraction:g}, mean over seeds. Prevalence is the "
        "share of test records with the class: the AUPRC of a random classifier. – marks a class without a "
        "positive (or negative) test record, which cannot be scored."
    ]
    for setting in ctx.settings:
        for task in ctx.tasks:
            part = long[(long["setting"] == setting) & (long["task"] == task)]
            if part.empty:
                continue
            first = part.drop_duplicates("class").set_index("class")
            out = pd.DataFrame(index=first.index)
            out["Positives"] = first["n_pos"].astype(int)
            out["Prevalence (AUPRC chance)"] = first["prevalence"].map(fmt)
            for recipe in [r for r in ctx.recipes if r in set(part["recipe"])]:
                g = part[part["recipe"] == recipe].groupby("class", sort=False)[["auroc", "auprc"]].mean()
                out[f"{recipe} AUROC"] = g["auroc"].reindex(out.index).map(fmt)
                out[f"{recipe} AUPRC"] = g["auprc"].reindex(out.index).map(fmt)
            blocks += [
                ("h3", f"{setting} — {task}"),
                out.reset_index().rename(columns={"class": "Class"}),
            ]
    return Section("per-class", title, blocks)
