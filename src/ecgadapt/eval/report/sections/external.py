"""External evaluation: each recipe on the external sets beside its PTB-XL score, paired differences between
recipes on the same external records, and reliability before and after temperature scaling."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.eval.bootstrap import pooled_paired_bootstrap
from ecgadapt.eval.calibration import reliability_curve
from ecgadapt.eval.figures import before_after_reliability_figure
from ecgadapt.eval.metrics import MetricInputError
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.stats import METRICS, align_predictions, patient_groups
from ecgadapt.eval.report.text import METRIC_NAMES, boot_p_text, fmt, mean_std, signed, signed_ci, slug
from ecgadapt.eval.temperature import calibrate_probs
from ecgadapt.runs.rundir import load_predictions as load_npz


def build(ctx: ReportContext) -> Section | None:
    """Each recipe's macro AUROC/AUPRC on the external sets beside its PTB-XL test score, with paired differences
    between recipes on the same external records (seed-averaged, record bootstrap); None without external sets."""
    title = "External evaluation"
    rows, diffs = [], []
    curves: dict[tuple[str, str, str], dict[str, tuple]] = {}
    ece: dict[tuple[str, str, str, str], dict[str, str]] = {}  # (set, setting, task, when) -> {recipe: text}
    names = sorted(
        {
            f.name[len("external_") : -len(".json")]
            for d in ctx.main["run_dir"]
            for f in Path(d).glob("external_*.json")
        }
    )
    if not names:
        return None
    for name in names:
        groups = {}
        for (setting, task, recipe), part in ctx.main.groupby(["setting", "task", "recipe"], sort=False):
            files = [Path(d) / f"external_{name}.json" for d in part["run_dir"]]
            if not all(f.is_file() for f in files):
                continue
            ext = [json.loads(f.read_text()) for f in files]
            row = {
                "External set": name,
                "Model": setting,
                "Task": task,
                "Recipe": recipe,
                "Seeds": len(part),
                "Records": ext[0]["n_records"],
                "Shared classes": ", ".join(ext[0]["shared_classes"]),
            }
            for m in METRICS:
                row[f"PTB-XL {METRIC_NAMES[m]}"] = fmt(float(np.mean(part[f"test_{m}"].to_numpy(float))))
                row[f"external {METRIC_NAMES[m]}"] = fmt(float(np.mean([e[m] for e in ext])))
            cals = [e.get("calibration") or {} for e in ext]
            for key, when in (("ece_raw", "before"), ("ece_calibrated", "after")):
                values = [c[key] for c in cals if c.get(key) is not None]
                row[f"external ECE {when} scaling"] = mean_std(values) if values else "–"
                ece.setdefault((name, setting, task, when), {})[recipe] = row[f"external ECE {when} scaling"]
            rows.append(row)
            preds = [load_npz(Path(d) / f"predictions_external_{name}.npz") for d in part["run_dir"]]
            groups[(setting, task, recipe)] = preds
            curves.setdefault((name, setting, task), {})[recipe] = _external_curves(
                list(part["run_dir"]), preds
            )
        for (ka, pa), (kb, pb) in itertools.combinations(groups.items(), 2):
            if ka[:2] != kb[:2]:
                continue
            aligned = align_predictions([*pa, *pb])
            if aligned is None:
                continue
            y, scores = aligned
            for m in METRICS:
                try:
                    r = pooled_paired_bootstrap(
                        y,
                        scores[: len(pa)],
                        scores[len(pa) :],
                        m,
                        ctx.n_resamples,
                        ctx.seed,
                        ctx.alpha,
                        groups=_external_groups(ctx, pa),
                    )
                except MetricInputError:
                    continue
                diffs.append(
                    {
                        "External set": name,
                        "Model": ka[0],
                        "Task": ka[1],
                        "A": ka[2],
                        "B": kb[2],
                        "Metric": METRIC_NAMES[m],
                        "A - B": signed(r["diff"]),
                        f"95% CI ({r['grouping']})": signed_ci(r["low"], r["high"]),
                        "p": boot_p_text(r["p_value"], ctx.n_resamples),
                    }
                )
    if not rows:
        return Section(
            "external", title, absent="no group of runs was scored on an external set by every seed"
        )
    blocks: list[Any] = [
        "Macro AUROC/AUPRC on each external set (classes shared with the run only; mean over seeds) beside the "
        f"PTB-XL test score, at training fraction {ctx.main_fraction:g}; and the external ECE (mean ± std over seeds "
        "of each run's ECE, as in the legends) before and after each run's temperature scaling (fitted on PTB-XL "
        "fold 9 only).",
        pd.DataFrame(rows),
    ]
    if diffs:
        blocks += [
            "Paired differences between recipes on the same external records (seed-averaged metric, "
            f"{ctx.n_resamples} bootstrap resamples of the external records, or of their patients where the report "
            "bootstraps patients and the external set records them: the CI column names which).",
            pd.DataFrame(diffs),
        ]
    for (name, setting, task), by_recipe in curves.items():
        before = {r: c[0] for r, c in by_recipe.items() if c is not None}
        after = {r: c[1] for r, c in by_recipe.items() if c is not None and c[1] is not None}
        if not before:
            continue
        fig = before_after_reliability_figure(
            before,
            after,
            f"{name}, {task} ({setting})",
            ctx.colors,
            ece.get((name, setting, task, "before")),
            ece.get((name, setting, task, "after")),
        )
        caption = (
            f"Reliability on the external set {name} before and after temperature scaling, {task}, {setting}."
        )
        blocks.append(ctx.figure(f"external_reliability_{slug(name)}_{slug(setting)}_{task}", fig, caption))
    return Section("external", title, blocks)


def _external_curves(run_dirs: list[str], preds: list[dict]) -> tuple | None:
    """Reliability tables (before, after temperature scaling) of the runs' pooled external predictions."""
    ys, raw, scaled = [], [], []
    for d, p in zip(run_dirs, preds):
        probs, fitted = calibrate_probs(d, p["y_score"], [str(c) for c in p["class_names"]])
        ys.append(p["y_true"])
        raw.append(p["y_score"])
        scaled.append(probs if fitted is not None else None)
    try:
        before = reliability_curve(np.concatenate(ys), np.concatenate(raw), n_bins=15)
        after = (
            None
            if any(s is None for s in scaled)
            else reliability_curve(np.concatenate(ys), np.concatenate(scaled), n_bins=15)
        )
    except (MetricInputError, ValueError):
        return None
    return before, after


def _external_groups(ctx: ReportContext, preds: list[dict]) -> np.ndarray | None:
    """Patient groups of external predictions when the report bootstraps patients and the external set knows
    them (its predictions carry ``patient_ids`` with some known); else None (records)."""
    if ctx.unit != "patients" or "patient_ids" not in preds[0] or not (preds[0]["patient_ids"] >= 0).any():
        return None
    return patient_groups(preds[0])
