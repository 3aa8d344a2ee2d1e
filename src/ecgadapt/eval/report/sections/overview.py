"""Overview: the spec, what ran, the protocol and the statistics, runs left out, and warnings."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd

from ecgadapt.eval.pooling import ROTATE
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.text import MIN_SEEDS_FOR_P, early_stopping_text

OFFICIAL_NOTE = (
    "Only the official PTB-XL split (train folds 1-8, validation fold 9, test fold 10) is comparable with "
    "published numbers."
)


def build(ctx: ReportContext) -> Section:
    """The overview section."""
    t = ctx.table
    name = (ctx.spec_record.get("spec") or {}).get("name", "(no spec.yaml)")
    protocols = sorted(set(t["protocol"]))
    lines = [
        f"Spec **{name}**; results folder `{ctx.results_dir}`; {len(t)} finished cells "
        f"({int(t['n_folds'].sum())} fine-tuning runs); "
        f"generated {_dt.datetime.now().isoformat(timespec='seconds')}.",
        f"Models: {', '.join(ctx.settings)}. Tasks: {', '.join(ctx.tasks)}. Recipes: {', '.join(ctx.recipes)}. "
        f"Training fractions: {', '.join(f'{f:g}' for f in ctx.fractions)}. "
        f"Seeds: {', '.join(str(s) for s in sorted(set(t['seed'])))}.",
        f"Protocol: {', '.join(protocols)}. {OFFICIAL_NOTE}",
    ]
    if ROTATE in protocols:
        lines.append(
            "Rotate-folds cells ran ten times (fold k tests, fold k % 10 + 1 validates, the other eight train) and "
            "are scored on the pooled out-of-fold test predictions, so every record is scored exactly once; "
            "those numbers are NOT comparable with published ones."
        )
    dropped = sorted({str(v) for v in t.get("dropped_test_folds", pd.Series(dtype=object)).dropna() if v})
    if dropped:
        lines.append(
            f"**Test folds left out:** the rotate-folds cells are scored without the runs that test on fold(s) "
            f"{' / '.join(dropped)} (`--drop-test-fold`): every table, the class exclusions, the budget and the "
            "tuned choices count only the other folds."
        )
    grouping = (
        "records"
        if ctx.unit == "records"
        else "patients: each resample draws patients with replacement and holds all their test records, so "
        "records of one patient never count as independent (a record of unknown patient is its own group)"
    )
    lines.append(
        f"Statistics: mean ± std over seeds; **CI ({ctx.unit})** = 95% percentile bootstrap over test {ctx.unit} "
        f"of the seed-averaged metric ({ctx.n_resamples} resamples, classes kept scorable; bootstrap grouping: "
        f"{grouping}); **CI (seeds, t)** = 95% "
        "t-interval of the seed mean. p-values are shown only as far as the seeds and resamples support them: no "
        f"paired t-test p with fewer than {MIN_SEEDS_FOR_P} seeds, and one below 2^(1−n), the smallest p a "
        "sign-flip test over n seeds can reach, as < that floor; a bootstrap p at its floor 2/(B + 1) (every one "
        "of B resamples on one side of zero) as ≤ that floor. **ECE** = expected calibration error of one run's "
        "predictions over all (record, class) pairs in 15 equal-width bins; tables and figure legends give its "
        "mean ± std over seeds."
    )
    blocks: list[Any] = []
    if not ctx.left_out.empty:
        blocks = [
            f"Left out: {len(ctx.left_out)} other finished run(s) in the folder are not part of this spec's grid "
            "(or were run with another config) and appear nowhere in this report:",
            ctx.left_out,
        ]
    missing = sorted(set(ctx.spec_cells) - set(t["cell_id"]))
    if missing:
        lines.append(
            f"Note: {len(missing)} cell(s) of the spec have not finished (e.g. {', '.join(missing[:3])}); rerun "
            "`ecgadapt benchmark` with the same --out to finish them."
        )
    tainted = _with_positive_counts(t, ["pretraining_overlap_test", "pretraining_overlap_val"])
    if len(tainted):
        lines.append(
            f"**Warning:** {len(tainted)} run(s) start from weights pretrained on the (unlabelled) signals of "
            f"records in their test fold (up to {int(tainted['pretraining_overlap_test'].max())}) or validation "
            f"fold (up to {int(tainted['pretraining_overlap_val'].max())}): their scores are optimistic "
            "(`pretraining_overlap` in each run's final.json; the checkpoint's model card says how to leave them out)."
        )
    lines += _patient_and_unknown_overlap(t)
    patience = {recipe: early_stopping_text(part) for recipe, part in t.groupby("recipe", sort=False)}
    if len(set(patience.values()) - {"–"}) > 1:
        lines.append(
            "Note: the recipes stop early with different patience ("
            + "; ".join(f"{r}: {p}" for r, p in patience.items())
            + "): early stopping is part of the budget, so their comparison is not like for like."
        )
    counts = t.groupby(["setting", "task", "recipe", "fraction"]).size()
    if counts.nunique() > 1:
        lines.append(
            f"Note: groups have unequal numbers of finished seeds ({counts.min()} to {counts.max()}); "
            "rerun `ecgadapt benchmark` to finish the grid."
        )
    return Section("overview", "Overview", [*lines, *blocks])


def _with_positive_counts(t: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The ``cols`` of the runs of ``t`` that count more than zero in any of them (a missing count is zero)."""
    counts = t[cols].apply(pd.to_numeric, errors="coerce").fillna(0)
    return counts[(counts > 0).any(axis=1)]


def _patient_and_unknown_overlap(t: pd.DataFrame) -> list[str]:
    """Warnings for runs whose validation or test records share patients with the pretraining set, and for runs
    whose pretraining overlap could not be checked (no PTB-XL identity, no patient ids)."""
    lines = []
    cols = ["pretraining_same_patient_test", "pretraining_same_patient_val"]
    if set(cols) <= set(t.columns):
        shared = _with_positive_counts(t, cols)
        if len(shared):
            lines.append(
                f"**Warning:** in {len(shared)} run(s), test records (up to "
                f"{int(shared['pretraining_same_patient_test'].max())}) or validation records (up to "
                f"{int(shared['pretraining_same_patient_val'].max())}) belong to patients whose other records the "
                "initial weights were pretrained on: records of one patient are alike, so their scores may be "
                "optimistic (`pretraining_overlap.same_patient` in each run's final.json)."
            )
    if "pretraining_overlap_unknown" in t.columns:
        unknown = sorted(
            {u for text in t["pretraining_overlap_unknown"].dropna() for u in str(text).split("; ") if u}
        )
        if unknown:
            lines.append(
                "Not checked: the initial weights saw PTB-XL records, but for some runs it is unknown whether "
                "their records (or patients) were among them: " + "; ".join(unknown) + "."
            )
    return lines
