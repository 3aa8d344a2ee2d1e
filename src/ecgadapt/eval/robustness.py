"""Robustness tables of many runs side by side: collection, aggregation over seeds, figure, report section.

Each run's ``robustness.csv`` is written by ``ecgadapt robustness RUN`` (:mod:`ecgadapt.inference.robustness`).
Here they are gathered per (model, task, recipe), averaged over seeds (std with ddof=1), and summarised per
corruption as the clean metric, the mean over severities >= 1, and the drop between them, so one can see
whether a recipe that scores higher on clean data also loses less under shift. The report's section on them is
:mod:`ecgadapt.eval.report.sections.robustness`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgadapt.errors import DataError
from ecgadapt.runs.rundir import RunDir

__all__ = [
    "collect_robustness",
    "robustness_figure",
    "robustness_summary",
    "summarise_robustness",
]

ROBUSTNESS_CSV = RunDir.ROBUSTNESS_CSV
METRIC_LABELS = {"macro_auroc": "macro AUROC", "macro_auprc": "macro AUPRC", "loss": "loss", "ece": "ECE"}


def read_robustness(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``robustness.csv`` (a clear error when it is not one written by ecgadapt)."""
    path = Path(run_dir) / ROBUSTNESS_CSV
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} ({err}); rerun `ecgadapt robustness {run_dir}`") from err
    missing = {"corruption", "severity", "level", "macro_auroc"} - set(table.columns)
    if missing:
        raise DataError(f"{path} lacks columns {sorted(missing)}; rerun `ecgadapt robustness {run_dir}`")
    return table


def collect_robustness(
    results: pd.DataFrame, keys: Sequence[str] = ("setting", "task", "recipe", "seed")
) -> pd.DataFrame:
    """The ``robustness.csv`` of every run in ``results`` (a results table with ``run_dir``) that has one,
    stacked with the run's ``keys``; empty when none has."""
    frames = []
    for _, row in results.iterrows():
        if not (Path(row["run_dir"]) / ROBUSTNESS_CSV).is_file():
            continue
        t = read_robustness(row["run_dir"]).drop(columns=["seed"], errors="ignore")
        frames.append(t.assign(**{k: row[k] for k in keys if k in row}, run_dir=row["run_dir"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise_robustness(
    long: pd.DataFrame, metric: str = "macro_auroc", by: Sequence[str] = ("setting", "task", "recipe")
) -> pd.DataFrame:
    """Mean, std and n over runs of ``metric`` per ``by`` + corruption + severity (+ its level label)."""
    groups = [*by, "corruption", "severity", "level"]
    g = long.groupby(groups, sort=False)[metric]
    out = g.agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan, n="count")
    return out.reset_index()


def robustness_summary(
    summary: pd.DataFrame, by: Sequence[str] = ("setting", "task", "recipe")
) -> pd.DataFrame:
    """Per ``by`` + corruption: the clean mean, the mean over severities >= 1, its drop and the worst severity."""
    rows = []
    for keys, part in summary.groupby([*by, "corruption"], sort=False):
        clean = part.loc[part["severity"] == 0, "mean"]
        shifted = part[part["severity"] > 0]
        worst = shifted.loc[shifted["mean"].idxmin()] if not shifted.empty else None
        c = float(clean.iloc[0]) if len(clean) else math.nan
        m = float(shifted["mean"].mean()) if not shifted.empty else math.nan
        rows.append(
            {
                **dict(zip([*by, "corruption"], keys)),
                "clean": c,
                "corrupted_mean": m,
                "drop": c - m,
                "worst": float(worst["mean"]) if worst is not None else math.nan,
                "worst_level": str(worst["level"]) if worst is not None else "",
            }
        )
    return pd.DataFrame(rows)


def robustness_figure(
    table: pd.DataFrame,
    metric: str = "macro_auroc",
    colors: Mapping[str, str] | None = None,
    title: str = "Robustness",
):
    """``metric`` against severity, one panel per corruption, all panels on one y-axis. ``table`` is one run's
    robustness table, or a summary (:func:`summarise_robustness`, a ``recipe`` column and ``mean``/``std``): one
    line per recipe, band = ± std over seeds."""
    from ecgadapt.eval.figures import new_figure

    value = "mean" if "mean" in table.columns else metric
    lines = list(dict.fromkeys(table["recipe"])) if "recipe" in table.columns else [None]
    names = list(dict.fromkeys(table["corruption"]))
    n_cols = min(3, len(names))
    n_rows = math.ceil(len(names) / n_cols)
    fig = new_figure(3.6 * n_cols, 2.8 * n_rows + 0.4)
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False, sharey=True)).ravel()
    for i, (ax, name) in enumerate(zip(axes, names)):
        part = table[table["corruption"] == name]
        for line in lines:
            sub = part if line is None else part[part["recipe"] == line]
            sub = sub.sort_values("severity")
            color = (colors or {}).get(line) if line is not None else None
            ax.plot(sub["severity"], sub[value], marker="o", label=line or "run", color=color)
            if "std" in sub.columns and sub["std"].notna().any():
                ax.fill_between(
                    sub["severity"], sub[value] - sub["std"], sub[value] + sub["std"], alpha=0.15, color=color
                )
        ticks = part.drop_duplicates("severity").sort_values("severity")
        ax.set_xticks(
            ticks["severity"].to_list(), [str(v) for v in ticks["level"]], rotation=30, fontsize="x-small"
        )
        ax.set_title(name, fontsize="small")
        if i % n_cols == 0:
            ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize="small")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if len(lines) > 1 or lines[0] is not None:
        axes[0].legend(fontsize="x-small")
    fig.suptitle(title)
    return fig
