"""Rotate-folds cells: pooled out-of-fold scoring, and the same cell pooled without some test folds.

A *rotate-folds cell* holds ten runs (``fold01`` ... ``fold10``), plus ``cell.yaml`` and the pooled
``final.json`` / ``predictions_{val,test}.npz`` written by :func:`write_pooled_cell`: every record of the data set
is scored exactly once, by the run whose test fold holds it. :func:`without_test_folds` pools a cell again
without the runs that test on some folds, in a view folder every reader reads as it reads the cell.

Reads and writes files only: it never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgadapt.errors import DataError
from ecgadapt.eval.metrics import score
from ecgadapt.runs.rundir import SPLITS, RunDir, load_predictions, read_cell, read_config, read_final

ROTATE = "rotate-folds"
"""The protocol of a cell that rotates the test fold over all ten folds."""


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
