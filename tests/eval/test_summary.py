"""The text beside a printed score: intervals over the averaged classes, rare classes, ECE."""

from __future__ import annotations

import numpy as np
import pytest

from ecgadapt.eval.metrics import score
from ecgadapt.eval.summary import (
    ece_text,
    macro_intervals,
    macro_text,
    rare_class_warning,
    rare_classes,
    value_with_interval,
)


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray, dict]:
    """40 records, 3 classes: A common, B with 3 positives, C with 1 (left out by min_positives=2)."""
    rng = np.random.default_rng(0)
    y = np.zeros((40, 3), dtype=np.float32)
    y[:20, 0], y[[1, 5, 9], 1], y[3, 2] = 1, 1, 1
    p = np.clip(0.25 * y + rng.uniform(0, 0.75, y.shape), 0, 1)
    return y, p, score(y, p, ["A", "B", "C"], min_positives=2)


def test_the_interval_is_over_the_classes_the_macro_average_keeps(scored) -> None:
    y, p, metrics = scored
    assert metrics["excluded_classes"] == ["C"]
    intervals = macro_intervals(y, p, metrics, n_resamples=200)
    for key in ("macro_auroc", "macro_auprc"):
        ci = intervals[key]
        assert ci["point"] == pytest.approx(metrics[key]) and ci["low"] <= metrics[key] <= ci["high"]
        assert ci["low"] < ci["high"] and ci["n_resamples"] == 200
    text = macro_text(metrics, intervals)
    low, high = intervals["macro_auroc"]["low"], intervals["macro_auroc"]["high"]
    assert text.startswith(f"macro AUROC {metrics['macro_auroc']:.4f} [{low:.4f}, {high:.4f}]  macro AUPRC ")


def test_no_interval_where_nothing_is_averaged() -> None:
    metrics = {"macro_auroc": float("nan"), "macro_auprc": float("nan"), "per_class": []}
    assert macro_intervals(np.zeros((3, 0)), np.zeros((3, 0)), metrics) == {
        "macro_auroc": None,
        "macro_auprc": None,
    }
    assert macro_text(metrics, None) == "macro AUROC n/a  macro AUPRC n/a"
    assert value_with_interval(0.81234, None) == "0.8123"


def test_rare_averaged_classes_are_named_and_excluded_ones_are_not(scored) -> None:
    _, _, metrics = scored
    assert rare_classes(metrics) == {"B": 3}  # C (1 positive) is not in the average
    warning = rare_class_warning(metrics, "test", fix="set X")
    assert warning == (
        "warning: the macro averages include 1 class(es) with fewer than 5 test positives: B (3); their AUROC "
        "and AUPRC are noise (set X)"
    )
    assert rare_class_warning(metrics, "test", minimum=3) is None


def test_ece_text() -> None:
    assert ece_text(0.269, 0.061, "global", "fold 1 of site") == (
        "ECE 0.2690 before temperature scaling, 0.0610 after (global, fitted on fold 1 of site)"
    )
    assert ece_text(0.269, None, None) == "ECE 0.2690 (no temperature scaling)"
