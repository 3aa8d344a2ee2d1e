"""The report's answer first: per task, the treatment's difference from each baseline with its intervals."""

from __future__ import annotations

import math

import pandas as pd

from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.sections.improvement import comparisons
from ecgadapt.eval.report.text import MIN_SEEDS_FOR_P, signed, signed_ci
from ecgadapt.eval.report.tuning import tuned_keys

HEADLINE_METRIC = "macro_auroc"


def _excludes_zero(low: float, high: float) -> bool:
    """Whether the interval ``[low, high]`` lies on one side of zero."""
    return math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0)


def verdict(row: pd.Series, unit: str = "records") -> str:
    """Significant when the bootstrap interval (over test ``unit``: records or patients) excludes zero and, from
    3 seeds on, the seed t-interval does too; with fewer seeds the verdict covers test-set sampling only, and
    says so."""
    if not _excludes_zero(row["boot_low"], row["boot_high"]):
        return "not significant"
    if row["n_seeds"] < MIN_SEEDS_FOR_P:
        return f"significant over test {unit}"
    if _excludes_zero(row["seed_low"], row["seed_high"]):
        return "significant"
    return "not significant over seeds"


def clause(row: pd.Series, baseline: str, unit: str = "records") -> str:
    """``post_training − baseline_ft_tuned (tuned: lr): −0.014 macro AUROC, records [−0.028, −0.003], seeds
    [−0.041, +0.013]: not significant over seeds``."""
    diff = row["boot_diff"] if math.isfinite(row["boot_diff"]) else row["mean_a"] - row["mean_b"]
    records = signed_ci(row["boot_low"], row["boot_high"])
    text = f"{row['a']} − {baseline}: {signed(diff)} macro AUROC, {unit} {records}"
    if row["n_seeds"] >= MIN_SEEDS_FOR_P:
        text += f", seeds {signed_ci(row['seed_low'], row['seed_high'])}"
    return f"{text}: {verdict(row, unit)}"


def sentences(ctx: ReportContext, comp: pd.DataFrame) -> list[str]:
    """One sentence per (model, task) at the main fraction: a clause per baseline, tuned baselines first."""
    out = []
    many_settings = len(ctx.settings) > 1
    for (setting, task), part in comp.groupby(["setting", "task"], sort=False):
        tuned = [bool(tuned_keys(ctx.table[ctx.table["recipe"] == b])) for b in part["b"]]
        part = part.assign(untuned=[not t for t in tuned]).sort_values("untuned", kind="stable")
        clauses = [clause(r, ctx.describe_recipe(r["b"]), ctx.unit) for _, r in part.iterrows()]
        where = f"**{task}** ({setting})" if many_settings else f"**{task}**"
        out.append(f"{where}: {'; '.join(clauses)}.")
    return out


def build(ctx: ReportContext) -> Section | None:
    """The headline; None when the results hold no comparison of the treatment with a baseline."""
    comp = comparisons(ctx)
    if comp.empty:
        return None
    comp = comp[(comp["metric"] == HEADLINE_METRIC) & (comp["fraction"] == ctx.main_fraction)]
    if comp.empty:
        return None
    lead = (
        f"Difference in test macro AUROC (seed means) at training fraction {ctx.main_fraction:g}, with 95% "
        f"intervals over test {ctx.unit} (paired bootstrap of the seed-averaged difference, {ctx.n_resamples} "
        f"resamples) and, from {MIN_SEEDS_FOR_P} seeds on, over seeds (paired t-interval); significant: every "
        "interval shown excludes 0. AUPRC and p-values: see the relative-improvement section."
    )
    few = sorted({int(n) for n in comp["n_seeds"] if n < MIN_SEEDS_FOR_P})
    if few:
        lead += (
            f" With {' or '.join(map(str, few))} seed{'s' if few != [1] else ''} no seed interval is shown: those "
            "verdicts cover test-set sampling, not training variation."
        )
    return Section("headline", "Result", [lead, *sentences(ctx, comp)], lead=True)
