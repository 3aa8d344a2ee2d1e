"""Patient-grouped bootstrap: resample patients (all their records) instead of records, everywhere a table
bootstraps, with the grouping named."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import add_patient_ids, fabricate_results, fabricate_rotate_results, labels

from ecgadapt.cli import main
from ecgadapt.errors import DataError
from ecgadapt.eval.bootstrap import bootstrap_ci, pooled_paired_bootstrap, resample_counts, resample_indices
from ecgadapt.eval.results import run_patient_ids
from ecgadapt.runs.rundir import load_predictions


def test_record_resamples_are_unchanged_and_patient_resamples_keep_a_patients_records_together():
    y = labels(60, seed=3)
    idx, _ = resample_indices(y, 50, seed=1)
    counts, _ = resample_counts(y, 50, seed=1)
    assert np.array_equal(counts, np.stack([np.bincount(r, minlength=60) for r in idx]))
    patients = np.arange(60) // 3  # three records per patient
    grouped, _ = resample_counts(y, 50, seed=1, groups=patients)
    assert grouped.shape == (50, 60)
    per_patient = grouped.reshape(50, 20, 3)
    assert (per_patient == per_patient[:, :, :1]).all()  # a drawn patient brings all three records
    assert (grouped.reshape(50, 20, 3)[:, :, 0].sum(axis=1) == 20).all()  # 20 patients drawn per resample


def test_copies_of_one_patients_record_widen_the_patient_interval_not_the_record_one():
    rng = np.random.default_rng(0)
    y1 = labels(40, seed=4)
    s1 = np.clip(y1 * 0.3 + rng.random(y1.shape) * 0.7, 0, 1)
    y, s = np.repeat(y1, 5, axis=0), np.repeat(s1, 5, axis=0)  # each patient recorded five times, alike
    patients = np.repeat(np.arange(40), 5)
    by_record = bootstrap_ci(y, s, n_resamples=300, seed=0)
    by_patient = bootstrap_ci(y, s, n_resamples=300, seed=0, groups=patients)
    assert by_record["grouping"] == "records" and by_patient["grouping"] == "patients"
    assert by_patient["point"] == by_record["point"]
    assert by_patient["high"] - by_patient["low"] > 1.5 * (by_record["high"] - by_record["low"])
    diff = pooled_paired_bootstrap(y, [s], [s[::-1]], n_resamples=50, groups=patients)
    assert diff["grouping"] == "patients"


def test_new_runs_save_each_records_patient_and_old_ones_look_it_up(trained_run, synthetic_root, tmp_path):
    db = pd.read_csv(synthetic_root / "ptbxl_database.csv", index_col="ecg_id")
    pred = load_predictions(trained_run, "test")
    expected = db.loc[pred["ecg_ids"], "patient_id"].astype(int).to_numpy()
    assert np.array_equal(pred["patient_ids"], expected)
    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    arrays = {k: v for k, v in pred.items() if k != "patient_ids"}
    np.savez(old / "predictions_test.npz", **arrays)  # as saved before predictions carried patients
    assert np.array_equal(run_patient_ids(old), expected)


def test_patients_of_an_old_run_whose_data_is_gone_are_a_clear_error(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0,))
    run = next((root / "runs").iterdir())
    with pytest.raises(DataError, match="bootstrap records"):
        run_patient_ids(run)


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 3)
    return md[start : end if end > 0 else None]


def test_report_bootstraps_patients_and_every_table_says_so(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1, 2))
    for run in (root / "runs").iterdir():
        add_patient_ids(run, per_patient=4)
    assert main(["report", str(root), "--out", str(tmp_path / "rec"), "--n-bootstrap", "50"]) == 0
    records = (tmp_path / "rec" / "report.md").read_text()
    assert "CI (records)" in records and "bootstrap grouping: records" in records
    args = ["report", str(root), "--out", str(tmp_path / "pat"), "--n-bootstrap", "50"]
    assert main([*args, "--bootstrap-groups", "patient"]) == 0
    md = (tmp_path / "pat" / "report.md").read_text()
    assert "CI (records)" not in md and "macro AUROC CI (patients)" in _section(md, "Main results")
    assert "bootstrap grouping: patients" in _section(md, "Overview")
    assert "Bootstrap Δ over patients [CI]" in md
    assert "over test patients (paired bootstrap" in _section(md, "Result") and ", patients [" in md


def _load_benchmark_script():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bundled_ptbxl500.py"
    spec = importlib.util.spec_from_file_location("bundled_ptbxl500_patients", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_bootstraps_patients(tmp_path, monkeypatch, capsys):
    cells = (("bundled", "baseline_ft"), ("bundled", "post_training"))
    out = fabricate_rotate_results(tmp_path / "grid", cells=cells, seeds=(0, 1), patients=True)
    argv = ["bundled_ptbxl500.py", "--out", str(out), "--tables-only", "--protocol", "rotate-folds"]
    argv += [
        "--tasks",
        "superdiagnostic",
        "--seeds",
        "2",
        "--n-resamples",
        "20",
        "--bootstrap-groups",
        "patient",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    _load_benchmark_script().main()
    payload = json.loads((out / "comparisons-patients.json").read_text())
    assert payload["bootstrap_groups"] == "patient"
    assert payload["comparisons"] and {c["bootstrap_groups"] for c in payload["comparisons"]} == {"patients"}
    assert "a − b (patient bootstrap, 95% CI, p)" in (out / "comparisons-patients.md").read_text()
