"""Training dynamics: validation AUROC per epoch over all stages, per recipe, mean over seeds."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecgadapt.errors import DataError
from ecgadapt.eval.figures import training_dynamics_figure
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.text import slug
from ecgadapt.eval.results import load_metrics


def build(ctx: ReportContext) -> Section:
    """The training-dynamics section."""
    title = "Training dynamics"
    blocks: list[Any] = [
        f"Validation macro AUROC per epoch at fraction {ctx.main_fraction:g}, mean over seeds (and folds) with a "
        "min-max band; stages are laid end to end, each at the length of its longest run, and dashed lines mark "
        "where a stage starts."
    ]
    any_curve = False
    for setting in ctx.settings:
        curves, bounds = [], []
        part = ctx.main[ctx.main["setting"] == setting]
        for (task, recipe), grp in part.groupby(["task", "recipe"], sort=False):
            logs = []
            for d in grp["run_dir"]:
                try:
                    m = load_metrics(d)
                except DataError:
                    continue
                if not m.empty:
                    logs.append(m)
            if not logs:
                continue
            c, b = _align_curves(logs, "val_macro_auroc")
            curves.append(c.assign(task=task, recipe=recipe))
            bounds.append(b.assign(task=task, recipe=recipe))
        if not curves:
            continue
        any_curve = True
        cdf = ctx.sort(pd.concat(curves, ignore_index=True))
        bdf = pd.concat(bounds, ignore_index=True)
        fig = training_dynamics_figure(
            cdf, bdf, "val_macro_auroc", ctx.colors, title=f"Training dynamics: {setting}"
        )
        blocks.append(
            ctx.figure(f"training_dynamics_{slug(setting)}", fig, f"Validation AUROC per epoch, {setting}.")
        )
    if not any_curve:
        return Section("training-dynamics", title, absent="no run directory holds a metrics.csv")
    return Section("training-dynamics", title, blocks)


def _align_curves(logs: list[pd.DataFrame], column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean/min/max of ``column`` per (stage, epoch) over runs, stages laid end to end; and stage starts."""
    stages = sorted({int(s) for m in logs for s in m["stage"].dropna()})
    length = {
        s: max(int(m.loc[m["stage"] == s, "epoch"].max()) + 1 for m in logs if (m["stage"] == s).any())
        for s in stages
    }
    offset, pos = {}, 0
    for s in stages:
        offset[s] = pos
        pos += length[s]
    rows = []
    for m in logs:
        for stage, epoch, value, name in zip(m["stage"], m["epoch"], m[column], m["stage_name"]):
            rows.append(
                {
                    "x": offset[int(stage)] + int(epoch),
                    "value": value,
                    "stage": int(stage),
                    "stage_name": name,
                }
            )
    df = pd.DataFrame(rows)
    curve = df.groupby("x")["value"].agg(["mean", "min", "max"]).reset_index()
    curve = curve.rename(columns={"min": "low", "max": "high"})
    names = df.drop_duplicates("stage").set_index("stage")["stage_name"]
    bounds = pd.DataFrame(
        [{"x": offset[s], "stage_name": names.get(s, f"stage {s}")} for s in stages[1:]],
        columns=["x", "stage_name"],
    )
    return curve, bounds
