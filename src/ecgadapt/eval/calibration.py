"""Calibration of predicted probabilities: expected calibration error and reliability diagrams.

Multi-label predictions are pooled over all (record, class) pairs unless a per-class function is used.
Bins are half-open ``[lower, upper)`` except the last, which includes its upper edge (so 1.0 is binned).
``strategy="uniform"`` uses equal-width bins on [0, 1]; ``"quantile"`` uses bins holding about equally many
predictions (edges at the quantiles of the predictions, duplicate edges merged).
ECE = sum over bins of ``count / total * |mean predicted probability - fraction of positives|``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ecgadapt.errors import ConfigError
from ecgadapt.eval.metrics import MetricInputError, check_inputs

__all__ = [
    "expected_calibration_error",
    "per_class_calibration_error",
    "plot_reliability",
    "reliability_curve",
]

STRATEGIES = ("uniform", "quantile")


def _check_probs(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(labels, probabilities)`` as (N, C) arrays; probabilities must lie in [0, 1]."""
    yt, yp = check_inputs(y_true, y_prob, "y_prob")
    if yp.min() < 0.0 or yp.max() > 1.0:
        raise MetricInputError(
            f"y_prob must be probabilities in [0, 1], found values in [{yp.min():.4g}, {yp.max():.4g}]: "
            "apply a sigmoid to logits first"
        )
    return yt, yp


def _bin_edges(prob: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """Bin edges for the given strategy."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, int(n_bins) + 1)
    if strategy == "quantile":
        return np.unique(np.quantile(prob, np.linspace(0.0, 1.0, int(n_bins) + 1)))
    raise ConfigError(f"unknown calibration binning strategy {strategy!r}; choose one of {STRATEGIES}")


def _bin_stats(label: np.ndarray, prob: np.ndarray, n_bins: int, strategy: str) -> dict[str, np.ndarray]:
    """Per-bin edges, counts, mean probability and fraction of positives for flat arrays."""
    edges = _bin_edges(prob, n_bins, strategy)
    n_edges = max(len(edges) - 1, 1)
    which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, n_edges - 1)
    count = np.bincount(which, minlength=n_edges)
    sum_prob = np.bincount(which, weights=prob, minlength=n_edges)
    sum_pos = np.bincount(which, weights=label.astype(np.float64), minlength=n_edges)
    lower = edges[:-1] if len(edges) > 1 else edges
    upper = edges[1:] if len(edges) > 1 else edges
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "bin_lower": lower,
            "bin_upper": upper,
            "mean_prob": sum_prob / count,
            "frac_pos": sum_pos / count,
            "count": count,
        }


def _ece(stats: Mapping[str, np.ndarray]) -> float:
    """ECE from per-bin statistics (empty bins contribute nothing)."""
    count = stats["count"]
    keep = count > 0
    gap = np.abs(stats["mean_prob"][keep] - stats["frac_pos"][keep])
    return float(np.sum(count[keep] * gap) / np.sum(count))


def expected_calibration_error(
    y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """ECE over all (record, class) pairs, pooled."""
    yt, yp = _check_probs(y_true, y_prob)
    return _ece(_bin_stats(yt.ravel(), yp.ravel(), n_bins, strategy))


def per_class_calibration_error(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    n_bins: int = 15,
    strategy: str = "uniform",
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """ECE of each class separately, keyed by class name (``class_0`` ... by default)."""
    yt, yp = _check_probs(y_true, y_prob)
    names = (
        [f"class_{i}" for i in range(yt.shape[1])] if class_names is None else [str(n) for n in class_names]
    )
    if len(names) != yt.shape[1]:
        raise MetricInputError(
            f"class_names has {len(names)} names but the labels have {yt.shape[1]} classes"
        )
    return {name: _ece(_bin_stats(yt[:, j], yp[:, j], n_bins, strategy)) for j, name in enumerate(names)}


def reliability_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15, strategy: str = "uniform"):
    """Reliability table of the non-empty bins: DataFrame(bin_lower, bin_upper, mean_prob, frac_pos, count)."""
    import pandas as pd

    yt, yp = _check_probs(y_true, y_prob)
    stats = _bin_stats(yt.ravel(), yp.ravel(), n_bins, strategy)
    keep = stats["count"] > 0
    return pd.DataFrame({key: value[keep] for key, value in stats.items()}).reset_index(drop=True)


def _curve_ece(curve) -> float:
    """ECE implied by a reliability table."""
    count = curve["count"].to_numpy(dtype=np.float64)
    gap = np.abs(curve["mean_prob"].to_numpy() - curve["frac_pos"].to_numpy())
    return float(np.sum(count * gap) / np.sum(count))


def plot_reliability(
    curves: Mapping[str, Any] | np.ndarray,
    y_prob: np.ndarray | Mapping[str, np.ndarray] | None = None,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    ax: Any = None,
    title: str = "Reliability diagram",
):
    """Reliability diagram, one line per run, returned as a matplotlib Figure (no pyplot, no display).

    Pass either a mapping ``{run name: reliability_curve(...) DataFrame}``, or ``y_true`` followed by
    ``y_prob`` (one array, or a mapping ``{run name: probabilities}`` scored against the same labels).
    """
    from matplotlib.figure import Figure

    if y_prob is None:
        if not isinstance(curves, Mapping):
            raise ConfigError("plot_reliability needs {name: reliability DataFrame} or (y_true, y_prob)")
        tables = dict(curves)
    else:
        runs = y_prob if isinstance(y_prob, Mapping) else {"model": y_prob}
        tables = {name: reliability_curve(curves, prob, n_bins, strategy) for name, prob in runs.items()}
    if not tables:
        raise ConfigError("plot_reliability got no runs to plot")
    for name, table in tables.items():
        missing = {"mean_prob", "frac_pos", "count"} - set(getattr(table, "columns", ()))
        if missing:
            raise ConfigError(
                f"reliability table for {name!r} lacks columns {sorted(missing)}; build it with reliability_curve"
            )
    if ax is None:
        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, table in tables.items():
        ax.plot(
            table["mean_prob"], table["frac_pos"], marker="o", label=f"{name} (ECE {_curve_ece(table):.3f})"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction of positives")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return fig
