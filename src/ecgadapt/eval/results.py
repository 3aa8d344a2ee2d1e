"""Benchmark results: one tidy table from run directories and pooled cells, and the metrics and patient loaders.

A *run directory* holds ``config.yaml``, ``metrics.csv``, ``predictions_{val,test}.npz`` and ``final.json``
(see :class:`ecgadapt.runs.RunDir`); a *rotate-folds cell* pools ten of them (see :mod:`ecgadapt.eval.pooling`).
:func:`collect_results` gives one row per run or cell, with every config field flattened (``data.task``,
``recipe.stages.1.drop_path_rate`` ...) and every metric.

This module reads files only (numpy, pandas, yaml; a dataset's own table for patients): it never imports
torch.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.data.identity import source_patient_ids
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.metrics import MetricInputError
from ecgadapt.eval.pooling import (
    ROTATE,
    check_drop_test_folds,
    pool_predictions,
    pooled_is_current,
    pooled_out_of_fold,
    without_test_folds,
    write_pooled_cell,
)
from ecgadapt.fileio import atomic_write_text, replacing
from ecgadapt.runs.rundir import ResultsDir, RunDir, load_predictions, read_cell, read_config, read_final

__all__ = [
    "KEY_COLUMNS",
    "METRIC_COLUMNS",
    "ROTATE",
    "collect_per_class",
    "collect_results",
    "find_runs",
    "without_test_folds",
    "flatten",
    "load_metrics",
    "load_predictions",
    "pool_predictions",
    "run_patient_ids",
    "pooled_out_of_fold",
    "read_final",
    "write_pooled_cell",
    "write_results",
]

OFFICIAL = "official"

#: Leading columns of the results table (what a run *is*).
KEY_COLUMNS = ("cell_id", "task", "model", "recipe", "fraction", "seed", "protocol")
#: Metric columns of the results table.
METRIC_COLUMNS = (
    "test_macro_auroc",
    "test_macro_auprc",
    "test_ece",
    "test_loss",
    "test_n_classes_scored",
    "val_macro_auroc",
    "val_macro_auprc",
    "val_ece",
    "val_loss",
    "best_stage",
    "best_stage_name",
    "best_epoch",
    "best_val_macro_auroc",
    "best_val_macro_auprc",
    "epochs_run",
    "train_s",
    "final_eval_s",
    "n_train",
    "n_val",
    "n_test",
    "n_folds",
    "max_total_steps",
    "steps_run",
    "stopped_early",
    "tuned",
)


# --- small readers -----------------------------------------------------------------------------------------


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Per-epoch ``metrics.csv`` as numbers; a rotate-folds cell gives its folds' rows with a ``fold`` column.

    Adds ``step``: the epoch's position counted over the whole recipe (stage after stage).
    """
    run_dir = Path(run_dir)
    cell = read_cell(run_dir)
    if cell is not None and cell.get("protocol") == ROTATE:
        frames = []
        for fold in cell.get("folds", []):
            part = load_metrics(run_dir / fold["run"])
            part.insert(0, "fold", int(fold["test_fold"]))
            frames.append(part)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    path = RunDir(run_dir).metrics
    if not path.is_file():
        raise DataError(f"{path} does not exist: the run in {run_dir} has not trained an epoch yet")
    table = pd.read_csv(path)
    for col in table.columns:
        if col != "stage_name":
            table[col] = pd.to_numeric(table[col], errors="coerce")
    table["step"] = np.arange(len(table))
    return table


BOOTSTRAP_GROUPS = ("records", "patient")
"""What a record bootstrap resamples: records, or patients (all records of a drawn patient)."""


def check_bootstrap_groups(groups: str) -> str:
    """``groups`` when it is one of :data:`BOOTSTRAP_GROUPS`; a ConfigError otherwise."""
    if groups not in BOOTSTRAP_GROUPS:
        raise ConfigError(f"--bootstrap-groups must be one of {', '.join(BOOTSTRAP_GROUPS)}, got {groups!r}")
    return groups


def run_patient_ids(run_dir: str | Path, split: str = "test", pred: dict | None = None) -> np.ndarray:
    """The patient of each record of a run's (or pooled cell's) ``split`` predictions, in their order, -1 where
    unknown: the ``patient_ids`` saved beside them, else (runs saved before they were) looked up in the
    dataset's own table (PTB-XL's database, a folder's labels CSV) through the run's config."""
    pred = load_predictions(run_dir, split) if pred is None else pred
    if "patient_ids" in pred:
        return np.asarray(pred["patient_ids"], dtype=np.int64)
    data = read_config(run_dir).get("data") or {}
    root = data.get("root")
    if root is None or not Path(root).exists():
        raise DataError(
            f"{run_dir}: its predictions carry no patient_ids and its dataset ({root}) is not there to look them "
            "up; restore the data folder, or bootstrap records (--bootstrap-groups records)"
        )
    return source_patient_ids(data.get("source") or "ptbxl", root, data.get("labels"), pred["ecg_ids"])


# --- the tidy table ----------------------------------------------------------------------------------------


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists to dotted keys (``recipe.stages.0.lr``); ``model.kwargs`` and lists of scalars
    become JSON strings so that every value is a scalar."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if name == "model.kwargs" or (
            isinstance(value, list) and not any(isinstance(v, dict) for v in value)
        ):
            out[name] = json.dumps(value, sort_keys=True)
        elif isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                out.update(flatten(item, f"{name}.{i}.") if isinstance(item, dict) else {f"{name}.{i}": item})
        else:
            out[name] = value
    return out


def is_finished(run_dir: str | Path) -> bool:
    """A run with a ``final.json`` holding test metrics; a rotate-folds cell only when all its folds have
    finished and its pooled score was built from their current results."""
    run_dir = Path(run_dir)
    final = RunDir(run_dir).final
    if not final.is_file():
        return False
    cell = read_cell(run_dir)
    if cell is not None and cell.get("protocol") == ROTATE:
        folds = [run_dir / f["run"] for f in cell.get("folds") or []]
        return bool(folds) and pooled_is_current(run_dir, folds)
    try:
        return json.loads(final.read_text()).get("test") is not None
    except (OSError, json.JSONDecodeError):
        return False


def find_runs(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """Run or cell directories: those listed, or every finished ``<results>/runs/*`` (or ``<dir>/*``)."""
    if isinstance(source, (str, Path)):
        root = Path(source)
        if RunDir(root).final.is_file():
            return [root]
        if not root.is_dir():
            raise DataError(
                f"results folder {root} does not exist; pass the --out folder of `ecgadapt benchmark`"
            )
        runs = ResultsDir(root).runs
        base = runs if runs.is_dir() else root
        return sorted(p for p in base.iterdir() if is_finished(p))
    dirs = [Path(p) for p in source]
    for d in dirs:
        if not RunDir(d).final.is_file():
            raise DataError(f"{d} holds no {RunDir.FINAL}: not a finished run")
    return dirs


def _ece(run_dir: Path, split: str, n_bins: int) -> float:
    try:
        pred = load_predictions(run_dir, split)
        return expected_calibration_error(pred["y_true"], pred["y_score"], n_bins=n_bins)
    except (DataError, MetricInputError, ValueError):
        return math.nan


def _identity(run_dir: Path, final: dict, cell: dict | None) -> dict[str, Any]:
    """cell_id, task, model and recipe labels (from the grid's ``cell.yaml`` when present), fraction, seed."""
    cell = cell or {}
    return {
        "cell_id": cell.get("cell_id") or Path(run_dir).name,
        "task": final.get("task"),
        "model": cell.get("model_label") or final.get("model"),
        "recipe": cell.get("recipe_label") or final.get("recipe"),
        "fraction": float(final.get("fraction", 1.0)),
        "seed": int(final.get("seed", 0)),
    }


def _budget_columns(final: dict) -> dict[str, Any]:
    """A run's maximum and used optimiser steps, and whether any stage stopped early."""
    budget = final.get("budget") or {}
    stages = budget.get("stages") or []
    return {
        "max_total_steps": budget.get("max_total_steps"),
        "steps_run": budget.get("total_steps_run"),
        "stopped_early": any(bool(s.get("stopped_early")) for s in stages) if stages else None,
    }


def values_text(values: dict) -> str:
    """``{"lr": 0.001, "head_lr_scale": 10}`` -> ``"lr=0.001, head_lr_scale=10"``."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def chosen_text(values: dict | list[dict] | None) -> str:
    """Tuned values as text: ``lr=0.001, head_lr_scale=10`` for one run; for a rotate-folds cell (one dict per
    fold) each choice with its number of folds: ``lr=0.001 (7/10); lr=0.0001 (3/10)``; "" when untuned."""
    if not values:
        return ""
    if isinstance(values, dict):
        return values_text(values)
    by_fold = [values_text(v) for v in values]
    counts = pd.Series(by_fold, dtype=object).value_counts(sort=True)
    return "; ".join(f"{t} ({n}/{len(by_fold)})" for t, n in counts.items())


def _tuning_columns(final: dict) -> dict[str, Any]:
    """A tuned run's chosen values, structured (``tuned_values``: a dict; for a rotate-folds cell, a list with
    one dict per fold) and as text (``tuned``, see :func:`chosen_text`), its candidate count and search steps."""
    tuning = final.get("tuning") or {}
    if not tuning:
        return {"tuned": "", "tuned_values": None, "n_candidates": None, "search_steps": None}
    by_fold = [dict(v) for v in tuning.get("chosen_values_by_fold") or []]
    values = by_fold or dict(tuning.get("chosen_values") or {})
    return {
        "tuned": chosen_text(values),
        "tuned_values": values or None,
        "n_candidates": len(tuning.get("candidates") or []),
        "search_steps": tuning.get("search_steps"),
    }


def _row(run_dir: Path, ece_bins: int) -> dict[str, Any]:
    final = read_final(run_dir)
    config = read_config(run_dir)
    cell = read_cell(run_dir)
    protocol = final.get("protocol") or (cell or {}).get("protocol") or OFFICIAL
    cfg_flat = flatten(config)
    if protocol == ROTATE:  # the pooled cell has no single test/val fold
        cfg_flat["data.test_fold"] = None
        cfg_flat["data.val_fold"] = None
    test, val = final.get("test") or {}, final.get("val") or {}
    best = final.get("best") or {}
    n = final.get("n_records") or {}
    timings = final.get("timings") or {}
    overlap = final.get("pretraining_overlap") or {}
    try:
        epochs_run = len(load_metrics(run_dir))
    except DataError:
        epochs_run = None
    row: dict[str, Any] = {
        **_identity(run_dir, final, cell),
        "protocol": protocol,
        "test_macro_auroc": test.get("macro_auroc"),
        "test_macro_auprc": test.get("macro_auprc"),
        "test_ece": _ece(run_dir, "test", ece_bins),
        "test_loss": test.get("loss"),
        "test_n_classes_scored": test.get("n_classes_scored"),
        "val_macro_auroc": val.get("macro_auroc"),
        "val_macro_auprc": val.get("macro_auprc"),
        "val_ece": _ece(run_dir, "val", ece_bins),
        "val_loss": val.get("loss"),
        "best_stage": best.get("stage"),
        "best_stage_name": best.get("stage_name"),
        "best_epoch": best.get("epoch"),
        "best_val_macro_auroc": (best.get("val") or {}).get("macro_auroc"),
        "best_val_macro_auprc": (best.get("val") or {}).get("macro_auprc"),
        "epochs_run": epochs_run,
        "train_s": timings.get("train_s"),
        "final_eval_s": timings.get("final_eval_s"),
        "n_train": n.get("train"),
        "n_val": n.get("val"),
        "n_test": n.get("test"),
        "n_folds": len(final.get("folds") or []) or 1,
        "dropped_test_folds": ",".join(str(k) for k in final.get("dropped_test_folds") or []),
        **_budget_columns(final),
        **_tuning_columns(final),
        "test_excluded_classes": "; ".join(test.get("excluded_classes") or []),
        "fold_mean_test_macro_auroc": (final.get("fold_mean") or {}).get("test_macro_auroc"),
        "fold_mean_test_macro_auprc": (final.get("fold_mean") or {}).get("test_macro_auprc"),
        "pretraining_overlap_val": overlap.get("val"),
        "pretraining_overlap_test": overlap.get("test"),
        "pretraining_same_patient_val": (overlap.get("same_patient") or {}).get("val"),
        "pretraining_same_patient_test": (overlap.get("same_patient") or {}).get("test"),
        "pretraining_overlap_unknown": "; ".join(overlap.get("unknown") or []),
        "config_sha256": final.get("config_sha256"),
        "reused_training_from": (final.get("reused_training") or {}).get("from"),  # bench.reuse
        "run_dir": str(run_dir),
    }
    row.update({k: v for k, v in cfg_flat.items() if k not in row})
    return row


def collect_results(
    source: str | Path | Iterable[str | Path], ece_bins: int = 15, drop_test_folds: Sequence[int] = ()
) -> pd.DataFrame:
    """One row per finished run (or pooled rotate-folds cell): key columns, metrics, then every config field.

    ``source``: a results folder (its ``runs/*`` are read), one run directory, or a list of run directories.
    Unfinished runs (no ``final.json``) in a results folder are skipped. ``drop_test_folds``: rotate-folds cells
    are scored without the runs that test on these folds (:func:`without_test_folds`; ``run_dir`` then names
    that view, and ``dropped_test_folds`` says which folds it leaves out); other runs are read as they are.
    """
    drop = check_drop_test_folds(drop_test_folds)
    dirs = [without_test_folds(d, drop) for d in find_runs(source)] if drop else find_runs(source)
    rows = [_row(d, ece_bins) for d in dirs]
    if not rows:
        return pd.DataFrame(columns=[*KEY_COLUMNS, *METRIC_COLUMNS, "run_dir"])
    table = pd.DataFrame(rows)
    first = [c for c in (*KEY_COLUMNS, *METRIC_COLUMNS, "run_dir") if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    for col in (
        "test_macro_auroc",
        "test_macro_auprc",
        "val_macro_auroc",
        "val_macro_auprc",
        "test_ece",
        "val_ece",
    ):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table.sort_values(["task", "model", "recipe", "fraction", "seed"], kind="stable").reset_index(
        drop=True
    )


def collect_per_class(source: str | Path | Iterable[str | Path] | pd.DataFrame) -> pd.DataFrame:
    """Long per-class test table: one row per run and class (auroc, auprc, prevalence, n_pos, n_neg)."""
    dirs = list(source["run_dir"]) if isinstance(source, pd.DataFrame) else find_runs(source)
    rows = []
    for d in dirs:
        final = read_final(d)
        keys = {**_identity(Path(d), final, read_cell(d)), "run_dir": str(d)}
        keys.pop("cell_id")
        for entry in (final.get("test") or {}).get("per_class") or []:
            rows.append({**keys, **entry})
    cols = [
        "task",
        "model",
        "recipe",
        "fraction",
        "seed",
        "run_dir",
        "class",
        "auroc",
        "auprc",
        "prevalence",
        "n_pos",
        "n_neg",
    ]
    table = pd.DataFrame(rows, columns=cols)
    table[["auroc", "auprc"]] = table[["auroc", "auprc"]].astype(float)
    return table


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def write_results(table: pd.DataFrame, results_dir: str | Path) -> list[Path]:
    """Write ``results.csv`` and (with pyarrow) ``results.parquet``; return the paths written."""
    results = ResultsDir(results_dir)
    results.path.mkdir(parents=True, exist_ok=True)
    written = []
    csv_path = results.results_csv
    atomic_write_text(csv_path, table.to_csv(index=False))
    written.append(csv_path)
    if not _has_pyarrow():
        warnings.warn(
            "pyarrow is not installed: results.parquet was not written (pip install 'ecgadapt[parquet]')",
            stacklevel=2,
        )
        return written
    pq_path = results.results_parquet
    frame = table.copy()
    for col in frame.columns:  # mixed-type object columns (e.g. None and numbers) become strings
        if frame[col].dtype == object and frame[col].map(type).nunique() > 1:
            frame[col] = frame[col].map(
                lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            )
    with replacing(pq_path, suffix=".tmp.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    written.append(pq_path)
    return written
