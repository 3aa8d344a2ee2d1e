"""Temperature scaling: fitted on the validation predictions only, never lowers their likelihood."""

from __future__ import annotations

import json

import numpy as np
import pytest
from run_fixtures import config, write_run

from ecgadapt.cli import main
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.temperature import (
    CALIBRATION,
    apply_temperature,
    bce,
    calibrate_probs,
    fit_run_calibration,
    fit_temperature,
    load_calibration,
)


def _data(n: int, scale: float, seed: int = 0, n_classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated logits, and probabilities of ``scale`` times those logits
    (scale > 1: over-confident, < 1: under-confident, 1: calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-1.0, 2.0, size=(n, n_classes))
    y = (rng.random((n, n_classes)) < 1 / (1 + np.exp(-logits))).astype(np.int8)
    return y, (1 / (1 + np.exp(-scale * logits))).astype(np.float32)


@pytest.mark.parametrize("mode", ["global", "per_class"])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_scaling_never_lowers_the_fitted_likelihood(mode, scale):
    y, p = _data(300, scale, seed=1)
    temps = fit_temperature(y, p, mode)
    assert temps.shape == (y.shape[1],) and (temps > 0).all()
    assert bce(y, apply_temperature(p, temps)) <= bce(y, p)
    per_class_before, per_class_after = bce(y, p, axis=0), bce(y, apply_temperature(p, temps), axis=0)
    if mode == "per_class":
        assert (per_class_after <= per_class_before).all()


def test_overconfident_predictions_get_a_temperature_above_one_and_a_lower_ece():
    y, p = _data(4000, 4.0, seed=2)
    (t, *_) = fit_temperature(y, p, "global")
    assert 3.0 < t < 5.0  # the true factor is 4
    assert expected_calibration_error(y, apply_temperature(p, t)) < expected_calibration_error(y, p) / 2
    y, p = _data(4000, 0.3, seed=2)
    (t_under, *_) = fit_temperature(y, p, "global")
    assert 0.2 < t_under < 0.45


def test_already_calibrated_gives_about_one_and_identity_at_one():
    y, p = _data(4000, 1.0, seed=3)
    np.testing.assert_array_equal(apply_temperature(p, 1.0), p.astype(np.float64))
    assert 0.9 < fit_temperature(y, p, "global")[0] < 1.1
    logits = np.random.default_rng(3).normal(-1.0, 2.0, size=y.shape)
    np.testing.assert_allclose(apply_temperature(p, 2.0), 1 / (1 + np.exp(-logits / 2)), atol=1e-6)


def test_per_class_keeps_one_for_a_class_without_positives_and_ranks_are_kept():
    y, p = _data(400, 3.0, seed=4)
    y[:, 2] = 0
    temps = fit_temperature(y, p, "per_class")
    assert temps[2] == 1.0 and (np.delete(temps, 2) > 1.0).all()
    scaled = apply_temperature(p, temps)
    for j in range(y.shape[1]):
        np.testing.assert_array_equal(
            np.argsort(scaled[:, j], kind="stable"), np.argsort(p[:, j], kind="stable")
        )


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="calibration mode"):
        fit_temperature(np.zeros((3, 2)), np.zeros((3, 2)), "platt")
    with pytest.raises(DataError, match="probabilities in"):
        fit_temperature(np.zeros((3, 2)), np.full((3, 2), 2.0))
    with pytest.raises(ConfigError, match="positive"):
        apply_temperature(np.zeros((3, 2)), [1.0, 0.0])


@pytest.fixture
def run(tmp_path):
    """A fabricated finished run whose validation and test scores are over-confident."""
    (y_test, p_test), (y_val, p_val) = _data(80, 4.0, seed=8), _data(120, 4.0, seed=7)
    run = write_run(
        tmp_path / "run",
        config(),
        y_test=y_test,
        ids_test=np.arange(80),
        y_val=y_val,
        ids_val=np.arange(120) + 500,
        quality=3.0,
    )
    for split, p in (("val", p_val), ("test", p_test)):
        with np.load(run / f"predictions_{split}.npz") as z:
            d = dict(z)
        d["y_score"] = p
        np.savez(run / f"predictions_{split}.npz", **d)
    return run


def test_run_calibration_is_fitted_without_touching_the_test_fold(run, monkeypatch):
    expected = fit_temperature(
        np.load(run / "predictions_val.npz")["y_true"],
        np.load(run / "predictions_val.npz")["y_score"],
        "global",
    )
    opened: list[str] = []
    real_load = np.load

    def spy_load(file, *a, **kw):
        opened.append(str(file))
        return real_load(file, *a, **kw)

    monkeypatch.setattr(np, "load", spy_load)
    (run / "predictions_test.npz").write_bytes(b"not an npz: reading it would fail")
    record = fit_run_calibration(run, "global")
    assert opened and all("predictions_val" in f for f in opened), opened
    assert record["fitted_on"] == {"file": "predictions_val.npz", "split": "val", "fold": 9, "n_records": 120}
    np.testing.assert_allclose(record["temperatures"], expected)
    assert record["val_loss"]["after"] <= record["val_loss"]["before"]
    assert load_calibration(run)["temperatures"] == record["temperatures"]


def test_calibrate_probs_applies_the_runs_scaling_unless_uncalibrated(run):
    fit_run_calibration(run, "per_class")
    z = np.load(run / "predictions_test.npz")
    names = [str(c) for c in z["class_names"]]
    raw, none = calibrate_probs(run, z["y_score"], names, uncalibrated=True)
    assert none is None and raw is not None
    np.testing.assert_array_equal(raw, z["y_score"])
    scaled, cal = calibrate_probs(run, z["y_score"], names)
    assert cal["mode"] == "per_class"
    np.testing.assert_allclose(scaled, apply_temperature(z["y_score"], cal["temperatures"]))
    assert expected_calibration_error(z["y_true"], scaled) < expected_calibration_error(
        z["y_true"], z["y_score"]
    )
    with pytest.raises(DataError, match="no temperature for class"):
        calibrate_probs(run, z["y_score"][:, :2], ["CD", "XYZ"])


def test_cli_calibrate_and_mode_none_removes_it(run, capsys):
    assert main(["calibrate", str(run)]) == 0  # the run's training.calibration: the default, global
    out = capsys.readouterr().out
    assert "temperature scaling (global)" in out and "fold 9" in out
    assert json.loads((run / CALIBRATION).read_text())["mode"] == "global"
    assert main(["calibrate", str(run), "--mode", "none"]) == 0
    assert not (run / CALIBRATION).exists()
    assert main(["calibrate", str(run.parent / "nowhere")]) == 2
    assert "not an ecgadapt run directory" in capsys.readouterr().err


def test_unreadable_calibration_is_a_clear_error(run):
    (run / CALIBRATION).write_text("{}")
    with pytest.raises(DataError, match="refit it with `ecgadapt calibrate"):
        load_calibration(run)
