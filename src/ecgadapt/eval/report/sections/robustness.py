"""Robustness to shift: each recipe's test AUROC under seeded corruptions, mean over seeds."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.text import fmt, pm, slug
from ecgadapt.eval.robustness import (
    ROBUSTNESS_CSV,
    collect_robustness,
    robustness_figure,
    robustness_summary,
    summarise_robustness,
)

#: Why amplitude scaling can leave a model's scores unchanged.
AMPLITUDE_NOTE = (
    "**amplitude_scaling** multiplies each lead by its own gain. A model that rescales each lead on its own "
    "(per-lead z-score or min-max, `normalisation: lead` or `minmax`, as `ecg_vit_*`, `xresnet1d_tiny` and "
    "HuBERT-ECG do) divides every gain out again, and band-pass and resampling are linear, so its input and "
    "scores are unchanged at every severity: a flat amplitude_scaling curve there shows the preprocessing, not "
    "robustness. A model standardised over all leads at once (`normalisation: global`) still sees the gains' "
    "ratios between leads."
)


def build(ctx: ReportContext) -> Section:
    """The report's robustness section: recipes side by side."""
    title = "Robustness to shift"
    long = collect_robustness(ctx.main)
    if long.empty:
        return Section(
            "robustness",
            title,
            absent=f"no run holds a {ROBUSTNESS_CSV}; run `ecgadapt robustness RUN` on the runs of the benchmark",
        )
    summary = summarise_robustness(long)
    blocks: list[Any] = [
        f"Test macro AUROC at fraction {ctx.main_fraction:g} under seeded corruptions applied to the raw records "
        "before each model's preprocessing (`ecgadapt robustness`); severity 0 is the clean test split. Lines = mean "
        "over seeds, band = ± std. The table gives, per corruption, the clean AUROC, the mean over severities >= 1, "
        "their difference (drop: lower is more robust) and the worst severity. All panels of a figure share one "
        "y-axis."
    ]
    if "amplitude_scaling" in set(long["corruption"]):
        blocks.append(AMPLITUDE_NOTE)
    for setting in ctx.settings:
        for task in ctx.tasks:
            part = summary[(summary["setting"] == setting) & (summary["task"] == task)]
            if part.empty:
                continue
            part = ctx.sort(part)
            fig = robustness_figure(part, colors=ctx.colors, title=f"Robustness: {task} ({setting})")
            blocks.append(
                ctx.figure(f"robustness_{slug(setting)}_{task}", fig, f"Robustness, {task}, {setting}.")
            )
            s = robustness_summary(part)
            n = part.groupby("recipe", sort=False)["n"].max()
            clean_std = part[part["severity"] == 0].drop_duplicates("recipe").set_index("recipe")["std"]
            blocks += [
                ("h3", f"{setting} — {task}"),
                pd.DataFrame(
                    {
                        "Recipe": s["recipe"],
                        "Corruption": s["corruption"],
                        "Runs": s["recipe"].map(n),
                        "Clean AUROC": [
                            pm(c, clean_std.get(r, math.nan)) for c, r in zip(s["clean"], s["recipe"])
                        ],
                        "Mean corrupted": s["corrupted_mean"].map(fmt),
                        "Drop": s["drop"].map(lambda v: fmt(v, 4)),
                        "Worst": [f"{fmt(w)} ({lvl})" for w, lvl in zip(s["worst"], s["worst_level"])],
                    }
                ),
            ]
    missing = len(ctx.main) - long["run_dir"].nunique()
    if missing:
        blocks.append(f"{missing} run(s) at this fraction have no {ROBUSTNESS_CSV} and are left out.")
    return Section("robustness", title, blocks)
