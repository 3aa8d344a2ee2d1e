"""Fold drops in the results layer: every column of a rotate-folds cell, the report and the benchmark tables
honour ``--drop-test-fold``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import CLASSES, fabricate_results, fabricate_rotate_results

from ecgadapt.cli import main
from ecgadapt.errors import DataError
from ecgadapt.eval.metrics import score
from ecgadapt.eval.results import collect_results, load_metrics, load_predictions

BUDGET_OF_FOLD_9 = 5000


def _fold_final(k: int, final: dict) -> dict:
    """Fold 9 differs in everything a table reads: its budget, its tuned choice and an untrained class."""
    final["budget"] = {
        "max_total_steps": BUDGET_OF_FOLD_9 if k == 9 else 200 + k,
        "total_steps_run": 100 + k,
        "stages": [{"name": "finetune", "stopped_early": False}],
    }
    final["tuning"] = {
        "chosen_values": {"lr": 1e-5 if k == 9 else 1e-3},
        "search_steps": 10,
        "candidates": [],
    }
    final["untrained_classes"] = {"HYP": "no training positive"} if k == 9 else {}
    return final


@pytest.fixture
def rotate_dir(tmp_path):
    return fabricate_rotate_results(tmp_path / "res", seeds=(0,), fold_final=_fold_final)


def test_a_dropped_test_fold_leaves_every_column_of_a_rotate_folds_cell(rotate_dir):
    full = collect_results(rotate_dir).iloc[0]
    assert full["n_folds"] == 10 and full["max_total_steps"] == BUDGET_OF_FOLD_9
    assert full["test_excluded_classes"] == "HYP" and "(1/10)" in full["tuned"]
    row = collect_results(rotate_dir, drop_test_folds=[9]).iloc[0]
    assert row["n_folds"] == 9 and row["dropped_test_folds"] == "9" and row["n_test"] == 9 * 12
    assert row["max_total_steps"] == 210 and row["tuned"] == "lr=0.001 (9/9)"
    assert row["test_excluded_classes"] == ""  # exclusions rebuilt from the kept folds
    assert row["cell_id"] == full["cell_id"] and Path(row["run_dir"]).name == "drop-test-fold09"
    pred = load_predictions(row["run_dir"])
    kept = [d for d in sorted(Path(full["run_dir"]).glob("fold*")) if d.name != "fold09"]
    ids = np.concatenate([load_predictions(d)["ecg_ids"] for d in kept])
    assert sorted(pred["ecg_ids"].tolist()) == sorted(ids.tolist())
    expected = score(pred["y_true"], pred["y_score"], list(CLASSES))["macro_auroc"]
    assert row["test_macro_auroc"] == pytest.approx(expected)
    assert 9 not in set(load_metrics(row["run_dir"])["fold"])
    again = collect_results(rotate_dir, drop_test_folds=[9]).iloc[0]  # the view is reused, not rebuilt
    assert again["test_macro_auroc"] == row["test_macro_auroc"]


def test_drop_test_fold_names_bad_folds_and_leaves_official_runs_alone(rotate_dir, tmp_path):
    with pytest.raises(DataError, match="folds 1-10"):
        collect_results(rotate_dir, drop_test_folds=[11])
    official = fabricate_results(tmp_path / "off", tasks=("superdiagnostic",), seeds=(0,))
    table = collect_results(official, drop_test_folds=[9])
    assert (table["dropped_test_folds"] == "").all() and (table["n_folds"] == 1).all()


def test_report_drops_a_test_fold_everywhere_and_writes_the_table_it_used(rotate_dir, tmp_path, capsys):
    assert main(["report", str(rotate_dir), "--out", str(tmp_path / "all"), "--n-bootstrap", "20"]) == 0
    assert "no training positive" in (tmp_path / "all" / "report.md").read_text()  # fold 9's untrained class
    assert main(["report", str(rotate_dir), "--drop-test-fold", "9", "--n-bootstrap", "20"]) == 0
    report = rotate_dir / "report"
    table = pd.read_csv(report / "results.csv")
    assert (table["n_folds"] == 9).all() and (table["dropped_test_folds"].astype(str) == "9").all()
    md = (report / "report.md").read_text()
    assert "**Test folds left out:**" in md and "fold(s) 9" in md
    assert "no training positive" not in md and "every class of every run was scored" in md
    official = fabricate_results(tmp_path / "off", tasks=("superdiagnostic",), seeds=(0,))
    assert main(["report", str(official), "--drop-test-fold", "9"]) == 2
    assert "applies to rotate-folds cells" in capsys.readouterr().err


def _load_benchmark_script():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bundled_ptbxl500.py"
    spec = importlib.util.spec_from_file_location("bundled_ptbxl500", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tables_only_regenerates_every_table_with_the_drop(tmp_path, monkeypatch, capsys):
    cells = (("bundled", "baseline_ft"), ("bundled", "post_training"), ("xresnet1d101", "scratch"))
    out = fabricate_rotate_results(tmp_path / "grid", cells=cells, seeds=(0, 1), fold_final=_fold_final)
    script = _load_benchmark_script()
    argv = ["bundled_ptbxl500.py", "--out", str(out), "--tables-only", "--protocol", "rotate-folds"]
    argv += ["--tasks", "superdiagnostic", "--seeds", "2", "--n-resamples", "20", "--drop-test-fold", "9"]
    monkeypatch.setattr(sys, "argv", argv)
    script.main()
    payload = json.loads((out / "comparisons.json").read_text())
    assert payload["drop_test_fold"] == [9]
    assert {r["max_steps"] for r in payload["recipes"]} == {210}
    assert {r["chosen"] for r in payload["recipes"]} == {"lr=0.001 (18)"}  # 9 folds x 2 seeds
    assert {r["n_classes"] for r in payload["recipes"]} == {len(CLASSES)}
    assert payload["comparisons"] and all(np.isfinite(c["boot_diff"]) for c in payload["comparisons"])
    md = (out / "comparisons.md").read_text()
    assert md.startswith("Rotate-folds cells without the runs that test on fold(s) 9")
