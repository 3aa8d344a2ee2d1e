"""Classes left out of the macro metrics, with the rule that left each out and the runs it applies to."""

from __future__ import annotations

import pandas as pd

from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.results import read_final


def build(ctx: ReportContext) -> Section:
    """The excluded-classes section."""
    title = "Classes left out of the macro metrics"
    rows = []
    for _, r in ctx.table.iterrows():
        test = read_final(r["run_dir"]).get("test") or {}
        reasons = {e["class"]: e["reason"] for e in test.get("exclusions") or []}
        for cls in test.get("excluded_classes") or []:
            rows.append(
                {
                    "Model": r["setting"],
                    "Task": r["task"],
                    "Class": cls,
                    "Reason": reasons.get(cls, "no positive or no negative in the scored split"),
                    "run_dir": r["run_dir"],
                }
            )
    if not rows:
        return Section(
            "exclusions",
            title,
            [
                "None: every class of every run was scored (each has a training positive and enough test positives)."
            ],
        )
    df = pd.DataFrame(rows)
    df = (
        df.groupby(["Model", "Task", "Class", "Reason"], sort=False)["run_dir"]
        .nunique()
        .rename("Runs")
        .reset_index()
    )
    text = (
        "Macro AUROC/AUPRC average only the classes that can be scored fairly; these were left out, in the runs "
        "counted. Rules: a class with no negative or fewer than `training.min_test_positives` positives in the "
        "scored split, and (with `training.exclude_untrained_classes`) a class with no positive in the training "
        "split. The record bootstrap drops the same classes."
    )
    return Section("exclusions", title, [text, df])
