"""Torch-free atomic writers shared by run directories (``train.rundir``) and results (``eval.results``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON (NaN written as null)."""
    atomic_write_text(Path(path), json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")


def to_jsonable(obj: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def save_predictions(
    path: Path, ecg_ids: Sequence, class_names: Sequence[str], y_true: np.ndarray, y_score: np.ndarray
) -> None:
    """Write ``predictions_*.npz``: ecg_ids, class_names, y_true (0/1) and y_score (probabilities)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        ecg_ids=np.asarray(ecg_ids),
        class_names=np.asarray(list(class_names), dtype=str),
        y_true=np.asarray(y_true, dtype=np.int8),
        y_score=np.asarray(y_score, dtype=np.float32),
    )
    os.replace(tmp, path)
