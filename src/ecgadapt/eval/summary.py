"""The text beside a printed score: bootstrap intervals of the macro figures, ECE before and after temperature
scaling, and a warning on classes too rare to average.

A macro figure on a small split is a noisy number: ``finetune`` and ``evaluate`` print its 95% percentile
bootstrap interval over records (:func:`ecgadapt.eval.bootstrap.bootstrap_ci`, over the very classes the macro
average keeps) and name the classes of the average that have fewer than :data:`FEW_POSITIVES` positives.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ecgadapt.errors import DataError
from ecgadapt.eval.bootstrap import bootstrap_ci

FEW_POSITIVES = 5
"""A class of a macro average with fewer positives than this is named in a warning: its AUROC is noise."""

N_RESAMPLES = 1000
"""Bootstrap resamples of the printed intervals."""

MACRO_METRICS = {"macro_auroc": "AUROC", "macro_auprc": "AUPRC"}


def macro_classes(metrics: Mapping) -> list[int]:
    """Column indices of the classes a macro average of ``metrics`` (:func:`~ecgadapt.eval.metrics.score`) keeps."""
    excluded = set(metrics.get("excluded_classes") or [])
    return [i for i, c in enumerate(metrics.get("per_class") or []) if c["class"] not in excluded]


def macro_intervals(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    metrics: Mapping,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict | None]:
    """``{metric: bootstrap_ci result or None}`` of macro AUROC and AUPRC over the classes ``metrics`` averages,
    so each interval surrounds its point estimate; None where no interval can be drawn (nothing scorable, or
    classes too rare to keep in every resample)."""
    columns = macro_classes(metrics)
    out: dict[str, dict | None] = {}
    for metric in MACRO_METRICS:
        try:
            if not columns:
                raise DataError("no class is averaged")
            y, p = np.asarray(y_true)[:, columns], np.asarray(y_prob)[:, columns]
            out[metric] = bootstrap_ci(y, p, metric, n_resamples=n_resamples, seed=seed, alpha=alpha)
        except DataError:
            out[metric] = None
    return out


def value_with_interval(value: float | None, interval: Mapping | None, digits: int = 4) -> str:
    """``"0.8012 [0.7123, 0.8834]"``; ``"n/a"`` without a value, no brackets without an interval."""
    if value is None or not np.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    if interval:
        text += f" [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"
    return text


def macro_text(metrics: Mapping, intervals: Mapping[str, Mapping | None] | None, digits: int = 4) -> str:
    """``"macro AUROC 0.8012 [0.7123, 0.8834]  macro AUPRC 0.5310 [0.4420, 0.6205]"``."""
    intervals = intervals or {}
    return "  ".join(
        f"macro {label} {value_with_interval(metrics.get(key), intervals.get(key), digits)}"
        for key, label in MACRO_METRICS.items()
    )


def interval_note(intervals: Mapping[str, Mapping | None] | None) -> str:
    """``"[95% bootstrap intervals over 19 records, 1000 resamples]"`` ("" when there is none)."""
    drawn = [i for i in (intervals or {}).values() if i]
    if not drawn:
        return ""
    first = drawn[0]
    return f"[{1 - first['alpha']:.0%} bootstrap intervals over records, {first['n_resamples']} resamples]"


def per_class_lines(per_class: list[Mapping]) -> list[str]:
    """One indented line per class: ``"  NORM         AUROC 0.9012  AUPRC 0.8123  positives 42"`` (``n/a`` where
    a class could not be scored)."""
    lines = []
    for c in per_class:
        auroc = "  n/a " if c["auroc"] is None else f"{c['auroc']:.4f}"
        auprc = "  n/a " if c["auprc"] is None else f"{c['auprc']:.4f}"
        lines.append(f"  {c['class']:<12} AUROC {auroc}  AUPRC {auprc}  positives {c['n_pos']}")
    return lines


def rare_classes(metrics: Mapping, minimum: int = FEW_POSITIVES) -> dict[str, int]:
    """``{class: positives}`` of the classes a macro average keeps with fewer than ``minimum`` positives."""
    per_class = metrics.get("per_class") or []
    return {
        per_class[i]["class"]: int(per_class[i]["n_pos"])
        for i in macro_classes(metrics)
        if int(per_class[i]["n_pos"]) < minimum
    }


def rare_class_warning(
    metrics: Mapping, split: str, minimum: int = FEW_POSITIVES, fix: str | None = None
) -> str | None:
    """One line naming the averaged classes with fewer than ``minimum`` positives in ``split`` (None if none);
    ``fix`` says how to leave them out."""
    rare = rare_classes(metrics, minimum)
    if not rare:
        return None
    named = ", ".join(f"{c} ({n})" for c, n in sorted(rare.items(), key=lambda kv: (kv[1], kv[0])))
    line = (
        f"warning: the macro averages include {len(rare)} class(es) with fewer than {minimum} {split} positives: "
        f"{named}; their AUROC and AUPRC are noise"
    )
    return f"{line} ({fix})" if fix else line


def min_positives_fix(minimum: int = FEW_POSITIVES) -> str:
    """How a run leaves rare classes out of its macro averages."""
    return f"--set training.min_test_positives={minimum} leaves them out"


def ece_text(
    before: float | None, after: float | None, mode: str | None, fitted_on: str | None = None
) -> str:
    """``"ECE 0.2690 before temperature scaling, 0.0610 after (global, fitted on ...)"`` (or the raw ECE alone);
    ``fitted_on`` says which records the temperatures were fitted on."""
    if before is None:
        return ""
    if after is None or mode is None:
        return f"ECE {before:.4f} (no temperature scaling)"
    where = f", fitted on {fitted_on}" if fitted_on else ""
    return f"ECE {before:.4f} before temperature scaling, {after:.4f} after ({mode}{where})"
