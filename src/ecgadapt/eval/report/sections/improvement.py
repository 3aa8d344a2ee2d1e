"""Relative improvement of the treatment over every baseline (literal and tuned), with paired statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.stats import compare_recipes
from ecgadapt.eval.report.text import METRIC_NAMES, boot_p_text, deltas, fmt, seed_p_text, signed


def title_of(ctx: ReportContext) -> str:
    """``Relative improvement of post-training over the baselines`` (the roles' treatment, hyphenated)."""
    return f"Relative improvement of {ctx.roles.treatment.replace('_', '-')} over the baselines"


def comparisons(ctx: ReportContext) -> pd.DataFrame:
    """The treatment against every baseline in the results (:func:`compare_recipes` rows, in report order);
    empty when either is missing. Computed once per report."""
    return ctx.cached("treatment-vs-baselines", lambda: _compare_with_baselines(ctx))


def _compare_with_baselines(ctx: ReportContext) -> pd.DataFrame:
    treatment, baselines = ctx.treatment, ctx.roles.baselines_in(ctx.recipes)
    if treatment is None or not baselines:
        return pd.DataFrame()
    comps = [
        compare_recipes(
            ctx.table,
            treatment,
            b,
            ("setting", "task", "fraction"),
            ctx.n_resamples,
            ctx.seed,
            ctx.alpha,
            ctx.predictions,
        )
        for b in baselines
    ]
    comps = [c for c in comps if not c.empty]
    if not comps:
        return pd.DataFrame()
    comp = pd.concat(comps, ignore_index=True)
    return ctx.sort(comp.assign(recipe=comp["b"]))


def build(ctx: ReportContext) -> Section:
    """The relative-improvement section."""
    title = title_of(ctx)
    treatment = ctx.treatment
    baselines = ctx.roles.baselines_in(ctx.recipes)
    if treatment is None or not baselines:
        missing = [
            r
            for r, ok in ((ctx.roles.treatment, treatment), (" or ".join(ctx.roles.baselines), baselines))
            if not ok
        ]
        return Section("improvement", title, absent=f"the results hold no run of {', '.join(missing)}")
    comp = comparisons(ctx)
    if comp.empty:
        return Section("improvement", title, absent=f"no task has runs of both {treatment} and a baseline")
    df = pd.DataFrame(
        {
            "Model": comp["setting"],
            "Task": comp["task"],
            "Fraction": comp["fraction"].map(lambda f: f"{f:g}"),
            "Metric": comp["metric"].map(METRIC_NAMES),
            "Baseline": comp["b"].map(ctx.describe_recipe),
            "Baseline mean": comp["mean_b"].map(fmt),
            f"{treatment} mean": comp["mean_a"].map(fmt),
            "Rel. improvement": comp["rel_improvement_pct"].map(
                lambda v: f"{signed(v, 2)}%" if np.isfinite(v) else "–"
            ),
            "Seeds": comp["n_seeds"],
            "Paired Δ over seeds [t CI]": deltas(comp, "seed"),
            "p (paired t)": [seed_p_text(p, n) for p, n in zip(comp["seed_p"], comp["n_seeds"])],
            f"Bootstrap Δ over {ctx.unit} [CI]": deltas(comp, "boot"),
            "p (paired bootstrap)": [boot_p_text(p, ctx.n_resamples) for p in comp["boot_p"]],
            "Note": comp["note"],
        }
    )
    if not df["Note"].astype(bool).any():
        df = df.drop(columns=["Note"])
    text = (
        f"Relative improvement = ({treatment} − baseline) / baseline × 100%, on the seed means, against every "
        "baseline in the results: the literal `baseline_ft` (the preset's fixed hyper-parameters, as the paper "
        "describes it) and any tuned baseline (its learning rates chosen on the validation fold with the same "
        "search and budget as post-training). A gain over the literal baseline only can come from the baseline's "
        "hyper-parameters rather than from the method. The paired Δ over seeds is a paired t-test of per-seed "
        "differences (training variation); the bootstrap Δ resamples "
        f"test {ctx.unit} ({ctx.n_resamples} resamples) and scores every seed of both recipes on the same records "
        "(test-set sampling variation)."
    )
    return Section("improvement", title, [text, df])
