"""Tests for ecgadapt.eval.calibration: ECE values, binning edges, reliability tables and plots."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from ecgadapt.errors import ConfigError
from ecgadapt.eval.calibration import (
    expected_calibration_error,
    per_class_calibration_error,
    plot_reliability,
    reliability_curve,
)
from ecgadapt.eval.metrics import MetricInputError


def _calibrated(rng, n=20000, c=3):
    prob = rng.random((n, c))
    return (rng.random((n, c)) < prob).astype(int), prob


def test_calibrated_probabilities_have_small_ece():
    y, p = _calibrated(np.random.default_rng(0))
    assert expected_calibration_error(y, p) < 0.015
    assert expected_calibration_error(y, p, strategy="quantile") < 0.015


def test_overconfident_probabilities_have_large_ece():
    rng = np.random.default_rng(1)
    y, q = _calibrated(rng)
    logit = np.log(q / (1 - q))
    overconfident = 1 / (1 + np.exp(-4 * logit))
    assert expected_calibration_error(y, overconfident) > 0.1
    curve = reliability_curve(y, overconfident, n_bins=10)
    top = curve.iloc[-1]
    assert top["mean_prob"] > top["frac_pos"] + 0.1  # says 0.95+, right far less often


def test_hand_computed_ece_two_bins():
    # Bin [0, 0.5): probs 0.1, 0.2 (mean 0.15), labels 0, 1 (frac 0.5) -> gap 0.35, weight 2/4.
    # Bin [0.5, 1]: probs 0.5, 0.9 (mean 0.7), labels 1, 1 (frac 1.0) -> gap 0.30, weight 2/4.
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.5, 0.9])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.30, abs=1e-12)
    # The same pairs laid out as a (2 records, 2 classes) multi-label array give the pooled ECE.
    assert expected_calibration_error(y.reshape(2, 2), p.reshape(2, 2), n_bins=2) == pytest.approx(0.325)
    curve = reliability_curve(y, p, n_bins=2)
    assert list(curve.columns) == ["bin_lower", "bin_upper", "mean_prob", "frac_pos", "count"]
    np.testing.assert_allclose(curve["mean_prob"], [0.15, 0.7])
    np.testing.assert_allclose(curve["frac_pos"], [0.5, 1.0])
    assert list(curve["count"]) == [2, 2]


def test_edges_one_lands_in_last_bin_and_empty_bins_dropped():
    curve = reliability_curve(np.array([1, 0, 1]), np.array([1.0, 0.0, 0.55]), n_bins=10)
    assert list(curve["count"]) == [1, 1, 1]
    assert curve["bin_upper"].iloc[-1] == 1.0 and curve["bin_lower"].iloc[-1] == pytest.approx(0.9)
    assert curve["bin_lower"].iloc[1] == pytest.approx(0.5)
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0]), n_bins=10) == 0.0


def test_quantile_bins_hold_equal_counts():
    p = np.linspace(0.01, 0.99, 100)
    y = (np.arange(100) % 2).astype(int)
    curve = reliability_curve(y, p, n_bins=4, strategy="quantile")
    assert list(curve["count"]) == [25, 25, 25, 25]
    # Constant predictions: a single bin, ECE = |p - prevalence|.
    assert expected_calibration_error(y, np.full(100, 0.3), strategy="quantile") == pytest.approx(0.2)


def test_per_class_ece():
    rng = np.random.default_rng(2)
    y, p = _calibrated(rng, n=5000, c=2)
    p[:, 1] = np.clip(p[:, 1] + 0.3, 0, 1)
    res = per_class_calibration_error(y, p, class_names=["good", "shifted"])
    assert set(res) == {"good", "shifted"}
    assert res["good"] < 0.03 < 0.15 < res["shifted"]
    assert res["good"] == pytest.approx(expected_calibration_error(y[:, 0], p[:, 0]))


def test_bad_inputs():
    with pytest.raises(MetricInputError, match="apply a sigmoid"):
        expected_calibration_error(np.array([0, 1]), np.array([-2.0, 3.0]))
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error(np.array([0, 1]), np.array([np.nan, 0.3]))
    with pytest.raises(ConfigError, match="unknown calibration binning strategy 'equal'"):
        expected_calibration_error(np.array([0, 1]), np.array([0.2, 0.3]), strategy="equal")
    with pytest.raises(ConfigError, match="n_bins"):
        expected_calibration_error(np.array([0, 1]), np.array([0.2, 0.3]), n_bins=0)


def test_plot_reliability_lines_per_run_and_png(tmp_path):
    rng = np.random.default_rng(3)
    y, p = _calibrated(rng, n=500, c=2)
    runs = {"fine-tune": p, "post-train": np.clip(p * 1.2, 0, 1)}
    fig = plot_reliability(y, runs, n_bins=8, title="PTB-XL superdiagnostic")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 1 + len(runs)  # diagonal + one per run
    assert ax.get_title() == "PTB-XL superdiagnostic"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[1].startswith("fine-tune (ECE ") and labels[2].startswith("post-train (ECE ")
    out = tmp_path / "rel.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # From precomputed tables, drawn into a given axes.
    ax2 = Figure().add_subplot()
    tables = {name: reliability_curve(y, prob, 8) for name, prob in runs.items()}
    fig2 = plot_reliability(tables, ax=ax2)
    assert fig2 is ax2.figure and len(ax2.get_lines()) == 3
    single = plot_reliability(y, p)
    assert len(single.axes[0].get_lines()) == 2
    with pytest.raises(ConfigError, match="lacks columns"):
        plot_reliability({"x": tables["fine-tune"].drop(columns=["count"])})


def test_uniform_reliability_bins_agree_with_sklearn_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(5)
    prob = rng.beta(
        0.7, 2.0, size=3000
    )  # continuous: no value on a bin edge, where the two conventions differ
    label = (rng.random(3000) < prob**1.3).astype(int)
    curve = reliability_curve(label, prob, n_bins=15)
    frac_pos, mean_prob = calibration_curve(label, prob, n_bins=15, strategy="uniform")
    np.testing.assert_allclose(curve["frac_pos"], frac_pos, atol=1e-12)
    np.testing.assert_allclose(curve["mean_prob"], mean_prob, atol=1e-12)
