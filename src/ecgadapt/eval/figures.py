"""Benchmark figures as matplotlib ``Figure`` objects (Agg canvas, never pyplot: no global figure state).

Every function takes a tidy ``DataFrame`` (built in :mod:`ecgadapt.eval.report`) and returns a Figure;
:func:`figure_png` renders one to PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ecgadapt.eval.calibration import plot_reliability
from ecgadapt.fileio import atomic_write_bytes

__all__ = [
    "METRIC_LABELS",
    "ablation_figure",
    "before_after_reliability_figure",
    "data_efficiency_figure",
    "figure_png",
    "new_figure",
    "recipe_colors",
    "reliability_figure",
    "training_dynamics_figure",
]

METRIC_LABELS = {
    "macro_auroc": "macro AUROC",
    "macro_auprc": "macro AUPRC",
    "val_macro_auroc": "validation macro AUROC",
    "val_macro_auprc": "validation macro AUPRC",
    "val_loss": "validation loss",
}
_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def new_figure(width: float, height: float) -> Figure:
    """A Figure with an Agg canvas attached (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, path: str | Path | None = None, dpi: int = 110) -> bytes:
    """PNG bytes of ``fig`` (also written to ``path`` if given)."""
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)  # e.g. a run's robustness.png: never written through a symlink
    return data


def recipe_colors(recipes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per recipe (in the order given)."""
    return {r: _PALETTE[i % len(_PALETTE)] for i, r in enumerate(recipes)}


def _grid(n_rows: int, n_cols: int, width: float = 3.4, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    fig = new_figure(max(4.5, width * n_cols), height * n_rows)
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _label_panel(ax: Axes, task: str, xlabel: str, ylabel: str | None) -> None:
    """Title a per-task panel, label its axes (y only when given) and draw the grid."""
    ax.set_title(task, fontsize="medium")
    ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _finish_grid(fig: Figure, axes: np.ndarray, title: str) -> Figure:
    """Legend in the first panel and the optional figure title."""
    axes[0, 0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def data_efficiency_figure(
    summary: pd.DataFrame,
    metrics: Sequence[str] = ("macro_auroc", "macro_auprc"),
    colors: Mapping[str, str] | None = None,
    title: str = "",
) -> Figure:
    """Metric against training fraction: one panel per (metric, task), one line per recipe, band = interval.

    ``summary`` columns: task, recipe, fraction, metric, mean, low, high (low/high may be NaN: no band).
    """
    tasks = list(dict.fromkeys(summary["task"]))
    recipes = list(dict.fromkeys(summary["recipe"]))
    colors = dict(colors or recipe_colors(recipes))
    fig, axes = _grid(len(metrics), len(tasks))
    for i, metric in enumerate(metrics):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            part = summary[(summary["task"] == task) & (summary["metric"] == metric)]
            for recipe in recipes:
                r = part[part["recipe"] == recipe].sort_values("fraction")
                if r.empty:
                    continue
                x = r["fraction"].to_numpy(float)
                ax.plot(x, r["mean"], marker="o", color=colors.get(recipe), label=recipe)
                low, high = r["low"].to_numpy(float), r["high"].to_numpy(float)
                if np.isfinite(low).any():
                    ax.fill_between(x, low, high, color=colors.get(recipe), alpha=0.18, linewidth=0)
            fractions = sorted(set(part["fraction"]))
            ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
            _label_panel(ax, task, "training fraction", METRIC_LABELS.get(metric, metric) if j == 0 else None)
    return _finish_grid(fig, axes, title)


def training_dynamics_figure(
    curves: pd.DataFrame,
    boundaries: pd.DataFrame,
    metric: str = "val_macro_auroc",
    colors: Mapping[str, str] | None = None,
    title: str = "",
) -> Figure:
    """Validation metric per epoch (mean over runs, band = min-max) per recipe; dashed lines = stage starts.

    ``curves`` columns: task, recipe, x, mean, low, high; ``boundaries``: task, recipe, x, stage_name.
    """
    tasks = list(dict.fromkeys(curves["task"]))
    recipes = list(dict.fromkeys(curves["recipe"]))
    colors = dict(colors or recipe_colors(recipes))
    fig, axes = _grid(1, len(tasks), width=4.0, height=3.0)
    for j, task in enumerate(tasks):
        ax = axes[0, j]
        for recipe in recipes:
            c = curves[(curves["task"] == task) & (curves["recipe"] == recipe)].sort_values("x")
            if c.empty:
                continue
            x = c["x"].to_numpy(float) + 1
            ax.plot(x, c["mean"], marker=".", color=colors.get(recipe), label=recipe)
            if (c["high"] > c["low"]).any():
                ax.fill_between(x, c["low"], c["high"], color=colors.get(recipe), alpha=0.15, linewidth=0)
            b = boundaries[(boundaries["task"] == task) & (boundaries["recipe"] == recipe)]
            for _, row in b.iterrows():
                ax.axvline(row["x"] + 0.5, color=colors.get(recipe), linestyle="--", linewidth=1, alpha=0.8)
                ax.annotate(
                    f"{row['stage_name']} →",
                    (row["x"] + 0.5, 0.02),
                    xycoords=("data", "axes fraction"),
                    fontsize="x-small",
                    color=colors.get(recipe),
                    ha="left",
                )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _label_panel(
            ax, task, "epoch (over all stages)", METRIC_LABELS.get(metric, metric) if j == 0 else None
        )
    return _finish_grid(fig, axes, title)


def ablation_figure(
    summary: pd.DataFrame,
    metric_label: str = "test macro AUROC",
    colors: Mapping[str, str] | None = None,
    title: str = "",
    reference: str | None = "post_training",
) -> Figure:
    """Grouped bars per task, one bar per recipe (mean over seeds), error bars from ``err`` (seed std);
    each bar other than ``reference`` is labelled with its difference from the reference recipe's mean.

    ``summary`` columns: task, recipe, mean, err.
    """
    tasks = list(dict.fromkeys(summary["task"]))
    recipes = list(dict.fromkeys(summary["recipe"]))
    colors = dict(colors or recipe_colors(recipes))
    fig = new_figure(max(5.0, 1.1 * len(tasks) * max(2, len(recipes)) * 0.45 + 2), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(recipes)
    lows = []
    for k, recipe in enumerate(recipes):
        part = summary[summary["recipe"] == recipe].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (k - (len(recipes) - 1) / 2) * width
        err = part["err"].to_numpy(float)
        ax.bar(
            x,
            part["mean"].to_numpy(float),
            width,
            yerr=np.where(np.isfinite(err), err, 0.0),
            capsize=3,
            color=colors.get(recipe),
            label=recipe,
        )
        lows.append(np.nanmin(part["mean"].to_numpy(float) - np.nan_to_num(err)))
        ref = summary[summary["recipe"] == reference].set_index("task").reindex(tasks)["mean"].to_numpy(float)
        if reference in recipes and recipe != reference:
            for xi, m, e, r in zip(x, part["mean"].to_numpy(float), np.nan_to_num(err), ref):
                if np.isfinite(m) and np.isfinite(r):
                    ax.annotate(
                        f"{m - r:+.3f}",
                        (xi, m + e),
                        textcoords="offset points",
                        xytext=(0, 2),
                        ha="center",
                        fontsize="x-small",
                    )
    low = float(np.nanmin(lows)) if lows else 0.0
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylabel(metric_label)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=min(4, len(recipes)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    if title:
        ax.set_title(title)
    return fig


def _ece_legend(ax: Axes, names: Sequence[str], ece: Mapping[str, str] | None) -> None:
    """Relabel the recipes' curves (drawn after the diagonal, in ``names`` order) with the ECE the tables give."""
    if ece is None:
        return
    for line, name in zip(ax.get_lines()[1:], names):
        line.set_label(f"{name} (ECE {ece[name]})" if name in ece else name)
    ax.legend(loc="upper left", fontsize="small")


def reliability_figure(
    tables: Mapping[str, pd.DataFrame],
    title: str = "Reliability diagram",
    colors: Mapping[str, str] | None = None,
    ece: Mapping[str, str] | None = None,
) -> Figure:
    """Reliability curves, one per recipe, on an Agg figure. The legend gives each recipe's ``ece`` text (e.g.
    the mean ± std over seeds of per-run ECE that a table shows), else the ECE of the pooled curve."""
    fig = new_figure(4.6, 4.6)
    ax = fig.add_subplot()
    colors = dict(colors or recipe_colors(list(tables)))
    ax.set_prop_cycle(color=[colors.get(name, "#333333") for name in tables])
    plot_reliability(dict(tables), ax=ax, title=title)
    _ece_legend(ax, list(tables), ece)
    return fig


def before_after_reliability_figure(
    before: Mapping[str, pd.DataFrame],
    after: Mapping[str, pd.DataFrame],
    title: str,
    colors: Mapping[str, str] | None = None,
    ece_before: Mapping[str, str] | None = None,
    ece_after: Mapping[str, str] | None = None,
) -> Figure:
    """Two reliability panels, before and after temperature scaling, one curve per recipe (legends as in
    :func:`reliability_figure`); a panel without curves says that no temperature scaling was fitted."""
    fig = new_figure(9.2, 4.6)
    ax_b, ax_a = fig.subplots(1, 2)
    for ax, panel, when, ece in ((ax_b, before, "before", ece_before), (ax_a, after, "after", ece_after)):
        ax.set_prop_cycle(color=[(colors or {}).get(r, "#333333") for r in panel] or ["#333333"])
        if panel:
            plot_reliability(dict(panel), ax=ax, title=f"{title}: {when} scaling")
            _ece_legend(ax, list(panel), ece)
        else:
            ax.set_title(f"{title}: no temperature scaling fitted")
    return fig
