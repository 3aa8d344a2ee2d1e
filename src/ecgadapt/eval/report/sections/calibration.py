"""Calibration: reliability diagrams per task and each recipe's test ECE."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.eval.calibration import reliability_curve
from ecgadapt.eval.figures import reliability_figure
from ecgadapt.eval.metrics import MetricInputError
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.text import mean_std, slug


def build(ctx: ReportContext) -> Section:
    """The calibration section."""
    title = "Calibration"
    blocks: list[Any] = [
        f"Reliability diagrams at fraction {ctx.main_fraction:g}: predicted probability against the observed "
        "frequency, each curve pooling every seed's (record, class) pairs in the ECE's bins. The table and "
        "the legends give the same ECE: mean ± std over seeds of each run's ECE (defined in the overview)."
    ]
    ece_rows = []
    for setting in ctx.settings:
        for task in ctx.tasks:
            part = ctx.main[(ctx.main["setting"] == setting) & (ctx.main["task"] == task)]
            if part.empty:
                continue
            tables, ece_text = {}, {}
            for recipe in [r for r in ctx.recipes if r in set(part["recipe"])]:
                grp = part[part["recipe"] == recipe]
                preds = [ctx.predictions.get(d) for d in grp["run_dir"]]
                y = np.concatenate([p["y_true"] for p in preds])
                s = np.concatenate([p["y_score"] for p in preds])
                try:
                    tables[recipe] = reliability_curve(y, s, n_bins=15)
                except (MetricInputError, ValueError):
                    continue
                ece_text[recipe] = mean_std(grp["test_ece"].to_numpy(float))
                ece_rows.append(
                    {
                        "Model": setting,
                        "Task": task,
                        "Recipe": recipe,
                        "Seeds": len(grp),
                        "ECE mean ± std": ece_text[recipe],
                    }
                )
            if tables:
                fig = reliability_figure(tables, f"{task} ({setting})", ctx.colors, ece_text)
                blocks.append(
                    ctx.figure(f"reliability_{slug(setting)}_{task}", fig, f"Reliability, {task}, {setting}.")
                )
    if not ece_rows:
        return Section("calibration", title, absent="no run holds test predictions that can be binned")
    blocks.insert(1, pd.DataFrame(ece_rows))
    return Section("calibration", title, blocks)
