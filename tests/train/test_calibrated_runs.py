"""Temperature scaling inside runs: fitted at the end of finetune from the validation predictions, applied by evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgadapt.bench.tune import run_tuned
from ecgadapt.cli import main
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.metrics import score
from ecgadapt.eval.temperature import CALIBRATION, apply_temperature, fit_temperature, load_calibration
from ecgadapt.runs.rundir import load_predictions
from ecgadapt.train.evaluate import evaluate_run
from ecgadapt.train.finetune import run_finetune


def test_finetune_fits_calibration_from_val_predictions_even_without_test_scoring(make_cfg):
    run = run_finetune(
        make_cfg(
            "linear_probe", "cand", "training.score_test=false", "training.calibration=per_class", epochs=1
        )
    )
    assert not (run / "predictions_test.npz").exists()
    cal = load_calibration(run)
    val = load_predictions(run / "predictions_val.npz")
    assert cal["mode"] == "per_class" and cal["fitted_on"]["split"] == "val" and cal["fitted_on"]["fold"] == 9
    np.testing.assert_allclose(
        cal["temperatures"], fit_temperature(val["y_true"], val["y_score"], "per_class")
    )
    run_none = run_finetune(make_cfg("linear_probe", "none", "training.calibration=none", epochs=1))
    assert not (run_none / CALIBRATION).exists()


def test_evaluate_applies_calibration_and_uncalibrated_gives_raw(trained_run, capsys):
    final = json.loads((trained_run / "final.json").read_text())
    test = load_predictions(trained_run / "predictions_test.npz")
    cal = load_calibration(trained_run)
    raw = evaluate_run(trained_run, device="cpu", uncalibrated=True)
    scaled = evaluate_run(trained_run, device="cpu")
    assert raw["calibration"] is None and scaled["calibration"] == "global"
    assert raw["loss"] == pytest.approx(final["test"]["loss"], abs=1e-6)
    assert raw["ece"] == pytest.approx(expected_calibration_error(test["y_true"], test["y_score"]), abs=1e-6)
    calibrated = apply_temperature(test["y_score"], cal["temperatures"])
    assert scaled["loss"] == pytest.approx(score(test["y_true"], calibrated)["loss"], abs=1e-6)
    assert scaled["ece"] == pytest.approx(expected_calibration_error(test["y_true"], calibrated), abs=1e-6)
    assert scaled["loss"] != raw["loss"]
    assert (
        scaled["macro_auroc"] == raw["macro_auroc"] == final["test"]["macro_auroc"]
    )  # scaling keeps the ranking
    assert main(["evaluate", str(trained_run), "--json", "--uncalibrated", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"] is None


def test_a_tuned_run_is_calibrated_on_its_chosen_candidates_validation_predictions(make_cfg):
    import dataclasses

    cfg = dataclasses.replace(make_cfg("linear_probe", "tuned", epochs=1), tune={"lr": [1e-3, 1e-2]})
    run = run_tuned(cfg)
    chosen = json.loads((run / "tune.json").read_text())["chosen"]
    cal, chosen_cal = load_calibration(run), load_calibration(run / "candidates" / chosen)
    assert cal is not None and cal["temperatures"] == chosen_cal["temperatures"]
    val = load_predictions(run / "predictions_val.npz")
    np.testing.assert_allclose(cal["temperatures"], fit_temperature(val["y_true"], val["y_score"], "global"))
