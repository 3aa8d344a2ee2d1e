"""The six PTB-XL benchmark tasks (Strodthoff et al. 2020): class lists and multi-hot labels.

A statement listed in a record's ``scp_codes`` counts whatever its likelihood (0.0 included). Class lists
come from ``scp_statements.csv`` in sorted order, never from the records a subset happens to hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ecgadapt.data.ptbxl import STATEMENTS_CSV
from ecgadapt.errors import ConfigError, DataError

TASKS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")


def check_task(task: str) -> str:
    """Return ``task`` if it names a benchmark task, else raise ConfigError listing the valid ones."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return task


def statement_map(statements: pd.DataFrame, task: str) -> dict[str, str]:
    """Map each SCP code that counts for ``task`` to the class it marks."""
    check_task(task)
    if task == "all":
        return {code: code for code in statements.index}
    if task in ("form", "rhythm"):
        return {code: code for code in statements.index[statements[task] == 1]}
    diag = statements[statements["diagnostic"] == 1]
    if task == "diagnostic":
        return {code: code for code in diag.index}
    column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    values = diag[column]
    if values.isna().any():
        raise DataError(
            f"{STATEMENTS_CSV}: diagnostic statement(s) {sorted(values.index[values.isna()])} have no {column}; "
            "use PTB-XL's original scp_statements.csv"
        )
    return {code: str(v) for code, v in values.items()}


def task_classes(statements: pd.DataFrame, task: str) -> list[str]:
    """The task's class names, sorted (71, 44, 23, 5, 19 and 12 on PTB-XL)."""
    return sorted(set(statement_map(statements, task).values()))


def task_labels(
    scp_codes: Iterable[Mapping[str, float]],
    statements: pd.DataFrame,
    task: str,
    ids: Sequence[object] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels (N, C) uint8 for records given by their ``scp_codes`` dicts, and the class names.

    Rows of records with no statement in the task are all zero (callers drop them). ``ids`` (e.g. ecg_ids)
    only name records in error messages.
    """
    mapping = statement_map(statements, task)
    classes = task_classes(statements, task)
    col = {c: i for i, c in enumerate(classes)}
    known = set(statements.index)
    codes_list = list(scp_codes)
    y = np.zeros((len(codes_list), len(classes)), dtype=np.uint8)
    for i, codes in enumerate(codes_list):
        for code in codes:
            if code not in known:
                who = f"ecg_id {ids[i]}" if ids is not None else f"record #{i}"
                raise DataError(
                    f"{who} lists SCP code {code!r}, which {STATEMENTS_CSV} does not define; "
                    f"use the {STATEMENTS_CSV} that belongs to the database"
                )
            target = mapping.get(code)
            if target is not None:
                y[i, col[target]] = 1
    return y, classes


def database_labels(
    database: pd.DataFrame, statements: pd.DataFrame, task: str
) -> tuple[np.ndarray, list[str]]:
    """:func:`task_labels` for every row of a database read by :func:`ecgadapt.data.ptbxl.read_database`."""
    return task_labels(database["scp_codes"], statements, task, ids=database["ecg_id"].tolist())
