"""collect_results, loaders and pooled out-of-fold scoring on fabricated run directories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from run_fixtures import CLASSES, config, fabricate_results, labels, write_run

from ecgadapt.errors import DataError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.metrics import classification_metrics
from ecgadapt.eval.pooling import pool_predictions, write_pooled_cell
from ecgadapt.eval.results import (
    KEY_COLUMNS,
    collect_per_class,
    collect_results,
    load_metrics,
    load_predictions,
    write_results,
)


@pytest.fixture
def results_dir(tmp_path):
    return fabricate_results(tmp_path / "res", seeds=(0, 1))


def test_collect_results_one_row_per_run_with_flat_config_and_metrics(results_dir):
    table = collect_results(results_dir)
    assert len(table) == 2 * 2 * 2  # tasks x recipes x seeds
    assert list(table.columns[: len(KEY_COLUMNS)]) == list(KEY_COLUMNS)
    row = table[
        (table["task"] == "rhythm") & (table["recipe"] == "post_training") & (table["seed"] == 1)
    ].iloc[0]
    final = json.loads((results_dir / "runs" / row["cell_id"] / "final.json").read_text())
    assert row["test_macro_auroc"] == pytest.approx(final["test"]["macro_auroc"])
    assert row["val_macro_auprc"] == pytest.approx(final["val"]["macro_auprc"])
    pred = load_predictions(row["run_dir"], "test")
    assert row["test_ece"] == pytest.approx(expected_calibration_error(pred["y_true"], pred["y_score"]))
    # every config field, flattened by dotted path; kwargs kept as JSON
    assert row["data.task"] == "rhythm" and row["data.test_fold"] == 10
    assert row["recipe.stages.1.drop_path_rate"] == pytest.approx(0.2)
    assert json.loads(row["model.kwargs"]) == {"width": 16}
    assert row["training.batch_size"] == 8
    assert row["epochs_run"] == 5 and row["best_stage_name"] == "finetune" and row["n_test"] == 80
    assert row["protocol"] == "official" and row["n_folds"] == 1


def test_collect_results_skips_unfinished_runs_and_accepts_a_list(results_dir, tmp_path):
    y = labels(20)
    write_run(results_dir / "runs" / "unfinished", config(), y_test=y, ids_test=np.arange(20), finished=False)
    assert len(collect_results(results_dir)) == 8
    some = sorted((results_dir / "runs").glob("rhythm*"))[:2]
    assert set(collect_results(some)["run_dir"]) == {str(p) for p in some}
    with pytest.raises(DataError, match="final.json"):
        collect_results([results_dir / "runs" / "unfinished"])
    with pytest.raises(DataError, match="does not exist"):
        collect_results(tmp_path / "nowhere")


def test_collect_per_class_long_table(results_dir):
    long = collect_per_class(results_dir)
    assert len(long) == 8 * len(CLASSES)
    assert set(long.columns) >= {"task", "recipe", "seed", "class", "auroc", "auprc", "prevalence", "n_pos"}
    assert long["prevalence"].between(0, 1).all()


def test_load_metrics_adds_step(results_dir):
    run = next((results_dir / "runs").glob("*post_training*"))
    m = load_metrics(run)
    assert list(m["step"]) == list(range(5)) and list(m["stage"]) == [0, 0, 1, 1, 1]
    assert m["val_macro_auroc"].dtype.kind == "f"


def _fold_runs(tmp_path, n_per_fold=12, dup=False):
    """Ten fold runs: fold k tests records of fold k, validates on fold k % 10 + 1."""
    y_all = labels(10 * n_per_fold, seed=5)
    ids_all = np.arange(10 * n_per_fold) + 1
    dirs = []
    for k in range(1, 11):
        v = k % 10 + 1
        sl_t = slice((k - 1) * n_per_fold, k * n_per_fold)
        sl_v = slice((v - 1) * n_per_fold, v * n_per_fold)
        ids_t = ids_all[sl_t].copy()
        if dup and k == 3:
            ids_t[0] = ids_all[0]  # a record of fold 1 again
        cfg = config(test_fold=k, val_fold=v)
        dirs.append(
            write_run(
                tmp_path / "cell" / f"fold{k:02d}",
                cfg,
                y_test=y_all[sl_t],
                ids_test=ids_t,
                y_val=y_all[sl_v],
                ids_val=ids_all[sl_v],
            )
        )
    return dirs, y_all, ids_all


def test_pool_predictions_scores_each_record_exactly_once(tmp_path):
    dirs, y_all, ids_all = _fold_runs(tmp_path)
    pooled = pool_predictions(dirs, "test")
    assert len(pooled["ecg_ids"]) == len(ids_all)
    assert sorted(pooled["ecg_ids"].tolist()) == ids_all.tolist()  # every record once
    np.testing.assert_array_equal(pooled["y_true"], y_all)
    val = pool_predictions(dirs, "val")  # k % 10 + 1 also covers each fold once as validation
    assert sorted(val["ecg_ids"].tolist()) == ids_all.tolist()


def test_pool_predictions_rejects_a_record_scored_twice(tmp_path):
    dirs, _, _ = _fold_runs(tmp_path, dup=True)
    with pytest.raises(DataError, match="more than one run"):
        pool_predictions(dirs, "test")


def test_write_pooled_cell_is_scored_on_the_concatenation(tmp_path):
    import yaml

    dirs, y_all, ids_all = _fold_runs(tmp_path)
    cell = tmp_path / "cell"
    folds = [{"run": d.name, "test_fold": k, "val_fold": k % 10 + 1} for k, d in enumerate(dirs, 1)]
    (cell / "cell.yaml").write_text(
        yaml.safe_dump({"cell_id": "c", "protocol": "rotate-folds", "folds": folds, "config": config()})
    )
    final = write_pooled_cell(cell, dirs)
    pooled = pool_predictions(dirs, "test")
    expected = classification_metrics(pooled["y_true"], pooled["y_score"], CLASSES)
    assert final["test"]["macro_auroc"] == pytest.approx(expected["macro_auroc"])
    assert final["test"]["n_records"] == len(ids_all) == final["n_records"]["test"]
    assert (
        final["n_records"]["train"] == 300 and final["n_records"]["train_all_folds"] == 3000
    )  # per model, all
    table = collect_results([cell])
    row = table.iloc[0]
    assert row["protocol"] == "rotate-folds" and row["n_folds"] == 10 and row["n_test"] == len(ids_all)
    assert pd.isna(row["data.test_fold"])  # no single test fold
    assert row["test_macro_auroc"] == pytest.approx(expected["macro_auroc"])
    m = load_metrics(cell)
    assert sorted(set(m["fold"])) == list(range(1, 11))


def test_pooled_cell_states_its_folds_budgets_tuned_choices_and_pretraining_overlap(tmp_path):
    import yaml

    dirs, _, _ = _fold_runs(tmp_path)
    for k, d in enumerate(
        dirs, 1
    ):  # fold k: budget 200 + k steps, ran 100 + k; lr 1e-3 chosen in 7 of 10 folds
        final = json.loads((d / "final.json").read_text())
        lr = 1e-3 if k <= 7 else 1e-4
        final["budget"] = {
            "max_total_steps": 200 + k,
            "total_steps_run": 100 + k,
            "stages": [{"name": "finetune", "stopped_early": k == 4}],
        }
        final["tuning"] = {
            "chosen_values": {"lr": lr},
            "search_steps": 10,
            "candidates": [{"id": "lr=0.001"}, {"id": "lr=0.0001"}],
        }
        final["pretraining_overlap"] = {"train": 5 + k, "val": int(k == 2), "test": int(k == 3)}
        (d / "final.json").write_text(json.dumps(final))
    cell = tmp_path / "cell"
    folds = [{"run": d.name, "test_fold": k, "val_fold": k % 10 + 1} for k, d in enumerate(dirs, 1)]
    (cell / "cell.yaml").write_text(
        yaml.safe_dump({"cell_id": "c", "protocol": "rotate-folds", "folds": folds, "config": config()})
    )
    final = write_pooled_cell(cell, dirs)
    assert [f["chosen_values"] for f in final["folds"]] == [{"lr": 1e-3}] * 7 + [{"lr": 1e-4}] * 3
    assert [f["test_fold"] for f in final["folds"]] == list(range(1, 11))  # from each fold's config
    row = collect_results([cell]).iloc[0]
    assert row["tuned"] == "lr=0.001 (7/10); lr=0.0001 (3/10)"
    assert row["n_candidates"] == 20 and row["search_steps"] == 100
    assert row["max_total_steps"] == 210 and row["steps_run"] == pytest.approx(
        105.5
    )  # largest budget, mean used
    assert bool(row["stopped_early"]) is True
    assert final["pretraining_overlap"] == {
        "train": 15,
        "val": 1,
        "test": 1,
    }  # the report's overlap warning reads it
    assert row["pretraining_overlap_test"] == 1 and row["pretraining_overlap_val"] == 1


def test_write_results_csv_and_parquet(results_dir):
    pytest.importorskip(
        "pyarrow", reason="parquet needs the optional pyarrow (pip install 'ecgadapt[parquet]')"
    )
    table = collect_results(results_dir)
    paths = write_results(table, results_dir)
    assert [p.name for p in paths] == ["results.csv", "results.parquet"]
    back = pd.read_parquet(results_dir / "results.parquet")
    assert len(back) == len(table) and "recipe.stages.0.lr" in back.columns
    assert len(pd.read_csv(results_dir / "results.csv")) == len(table)


def test_write_results_without_pyarrow_warns_and_writes_csv(results_dir, monkeypatch):
    import ecgadapt.eval.results as results

    table = collect_results(results_dir)
    monkeypatch.setattr(results, "_has_pyarrow", lambda: False)
    with pytest.warns(UserWarning, match="pyarrow"):
        paths = write_results(table, results_dir / "out")
    assert [p.name for p in paths] == ["results.csv"]
    assert not (results_dir / "out" / "results.parquet").exists()
