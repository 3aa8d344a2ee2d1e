"""``ecgadapt calibrate RUN --data SITE --fold K``: temperatures fitted on part of an external site, measured on
the rest, kept beside the run's own and applied by ``predict``/``evaluate --calibration SITE``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgadapt.cli import main
from ecgadapt.data.ptbxl import read_database
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.temperature import apply_temperature, fit_temperature, load_calibration
from ecgadapt.inference.predict import predict
from ecgadapt.locks import RunLock
from ecgadapt.runs.rundir import load_predictions
from ecgadapt.train.evaluate import evaluate_run

SITE = "site_a"


@pytest.fixture(scope="module")
def site(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """The synthetic records as a labelled folder (``data``, a labels CSV with the records' own folds)."""
    db = read_database(synthetic_root)
    labels = pd.DataFrame(
        {
            "record": db["filename_lr"].to_numpy(),
            "labels": [";".join(codes) for codes in db["scp_codes"]],
            "fold": db["strat_fold"].to_numpy(),
        }
    )
    path = tmp_path_factory.mktemp("site") / "labels.csv"
    labels.to_csv(path, index=False)
    return synthetic_root, path, labels


@pytest.fixture(scope="module")
def calibrated(trained_run: Path, site, tmp_path_factory: pytest.TempPathFactory):
    """A copy of the trained run calibrated on fold 1 of the site through the CLI, and what it printed."""
    run = tmp_path_factory.mktemp("site_cal") / "run"
    shutil.copytree(trained_run, run)
    data, labels, _ = site
    before = (run / "calibration.json").read_bytes()
    argv = ["calibrate", str(run), "--data", str(data), "--labels", str(labels), "--fold", "1"]
    code = main([*argv, "--name", SITE, "--device", "cpu", "--no-progress"])
    return run, before, code


def test_the_site_fit_is_measured_on_the_sites_other_records(calibrated, site, capsys) -> None:
    run, before, code = calibrated
    assert code == 0
    assert (run / "calibration.json").read_bytes() == before  # the run's own calibration is never replaced
    record = json.loads((run / f"calibration_{SITE}.json").read_text())
    assert record == load_calibration(run, SITE)
    pred = load_predictions(run / f"predictions_external_{SITE}.npz")
    folds = site[2].set_index(np.arange(1, len(site[2]) + 1))["fold"].loc[pred["ecg_ids"]].to_numpy()
    fit, held = folds == 1, folds != 1
    assert record["fitted_on"]["folds"] == [1] and record["fitted_on"]["n_records"] == int(fit.sum()) > 0
    assert record["held_out"]["n_records"] == int(held.sum()) and 1 not in record["held_out"]["folds"]
    y, p = pred["y_true"], pred["y_score"]
    t = fit_temperature(y[fit], p[fit], "global")  # the run's training.calibration: global
    scaled = apply_temperature(p[held], t)
    assert record["held_out_ece"]["site_calibration"] == pytest.approx(
        expected_calibration_error(y[held], scaled)
    )
    assert record["held_out_ece"]["raw"] == pytest.approx(expected_calibration_error(y[held], p[held]))
    own = load_calibration(run)
    with_run = apply_temperature(p[held], own["temperatures"][0])
    assert record["held_out_ece"]["run_calibration"] == pytest.approx(
        expected_calibration_error(y[held], with_run)
    )
    shared = [str(c) for c in pred["class_names"]]
    by_class = dict(zip(record["class_names"], record["temperatures"]))
    assert [by_class[c] for c in shared] == pytest.approx(t.tolist())
    for c in record["classes_from_run"]:  # a run class the site never marks keeps the run's temperature
        assert by_class[c] == own["temperatures"][own["class_names"].index(c)]


def test_calibrate_prints_the_held_out_errors_and_how_to_apply_it(
    trained_run, site, tmp_path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    data, labels, _ = site
    argv = ["calibrate", str(run), "--data", str(data), "--labels", str(labels), "--fold", "2", "--fold", "3"]
    assert main([*argv, "--device", "cpu", "--mode", "per_class"]) == 0
    out = capsys.readouterr().out
    name = data.name  # the site is named after its folder by default
    record = json.loads((run / f"calibration_{name}.json").read_text())
    assert record["mode"] == "per_class" and record["fitted_on"]["folds"] == [2, 3]
    ece = record["held_out_ece"]
    assert f"temperature scaling (per_class) fitted on {record['fitted_on']['n_records']} records" in out
    assert (
        f"ECE {ece['raw']:.4f} raw, {ece['run_calibration']:.4f} with the run's, "
        f"{ece['site_calibration']:.4f} with {name}'s" in out
    )
    assert f"--calibration {name}" in out


def test_predict_and_evaluate_apply_a_sites_temperatures(calibrated, site) -> None:
    run, _, _ = calibrated
    data, _, labels = site
    base = data / labels["record"].iloc[0]
    record = load_calibration(run, SITE)
    classes = record["class_names"]
    raw = predict(run, [base], device="cpu", uncalibrated=True)
    df = predict(run, [base], device="cpu", calibration=SITE)
    assert df.attrs["calibration"] == "global" and df.attrs["calibration_site"] == SITE
    expected = apply_temperature(raw[classes].to_numpy(), record["temperatures"])
    np.testing.assert_allclose(df[classes].to_numpy(), expected, atol=1e-9)
    m = evaluate_run(run, device="cpu", calibration=SITE)
    test = load_predictions(run / "predictions_test.npz")
    scaled = apply_temperature(test["y_score"], record["temperatures"])
    assert m["ece"] == pytest.approx(expected_calibration_error(test["y_true"], scaled))
    assert m["calibration_fitted_on"] == f"fold 1 of site {SITE}"


def test_cli_evaluate_with_a_sites_calibration(calibrated, site, capsys) -> None:
    run, _, _ = calibrated
    assert main(["evaluate", str(run), "--device", "cpu", "--calibration", SITE]) == 0
    assert f"after (global, fitted on fold 1 of site {SITE})" in capsys.readouterr().out
    data, labels, _ = site
    argv = [
        "evaluate",
        str(run),
        "--data",
        str(data),
        "--labels",
        str(labels),
        "--name",
        SITE,
        "--device",
        "cpu",
    ]
    assert main([*argv, "--calibration", SITE]) == 0
    assert f"fitted on fold 1 of site {SITE}, records scored here too" in capsys.readouterr().out
    ext = json.loads((run / f"external_{SITE}.json").read_text())
    assert ext["calibration"]["site"] == SITE
    with pytest.raises(SystemExit):  # one of the two
        main(["evaluate", str(run), "--device", "cpu", "--calibration", SITE, "--uncalibrated"])


def test_site_calibration_errors(calibrated, site, trained_run, capsys) -> None:
    run, _, _ = calibrated
    data, labels, _ = site
    with pytest.raises(SystemExit):  # --fold picks records of a site: it needs --data
        main(["calibrate", str(run), "--fold", "1"])
    assert main(["calibrate", str(run), "--data", str(data), "--labels", str(labels)]) == 2
    assert "needs --fold K" in capsys.readouterr().err
    assert main(["calibrate", str(run), "--data", str(data), "--labels", str(labels), "--fold", "11"]) == 2
    assert "--fold 11 is not a fold" in capsys.readouterr().err
    assert main(["predict", str(trained_run), "x.npy", "--rate", "100", "--calibration", "elsewhere"]) == 2
    assert "no temperature scaling for site 'elsewhere'" in capsys.readouterr().err
    with RunLock(run):  # another writer holds the run: calibrating waits for nobody and writes nothing
        argv = [
            "calibrate",
            str(run),
            "--data",
            str(data),
            "--labels",
            str(labels),
            "--fold",
            "4",
            "--name",
            "b",
        ]
        assert main([*argv, "--device", "cpu"]) == 2
    assert "being written by another ecgadapt process" in capsys.readouterr().err
    assert not (run / "calibration_b.json").exists()


def test_a_ptbxl_folder_is_an_external_site_too(calibrated, site, capsys) -> None:
    run, _, _ = calibrated
    data, _, labels = site
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--data",
                str(data),
                "--source",
                "ptbxl",
                "--name",
                "same",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    ext = json.loads((run / "external_same.json").read_text())
    assert ext["source"] == "ptbxl" and ext["n_records_total"] == len(labels)
