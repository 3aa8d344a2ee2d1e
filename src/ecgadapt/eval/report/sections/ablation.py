"""Ablation: the treatment against its ablations (and the named baselines), paired over seeds and records."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecgadapt.eval.figures import ablation_figure
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.stats import compare_recipes, summarise
from ecgadapt.eval.report.text import METRIC_NAMES, boot_p_text, deltas, fmt, seed_p_text, slug


def build(ctx: ReportContext) -> Section:
    """The ablation section: it needs the roles' treatment (by its exact label) and one of its ablations."""
    ref = ctx.roles.treatment
    title = f"Ablation of {ref}"
    present = ctx.roles.ablations_in(ctx.recipes)
    if ref not in ctx.recipes or not present:
        why = (
            f"the results hold no {ref} run"
            if ref not in ctx.recipes
            else f"no ablation recipe ({', '.join(ctx.roles.ablations)}) was run"
        )
        return Section("ablation", title, absent=why)
    shown = [r for r in ctx.recipes if r in (ref, *ctx.roles.baselines, *present)]
    blocks: list[Any] = [
        f"Test metrics at fraction {ctx.main_fraction:g}; bars = mean over seeds, error bars = seed std, labels = "
        f"difference from {ref}'s mean. Deltas "
        f"are ablation − {ref}, paired over seeds (t-test) and over records (bootstrap of the seed-averaged "
        "difference)."
    ]
    rows = []
    for setting in ctx.settings:
        part = ctx.main[(ctx.main["setting"] == setting) & ctx.main["recipe"].isin(shown)]
        if part.empty:
            continue
        s = summarise(part, ["task", "recipe"], "test_macro_auroc", ctx.alpha)
        s = ctx.sort(s.assign(err=s["std"]))
        fig = ablation_figure(s, "test macro AUROC", ctx.colors, title=f"Ablation: {setting}", reference=ref)
        blocks.append(ctx.figure(f"ablation_{slug(setting)}", fig, f"Ablation of {ref}, {setting}."))
        for other in [r for r in shown if r != ref]:
            comp = compare_recipes(
                part,
                other,
                ref,
                ("setting", "task", "fraction"),
                ctx.n_resamples,
                ctx.seed,
                ctx.alpha,
                ctx.predictions,
            )
            rows.append(comp)
    comp = ctx.sort(pd.concat(rows, ignore_index=True)) if rows else pd.DataFrame()
    if not comp.empty:
        blocks.append(
            pd.DataFrame(
                {
                    "Model": comp["setting"],
                    "Task": comp["task"],
                    "Recipe": comp["a"],
                    "Metric": comp["metric"].map(METRIC_NAMES),
                    "Recipe mean": comp["mean_a"].map(fmt),
                    f"{ref} mean": comp["mean_b"].map(fmt),
                    "Δ over seeds [t CI]": deltas(comp, "seed"),
                    "p (paired t)": [seed_p_text(p, n) for p, n in zip(comp["seed_p"], comp["n_seeds"])],
                    f"Bootstrap Δ over {ctx.unit} [CI]": deltas(comp, "boot"),
                    "p (paired bootstrap)": [boot_p_text(p, ctx.n_resamples) for p in comp["boot_p"]],
                }
            )
        )
    return Section("ablation", title, blocks)
