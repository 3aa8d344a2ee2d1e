"""Calibration after temperature scaling: test ECE and reliability before and after each run's scaling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.eval.calibration import expected_calibration_error, reliability_curve
from ecgadapt.eval.figures import before_after_reliability_figure
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.text import fmt, mean_std, slug
from ecgadapt.eval.temperature import apply_temperature, load_calibration, temperatures_for


def build(ctx: ReportContext) -> Section:
    """ECE and reliability diagrams on the test fold before and after each run's temperature scaling."""
    title = "Calibration after temperature scaling"
    blocks: list[Any] = [
        f"Temperature scaling is fitted on each run's validation predictions (fold 9) only (`calibration.json`, "
        f"`ecgadapt calibrate`) and applied here to its test predictions (fold 10) at fraction {ctx.main_fraction:g}. "
        "Table and legends give the same ECE (defined in the overview: mean ± std over seeds of each run's ECE); "
        "the curves pool every seed. Scaling is monotone per class: AUROC and AUPRC are unchanged."
    ]
    rows, n_used = [], 0
    for setting in ctx.settings:
        for task in ctx.tasks:
            part = ctx.main[(ctx.main["setting"] == setting) & (ctx.main["task"] == task)]
            before_curves, after_curves, ece_before, ece_after = {}, {}, {}, {}
            for recipe in [r for r in ctx.recipes if r in set(part["recipe"])]:
                ys, raw, scaled, temps, modes = [], [], [], [], set()
                for d in part.loc[part["recipe"] == recipe, "run_dir"]:
                    cal = load_calibration(d)
                    if cal is None:
                        continue
                    p = ctx.predictions.get(d)
                    t = temperatures_for(cal, [str(c) for c in p["class_names"]])
                    ys.append(p["y_true"])
                    raw.append(p["y_score"])
                    scaled.append(apply_temperature(p["y_score"], t))
                    temps.append(float(np.exp(np.mean(np.log(t)))))
                    modes.add(cal["mode"])
                if not ys:
                    continue
                n_used += len(ys)
                ece_before[recipe] = mean_std([expected_calibration_error(y, s) for y, s in zip(ys, raw)])
                ece_after[recipe] = mean_std([expected_calibration_error(y, s) for y, s in zip(ys, scaled)])
                rows.append(
                    {
                        "Model": setting,
                        "Task": task,
                        "Recipe": recipe,
                        "Runs": len(ys),
                        "Mode": ", ".join(sorted(modes)),
                        "Mean temperature": fmt(float(np.mean(temps)), 3),
                        "Test ECE before": ece_before[recipe],
                        "Test ECE after": ece_after[recipe],
                    }
                )
                y = np.concatenate(ys)
                before_curves[recipe] = reliability_curve(y, np.concatenate(raw), n_bins=15)
                after_curves[recipe] = reliability_curve(y, np.concatenate(scaled), n_bins=15)
            if before_curves:
                fig = before_after_reliability_figure(
                    before_curves, after_curves, f"{task} ({setting})", ctx.colors, ece_before, ece_after
                )
                caption = f"Test reliability before and after temperature scaling, {task}, {setting}."
                blocks.append(ctx.figure(f"temperature_{slug(setting)}_{task}", fig, caption))
    if not rows:
        return Section(
            "temperature-scaling",
            title,
            absent="no run holds a calibration.json; fit one with `ecgadapt calibrate RUN` (new runs fit it themselves)",
        )
    blocks.insert(1, pd.DataFrame(rows))
    if n_used < len(ctx.main):
        blocks.append(
            f"{len(ctx.main) - n_used} run(s) at this fraction have no calibration.json and are left out."
        )
    return Section("temperature-scaling", title, blocks)
