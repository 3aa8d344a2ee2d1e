"""Tuned values of the runs, structured: the results table's ``tuned_values`` column.

A table collected from run directories holds dicts (a list of them, one per fold, for a rotate-folds cell).
One read back from ``results.csv`` or ``results.parquet`` may hold them as text or lack the column: only
:func:`chosen_values` deals with that, parsing the ``tuned`` text as a last resort.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.eval.results import chosen_text

__all__ = ["chosen_values", "tuned_keys", "tuned_text"]

_FOLD_COUNT = re.compile(r"^(?P<values>.*) \((?P<n>\d+)/(?P<total>\d+)\)$")


def _number(text: str) -> Any:
    """``"10"`` -> 10, ``"0.001"`` -> 0.001; other text stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_values_text(text: str) -> dict[str, Any]:
    """``"lr=0.001, head_lr_scale=10"`` -> ``{"lr": 0.001, "head_lr_scale": 10}``."""
    pairs = [kv.split("=", 1) for kv in text.split(", ") if "=" in kv]
    return {k.strip(): _number(v.strip()) for k, v in pairs}


def _parse_tuned_text(text: str) -> dict | list[dict] | None:
    """The ``tuned`` column's text back to values; a rotate-folds cell's ``a (7/10); b (3/10)`` becomes one
    dict per fold (grouped by choice: the folds' order is not in the text)."""
    if not text:
        return None
    parts = text.split("; ")
    matches = [_FOLD_COUNT.match(p) for p in parts]
    if all(matches):
        return [_parse_values_text(m["values"]) for m in matches for _ in range(int(m["n"]))]
    return _parse_values_text(text)


def _drop_missing(values: dict) -> dict:
    """A dict without None values (a parquet struct column fills keys another row had with None)."""
    return {str(k): v for k, v in values.items() if v is not None}


def chosen_values(value: Any, text: Any = None) -> dict | list[dict] | None:
    """A run's tuned values from its ``tuned_values`` cell; from a table read back from a file, that cell's JSON
    or Python text, else the ``tuned`` text parsed; None for an untuned run."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                value = None
    if isinstance(value, dict):
        return _drop_missing(value) or None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_drop_missing(v) for v in value] or None
    return _parse_tuned_text(text) if isinstance(text, str) else None


def _column_values(part: pd.DataFrame) -> list[dict | list[dict] | None]:
    """Every row's tuned values (see :func:`chosen_values`)."""
    values = part["tuned_values"] if "tuned_values" in part else [None] * len(part)
    texts = part["tuned"] if "tuned" in part else [None] * len(part)
    return [chosen_values(v, t) for v, t in zip(values, texts)]


def tuned_text(part: pd.DataFrame) -> str:
    """``"lr=0.001, head_lr_scale=10 (3); lr=0.0003, head_lr_scale=1 (2)"``: each choice with the number of
    runs (seeds) that made it, or – for an untuned recipe."""
    chosen = [t for t in map(chosen_text, _column_values(part)) if t]
    if not chosen:
        return "–"
    counts = pd.Series(chosen).value_counts()
    return "; ".join(f"{k} ({n})" for k, n in counts.items())


def tuned_keys(part: pd.DataFrame) -> list[str]:
    """The names of the tuned settings (``["lr", "head_lr_scale"]``) of the first tuned run; [] when untuned."""
    for values in _column_values(part):
        if values:
            first = values if isinstance(values, dict) else next((v for v in values if v), {})
            if first:
                return list(first)
    return []
