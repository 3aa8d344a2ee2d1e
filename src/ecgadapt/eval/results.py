"""Benchmark results: one tidy table from run directories, prediction and metrics loaders, pooled folds.

A *run directory* holds ``config.yaml``, ``metrics.csv``, ``predictions_{val,test}.npz`` and ``final.json``
(see :class:`ecgadapt.runs.RunDir`). A *rotate-folds cell* holds ten such runs (``fold01`` ... ``fold10``),
plus ``cell.yaml`` and the pooled ``final.json`` / ``predictions_{val,test}.npz`` written by
:func:`write_pooled_cell`: every record of the data set is scored exactly once, by the run whose test fold
holds it. :func:`collect_results` gives one row per run or cell, with every config field flattened
(``data.task``, ``recipe.stages.1.drop_path_rate`` ...) and every metric.

This module reads files only (numpy, pandas, yaml; a dataset's own table for patients): it never imports
torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ecgadapt.data.identity import source_patient_ids
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.metrics import MetricInputError, score
from ecgadapt.fileio import atomic_write_text, replacing
from ecgadapt.runs.rundir import SPLITS, ResultsDir, RunDir, load_predictions, read_cell, read_final

__all__ = [
    "KEY_COLUMNS",
    "METRIC_COLUMNS",
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

ROTATE = "rotate-folds"
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


def read_config(run_dir: str | Path) -> dict:
    """The run's config as plain data: ``config.yaml``, or a rotate-folds cell's ``cell.yaml`` config."""
    run_dir = RunDir(run_dir)
    for name in (RunDir.CONFIG, RunDir.CELL):
        path = run_dir.path / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise DataError(f"cannot parse {path}: {err}") from err
            return dict(data.get("config", {})) if name == RunDir.CELL else dict(data)
    raise DataError(
        f"{run_dir.path} holds neither {RunDir.CONFIG} nor {RunDir.CELL}: it is not an ecgadapt run directory"
    )


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


# --- pooled out-of-fold scoring ----------------------------------------------------------------------------


def pool_predictions(run_dirs: Sequence[str | Path], split: str = "test") -> dict[str, np.ndarray]:
    """Concatenate the ``split`` predictions of several runs; each record must appear exactly once."""
    if not run_dirs:
        raise DataError("pool_predictions needs at least one run directory")
    parts = [load_predictions(d, split) for d in run_dirs]
    classes = [str(c) for c in parts[0]["class_names"]]
    for d, p in zip(run_dirs, parts):
        if [str(c) for c in p["class_names"]] != classes:
            raise DataError(
                f"{d}: its classes differ from {run_dirs[0]}'s; pooled runs must score the same task"
            )
    ids = np.concatenate([p["ecg_ids"] for p in parts])
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1][:5].tolist()
        raise DataError(
            f"records {dup} appear in the {split} predictions of more than one run: pooled out-of-fold scoring "
            "needs disjoint test folds (one run per fold)"
        )
    pooled = {
        "ecg_ids": ids,
        "class_names": np.asarray(classes, dtype=str),
        "y_true": np.concatenate([p["y_true"] for p in parts]),
        "y_score": np.concatenate([p["y_score"] for p in parts]),
        "run_index": np.concatenate([np.full(len(p["ecg_ids"]), i) for i, p in enumerate(parts)]),
    }
    if all("patient_ids" in p for p in parts):
        pooled["patient_ids"] = np.concatenate([p["patient_ids"] for p in parts])
    return pooled


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


def _score(
    pred: dict[str, np.ndarray], min_positives: int = 1, exclude: dict[str, str] | None = None
) -> dict:
    """Classification metrics (macro + per class) and mean BCE loss of pooled predictions."""
    return score(pred["y_true"], pred["y_score"], list(pred["class_names"]), min_positives, exclude)


def pooled_out_of_fold(fold_dirs: Sequence[str | Path]) -> dict:
    """``final.json``-like summary of rotate-folds runs, scored on their pooled test (and val) predictions."""
    finals = [read_final(d) for d in fold_dirs]
    first = finals[0]
    out: dict[str, Any] = {
        key: first.get(key)
        for key in ("recipe", "stages", "seed", "fraction", "task", "model", "weights", "class_names")
    }
    out["protocol"] = ROTATE
    # A class untrained in any fold is left out of the pooled macro metrics, with the folds' reason.
    untrained = {c: r for f in finals for c, r in (f.get("untrained_classes") or {}).items()}
    out["untrained_classes"] = untrained
    min_positives = int(((read_config(fold_dirs[0]).get("training") or {}).get("min_test_positives")) or 1)
    for split in SPLITS:
        pred = pool_predictions(fold_dirs, split)
        out[split] = _score(pred, min_positives, untrained)
        out[split]["n_records"] = len(pred["ecg_ids"])
    out["fold_mean"] = {
        f"{split}_{m}": float(
            np.nanmean([float((f.get(split) or {}).get(m, math.nan) or math.nan) for f in finals])
        )
        for split in SPLITS
        for m in ("macro_auroc", "macro_auprc")
    }
    out["folds"] = [
        {
            "run": Path(d).name,
            "test_fold": (read_config(d).get("data") or {}).get("test_fold"),
            "best": f.get("best"),
            "test_macro_auroc": (f.get("test") or {}).get("macro_auroc"),
            "test_macro_auprc": (f.get("test") or {}).get("macro_auprc"),
            "chosen_values": (f.get("tuning") or {}).get("chosen_values"),
        }
        for d, f in zip(fold_dirs, finals)
    ]
    out["budget"] = _pooled_budget([f.get("budget") or {} for f in finals])
    overlaps = [f["pretraining_overlap"] for f in finals if f.get("pretraining_overlap")]
    if overlaps:
        out["pretraining_overlap"] = pooled_overlap(overlaps)
    tunings = [f["tuning"] for f in finals if f.get("tuning")]
    if tunings:
        out["tuning"] = {
            "chosen_values_by_fold": [t.get("chosen_values") or {} for t in tunings],
            "candidates": [c for t in tunings for c in t.get("candidates") or []],
            "search_steps": sum(int(t.get("search_steps") or 0) for t in tunings),
            "ties_by_fold": [t.get("tie") for t in tunings],  # None where one candidate was best
        }
    n = {s: sum(int((f.get("n_records") or {}).get(s, 0)) for f in finals) for s in ("val", "test")}
    train = [int((f.get("n_records") or {}).get("train", 0)) for f in finals]
    n["train"] = int(round(float(np.mean(train))))  # what one model trained on (mean over the folds)
    n["train_all_folds"] = int(sum(train))
    out["n_records"] = n
    timings = [f.get("timings") or {} for f in finals]
    out["timings"] = {k: float(sum(t.get(k) or 0.0 for t in timings)) for k in ("train_s", "final_eval_s")}
    best = [f.get("best") or {} for f in finals]
    out["best"] = {
        "stage": _mode([b.get("stage") for b in best]),
        "stage_name": _mode([b.get("stage_name") for b in best]),
        "epoch": float(np.mean([b["epoch"] for b in best if b.get("epoch") is not None])) if best else None,
        "val": {
            k: float(np.mean([(b.get("val") or {}).get(k, math.nan) for b in best]))
            for k in ("macro_auroc", "macro_auprc")
        },
    }
    out["notes"] = sorted({n for f in finals for n in f.get("notes") or []})
    return out


def _pooled_counts(counts: list[dict | None]) -> dict[str, int | None] | None:
    """Per-split counts of the folds in one: each record is tested (and validated) in one fold, so those add
    up; train: the most any fold's model saw. None when no fold could count."""
    known = [c for c in counts if c is not None and c.get("test") is not None]
    if not known:
        return None
    return {
        "train": max(int(c.get("train") or 0) for c in known),
        **{split: sum(int(c.get(split) or 0) for c in known) for split in ("val", "test")},
    }


def pooled_overlap(overlaps: list[dict]) -> dict[str, Any]:
    """The folds' ``pretraining_overlap`` in one: seen records and records of seen patients, per split (see
    :func:`_pooled_counts`), and everything the folds could not check."""
    records = _pooled_counts(overlaps) or {"train": None, "val": None, "test": None}
    out: dict[str, Any] = dict(records)
    if any("same_patient" in o for o in overlaps):
        out["same_patient"] = _pooled_counts([o.get("same_patient") for o in overlaps])
    for key in ("identity", "n_seen_pretraining"):
        if any(key in o for o in overlaps):
            out[key] = next((o[key] for o in overlaps if o.get(key) is not None), None)
    if any("unknown" in o for o in overlaps):
        out["unknown"] = sorted({text for o in overlaps for text in o.get("unknown") or []})
    return out


def _pooled_budget(budgets: list[dict]) -> dict[str, Any]:
    """The folds' budgets in one: the largest fold's maximum, the mean steps run, and every fold's stages."""
    maxima = [b["max_total_steps"] for b in budgets if b.get("max_total_steps") is not None]
    used = [b["total_steps_run"] for b in budgets if b.get("total_steps_run") is not None]
    return {
        "max_total_steps": max(maxima) if maxima else None,
        "total_steps_run": float(np.mean(used)) if used else None,
        "stages": [s for b in budgets for s in b.get("stages") or []],
    }


def _mode(values: list) -> Any:
    values = [v for v in values if v is not None]
    return max(set(values), key=values.count) if values else None


def fold_fingerprints(fold_dirs: Sequence[str | Path]) -> dict[str, str | None]:
    """``{fold run name: SHA-256 of its final.json}`` (None for a fold that has not finished)."""
    out: dict[str, str | None] = {}
    for d in fold_dirs:
        path = RunDir(d).final
        out[Path(d).name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return out


def pooled_is_current(cell_dir: str | Path, fold_dirs: Sequence[str | Path]) -> bool:
    """Whether the pooled ``final.json`` of a rotate-folds cell was built from the folds' current results."""
    path = RunDir(cell_dir).final
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text()).get("fold_fingerprints")
    except (OSError, json.JSONDecodeError):
        return False
    return recorded == fold_fingerprints(fold_dirs)


def write_pooled_cell(
    cell_dir: str | Path, fold_dirs: Sequence[str | Path], extra: dict | None = None
) -> dict:
    """Write the pooled ``predictions_{val,test}.npz`` and ``final.json`` (with the ``extra`` fields) of a
    rotate-folds cell; return final."""
    cell = RunDir(cell_dir)
    final = {**pooled_out_of_fold(fold_dirs), **(extra or {})}
    final["fold_fingerprints"] = fold_fingerprints(fold_dirs)
    for split in SPLITS:
        pred = pool_predictions(fold_dirs, split)
        cell.write_predictions(
            split,
            pred["ecg_ids"],
            pred["class_names"],
            pred["y_true"],
            pred["y_score"],
            pred.get("patient_ids"),
        )
    cell.write_final(final)
    return final


# --- dropping test folds ------------------------------------------------------------------------------------


def check_drop_test_folds(folds: Iterable[int]) -> tuple[int, ...]:
    """The sorted distinct folds (1-10) whose test predictions a table leaves out; an error names a bad one."""
    out = tuple(sorted({int(k) for k in folds}))
    bad = [k for k in out if not 1 <= k <= 10]
    if bad:
        raise DataError(f"--drop-test-fold must name folds 1-10, got {bad}")
    return out


def drop_folder_name(folds: Sequence[int]) -> str:
    """The view folder of a cell pooled without ``folds``: ``drop-test-fold09``, ``drop-test-folds-09-10``."""
    names = "-".join(f"{k:02d}" for k in folds)
    return f"drop-test-fold{names}" if len(folds) == 1 else f"drop-test-folds-{names}"


def without_test_folds(run_dir: str | Path, drop_test_folds: Sequence[int]) -> Path:
    """A rotate-folds cell pooled without the runs that test on ``drop_test_folds``, for every reader at once.

    The view is a folder inside the cell (``drop-test-fold09/``) holding a ``cell.yaml`` that lists only the
    kept folds (as ``../foldNN``), their pooled ``final.json`` and ``predictions_{val,test}.npz``: the tables,
    the class exclusions (rebuilt from the kept folds), the budget and tuned-choice columns, the bootstrap and
    the training curves all read it as they read the cell. It is built once and rebuilt when a kept fold's
    ``final.json`` changes. A plain run, or no fold to drop, is returned as it is.
    """
    run_dir = Path(run_dir)
    drop = check_drop_test_folds(drop_test_folds)
    cell = read_cell(run_dir)
    if not drop or cell is None or cell.get("protocol") != ROTATE:
        return run_dir
    folds = [f for f in cell.get("folds") or [] if int(f["test_fold"]) not in drop]
    if not folds:
        raise DataError(f"{run_dir}: dropping test folds {list(drop)} leaves none of its folds to score")
    view = run_dir / drop_folder_name(drop)
    kept = [run_dir / f["run"] for f in folds]
    meta = {
        **cell,
        "folds": [{**f, "run": f"../{f['run']}"} for f in folds],
        "dropped_test_folds": list(drop),
    }
    try:
        view.mkdir(exist_ok=True)
        if read_cell(view) != meta:
            RunDir(view).write_cell(meta)
        if not pooled_is_current(view, kept):
            write_pooled_cell(view, kept, {"dropped_test_folds": list(drop)})
    except OSError as err:
        raise DataError(
            f"cannot write {view}, the pooled score of {run_dir.name} without test folds {list(drop)} ({err}); "
            "make the results folder writable"
        ) from err
    return view


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
