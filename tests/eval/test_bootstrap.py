"""Tests for ecgadapt.eval.bootstrap: coverage, redraw rule, paired tests, seed statistics, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from ecgadapt.errors import ConfigError
from ecgadapt.eval.bootstrap import (
    bootstrap_ci,
    paired_bootstrap,
    paired_seed_difference,
    pooled_paired_bootstrap,
    resample_indices,
    seed_summary,
)
from ecgadapt.eval.metrics import MetricInputError


def _coverage(n_datasets: int, n: int, n_resamples: int, shift: float = 1.0) -> float:
    """Fraction of percentile intervals holding the true binormal AUROC Phi(shift / sqrt 2)."""
    true_auroc = norm.cdf(shift / np.sqrt(2))
    rng = np.random.default_rng(2024)
    y = (np.arange(n) < n // 2).astype(int)
    hits = 0
    for k in range(n_datasets):
        scores = rng.normal(size=n) + shift * y
        res = bootstrap_ci(y, scores, n_resamples=n_resamples, seed=k)
        hits += res["low"] <= true_auroc <= res["high"]
    return hits / n_datasets


def test_bootstrap_interval_reaches_nominal_coverage_fast():
    # 400 simulated test sets: binomial sd of the coverage is about 0.011 around 0.95.
    assert 0.90 <= _coverage(400, 100, 200) <= 0.98


@pytest.mark.slow
def test_bootstrap_interval_reaches_nominal_coverage():
    assert 0.925 <= _coverage(2000, 200, 1000) <= 0.97


def _multilabel(rng, n=150, c=4):
    y = (rng.random((n, c)) < 0.3).astype(int)
    return y, rng.normal(size=(n, c)) + y


def test_bootstrap_ci_fields_and_callable_metric_matches_fast_path():
    rng = np.random.default_rng(1)
    y, s = _multilabel(rng)
    fast = bootstrap_ci(y, s, "macro_auroc", n_resamples=60, seed=3, return_samples=True)
    slow = bootstrap_ci(
        y,
        s,
        lambda yt, ys: float(np.mean([roc_auc_score(yt[:, j], ys[:, j]) for j in range(yt.shape[1])])),
        n_resamples=60,
        seed=3,
        return_samples=True,
    )
    np.testing.assert_allclose(fast["samples"], slow["samples"], atol=1e-12, rtol=0)
    assert fast["point"] == pytest.approx(slow["point"], abs=1e-12)
    assert fast["low"] < fast["point"] < fast["high"]
    assert fast["low"] == pytest.approx(np.quantile(fast["samples"], 0.025))
    assert fast["std"] == pytest.approx(np.std(fast["samples"], ddof=1))
    assert fast["n_resamples"] == 60 and fast["samples"].shape == (60,)
    assert "samples" not in bootstrap_ci(y, s, "macro_auprc", n_resamples=10)


def test_determinism_under_seed():
    rng = np.random.default_rng(2)
    y, s = _multilabel(rng)
    a = bootstrap_ci(y, s, "macro_auprc", n_resamples=50, seed=11, return_samples=True)
    b = bootstrap_ci(y, s, "macro_auprc", n_resamples=50, seed=11, return_samples=True)
    c = bootstrap_ci(y, s, "macro_auprc", n_resamples=50, seed=12, return_samples=True)
    np.testing.assert_array_equal(a["samples"], b["samples"])
    assert not np.array_equal(a["samples"], c["samples"])


def test_redraw_keeps_a_positive_in_every_resample():
    rng = np.random.default_rng(3)
    n = 50
    y = np.zeros((n, 2), dtype=int)
    y[:25, 0] = 1
    y[[7, 31], 1] = 1  # rare class: a naive resample misses both positives with probability (48/50)^50 = 0.13
    idx, n_rejected = resample_indices(y, n_resamples=300, seed=0)
    assert idx.shape == (300, n)
    assert n_rejected > 0
    assert np.all(y[idx, 1].sum(axis=1) > 0)
    assert np.all(y[idx, 0].sum(axis=1) > 0) and np.all(y[idx, 0].sum(axis=1) < n)
    # Scoring works on every resample (no NaN from a class losing its positives).
    res = bootstrap_ci(y, rng.normal(size=(n, 2)) + y, n_resamples=300, seed=0, return_samples=True)
    assert np.isfinite(res["samples"]).all() and res["n_redrawn"] == n_rejected


def test_class_unscorable_on_full_set_does_not_force_redraws():
    y = np.zeros((40, 2), dtype=int)
    y[::2, 0] = 1  # class 1 has no positive at all: excluded, not required
    idx, n_rejected = resample_indices(y, n_resamples=20, seed=0)
    assert idx.shape == (20, 40) and n_rejected == 0


def test_impossible_redraw_gives_clear_error():
    y = np.eye(30, dtype=int)  # every record is the only positive of its class
    with pytest.raises(MetricInputError, match="gave up after .* draws.*1 of 30 positive"):
        resample_indices(y, n_resamples=10, seed=0, max_draws_factor=5)


def test_paired_bootstrap_finds_planted_difference():
    rng = np.random.default_rng(4)
    n, c = 400, 3
    y = (rng.random((n, c)) < 0.3).astype(int)
    noise = rng.normal(size=(n, c))
    good = noise + 1.5 * y
    bad = noise + 0.7 * y + 0.8 * rng.normal(size=(n, c))
    res = paired_bootstrap(y, good, bad, n_resamples=300, seed=0)
    assert res["diff"] > 0 and res["low"] > 0 and res["p_value"] < 0.01
    assert res["diff"] == pytest.approx(res["point_a"] - res["point_b"])


def test_paired_bootstrap_identical_runs():
    rng = np.random.default_rng(5)
    y, s = _multilabel(rng)
    res = paired_bootstrap(y, s, s.copy(), "macro_auprc", n_resamples=100, seed=0)
    assert res["diff"] == 0.0 and res["low"] == 0.0 and res["high"] == 0.0 and res["p_value"] == 1.0


def test_paired_bootstrap_equally_good_runs_not_significant():
    rng = np.random.default_rng(6)
    n, c = 300, 3
    y = (rng.random((n, c)) < 0.3).astype(int)
    a = y + rng.normal(size=(n, c))
    b = y + rng.normal(size=(n, c))
    res = paired_bootstrap(y, a, b, n_resamples=300, seed=0)
    assert res["p_value"] > 0.05 and res["low"] < 0 < res["high"]


def test_paired_uses_same_records_for_both_runs():
    # If the runs were resampled independently, the spread of a-b between identical-quality but perfectly
    # correlated runs (b = a + constant) would be non-zero; paired resampling makes every diff exactly 0.
    rng = np.random.default_rng(7)
    y, s = _multilabel(rng)
    res = paired_bootstrap(y, s, s + 5.0, n_resamples=50, seed=0, return_samples=True)
    assert np.all(res["samples"] == 0.0)


def test_pooled_paired_bootstrap_averages_runs():
    rng = np.random.default_rng(8)
    y, s = _multilabel(rng)
    runs_a = [s + 0.3 * rng.normal(size=s.shape) for _ in range(3)]
    runs_b = [s + 1.5 * rng.normal(size=s.shape) for _ in range(2)]
    res = pooled_paired_bootstrap(y, runs_a, runs_b, n_resamples=80, seed=1, return_samples=True)
    single = [bootstrap_ci(y, r, n_resamples=80, seed=1, return_samples=True) for r in runs_a + runs_b]
    expected = np.mean([x["samples"] for x in single[:3]], axis=0) - np.mean(
        [x["samples"] for x in single[3:]], axis=0
    )
    np.testing.assert_allclose(res["samples"], expected, atol=1e-12)
    assert res["diff"] == pytest.approx(
        np.mean([x["point"] for x in single[:3]]) - np.mean([x["point"] for x in single[3:]])
    )
    assert res["n_runs_a"] == 3 and res["n_runs_b"] == 2 and res["low"] > 0


def test_bootstrap_bad_arguments():
    y, s = _multilabel(np.random.default_rng(9))
    with pytest.raises(ConfigError, match="unknown bootstrap metric 'auc'"):
        bootstrap_ci(y, s, "auc")
    with pytest.raises(ConfigError, match="alpha"):
        bootstrap_ci(y, s, alpha=1.5)
    with pytest.raises(MetricInputError, match=r"y_true has shape \(150, 4\) but score_b\[0\] has shape"):
        paired_bootstrap(y, s, s[:, :2])


def test_seed_summary():
    vals = [0.90, 0.92, 0.91, 0.93]
    res = seed_summary(vals)
    arr = np.array(vals)
    assert res["mean"] == pytest.approx(arr.mean()) and res["std"] == pytest.approx(arr.std(ddof=1))
    half = 3.182446305284263 * arr.std(ddof=1) / 2  # t_{0.975, 3} * s / sqrt(4)
    assert res["ci_low"] == pytest.approx(arr.mean() - half) and res["ci_high"] == pytest.approx(
        arr.mean() + half
    )
    one = seed_summary([0.5])
    assert one["n"] == 1 and np.isnan(one["std"]) and np.isnan(one["ci_low"])
    with pytest.raises(MetricInputError, match="NaN or inf"):
        seed_summary([0.5, float("nan")])
    with pytest.raises(MetricInputError, match="non-empty"):
        seed_summary([])


def test_paired_seed_difference():
    a = {0: 0.91, 1: 0.92, 2: 0.90, 3: 0.93, 4: 0.92, 5: 0.915}
    b = {5: 0.905, 4: 0.90, 3: 0.915, 2: 0.89, 1: 0.90, 0: 0.90}
    res = paired_seed_difference(a, b)
    diffs = np.array([a[k] - b[k] for k in range(6)])
    assert res["per_seed"] == pytest.approx({k: a[k] - b[k] for k in range(6)})
    assert res["mean_diff"] == pytest.approx(diffs.mean()) and res["n"] == 6
    assert res["p_value"] < 0.01 and res["ci_low"] > 0
    assert res["wilcoxon_p"] == pytest.approx(2 / 64)  # all six differences positive: exact two-sided p
    small = paired_seed_difference({0: 0.9, 1: 0.8, 2: 0.85}, {0: 0.85, 1: 0.82, 2: 0.84})
    assert small["wilcoxon_p"] is None and small["p_value"] > 0.05
    same = paired_seed_difference({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8})
    assert same["mean_diff"] == 0.0 and same["p_value"] == 1.0
    with pytest.raises(MetricInputError, match=r"only in a: \[2\], only in b: \[3\]"):
        paired_seed_difference({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.9, 1: 0.8, 3: 0.7})
