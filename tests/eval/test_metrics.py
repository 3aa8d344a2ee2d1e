"""Tests for ecgadapt.eval.metrics: agreement with sklearn, hand cases, exclusion and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ecgadapt.errors import DataError
from ecgadapt.eval.metrics import (
    MetricInputError,
    RankedScores,
    classification_metrics,
    macro_auprc,
    macro_auroc,
    per_class_table,
)


def _random_case(rng: np.random.Generator, n: int, c: int, decimals: int | None):
    """Multi-label labels with varied prevalence and scores correlated with them (rounded: ties)."""
    y = (rng.random((n, c)) < rng.uniform(0.05, 0.6, size=c)).astype(int)
    s = rng.normal(size=(n, c)) + 0.8 * y
    if decimals is not None:
        s = np.round(s, decimals)
    return y, s


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_agrees_with_sklearn(decimals):
    rng = np.random.default_rng(123 + (decimals or 7))
    for _ in range(15):
        n, c = int(rng.integers(8, 400)), int(rng.integers(1, 6))
        y, s = _random_case(rng, n, c, decimals)
        res = classification_metrics(y, s)
        for j, row in enumerate(res["per_class"]):
            if row["auroc"] is None:
                continue
            assert abs(row["auroc"] - roc_auc_score(y[:, j], s[:, j])) < 1e-10
            assert abs(row["auprc"] - average_precision_score(y[:, j], s[:, j])) < 1e-10


def test_all_scores_tied_gives_half_and_prevalence():
    y = np.array([1, 0, 0, 1, 0])
    s = np.zeros(5)
    res = classification_metrics(y, s)
    assert res["macro_auroc"] == pytest.approx(0.5, abs=1e-12)
    assert res["macro_auprc"] == pytest.approx(0.4, abs=1e-12)  # one threshold: precision = prevalence
    assert res["per_class"][0]["prevalence"] == pytest.approx(0.4)


def test_hand_computed_four_samples():
    # Class 0: positives 0.9, 0.4; negatives 0.5, 0.2. Pairs won: (0.9>0.5, 0.9>0.2, 0.4>0.2) = 3/4.
    # Ranked: 0.9 P, 0.5 N, 0.4 P, 0.2 N -> precision at the positives 1 and 2/3 -> AP = 5/6.
    # Class 1: positive 0.3 tied with negative 0.3, other negatives 0.1, 0.8 -> (1 + 0.5 + 0) / 3 = 1/2.
    # Ranked groups: {0.8 N}, {0.3 P, 0.3 N}, {0.1 N} -> the positive's threshold has precision 1/3.
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.8], [0.5, 0.3], [0.4, 0.3], [0.2, 0.1]])
    res = classification_metrics(y, s, ["A", "B"])
    a, b = res["per_class"]
    assert a["auroc"] == pytest.approx(0.75, abs=1e-15)
    assert a["auprc"] == pytest.approx(5 / 6, abs=1e-15)
    assert b["auroc"] == pytest.approx(0.5, abs=1e-15)
    assert b["auprc"] == pytest.approx(1 / 3, abs=1e-15)
    assert (a["n_pos"], a["n_neg"], b["n_pos"], b["n_neg"]) == (2, 2, 1, 3)
    assert res["macro_auroc"] == pytest.approx((0.75 + 0.5) / 2)
    assert res["macro_auprc"] == pytest.approx((5 / 6 + 1 / 3) / 2)
    assert macro_auroc(y, s) == pytest.approx(res["macro_auroc"])
    assert macro_auprc(y, s) == pytest.approx(res["macro_auprc"])
    assert res["n_records"] == 4 and res["n_classes_scored"] == 2 and res["excluded_classes"] == []


def test_class_without_positive_or_negative_is_excluded_and_listed():
    rng = np.random.default_rng(0)
    y, s = _random_case(rng, 50, 4, None)
    y[:, 1] = 0  # no positive
    y[:, 3] = 1  # no negative
    res = classification_metrics(y, s, ["NORM", "MI", "STTC", "CD"])
    assert res["excluded_classes"] == ["MI", "CD"]
    assert res["n_classes_scored"] == 2
    mi = res["per_class"][1]
    assert mi["auroc"] is None and mi["auprc"] is None and mi["n_pos"] == 0 and mi["prevalence"] == 0.0
    assert res["per_class"][3]["n_neg"] == 0
    expected = np.mean([roc_auc_score(y[:, j], s[:, j]) for j in (0, 2)])
    assert res["macro_auroc"] == pytest.approx(expected, abs=1e-12)
    table = per_class_table(y, s, ["NORM", "MI", "STTC", "CD"])
    assert list(table["class"]) == ["NORM", "MI", "STTC", "CD"]
    assert list(table["scored"]) == [True, False, True, False]
    assert np.isnan(table.loc[1, "auroc"]) and table.loc[0, "auprc"] == pytest.approx(
        res["per_class"][0]["auprc"]
    )


def test_no_scorable_class_raises():
    with pytest.raises(MetricInputError, match="none of the 2 classes"):
        classification_metrics(np.zeros((5, 2)), np.random.default_rng(0).random((5, 2)))


@pytest.mark.parametrize(("bad", "word"), [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_scores_raise(bad, word):
    y = np.array([[1], [0], [1], [0]])
    s = np.array([[0.1], [0.2], [bad], [0.4]])
    with pytest.raises(ValueError, match=f"non-finite.*1 {word}.*record 2"):
        classification_metrics(y, s)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 2\) but y_score has shape \(4, 3\)"):
        classification_metrics(np.zeros((4, 2)), np.zeros((4, 3)))


def test_non_binary_labels_and_wrong_class_names_raise():
    with pytest.raises(MetricInputError, match="only 0 and 1.*2"):
        classification_metrics(np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(MetricInputError, match="class_names has 1 names but the labels have 2"):
        classification_metrics(np.array([[0, 1], [1, 0]]), np.zeros((2, 2)), ["A"])
    with pytest.raises(DataError, match=r"shape \(records, classes\)"):
        classification_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_weighted_fast_path_equals_resampling():
    rng = np.random.default_rng(5)
    y, s = _random_case(rng, 120, 5, 1)
    ranked = RankedScores(y, s)
    idx = rng.integers(0, 120, size=(8, 120))
    weights = np.stack([np.bincount(i, minlength=120) for i in idx])
    auroc_b, auprc_b = ranked.per_class(weights)
    assert auroc_b.shape == (8, 5)
    for k in range(8):
        direct = RankedScores(y[idx[k]], s[idx[k]]).per_class()
        np.testing.assert_allclose(auroc_b[k], direct[0], atol=1e-12, rtol=0)
        np.testing.assert_allclose(auprc_b[k], direct[1], atol=1e-12, rtol=0)
    single = ranked.per_class(weights[0])
    np.testing.assert_array_equal(single[0], auroc_b[0])
    with pytest.raises(MetricInputError, match="weights must have shape"):
        ranked.per_class(np.ones(7))
