"""The six benchmark tasks: class lists, hand-checked labels and per-split counts on the real subset."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import numpy as np
import pytest
from wfdb_fixtures import make_root

from ecgadapt.data.ptbxl import read_database, read_statements
from ecgadapt.data.splits import split_mask
from ecgadapt.data.tasks import TASKS, database_labels, task_classes, task_labels
from ecgadapt.errors import ConfigError, DataError

# Hand-verified from ptbxl_database.csv / scp_statements.csv of the first 500 PTB-XL records.
HAND_LABELS = {
    1: {  # {'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}: likelihood 0.0 still counts
        "all": {"LVOLT", "NORM", "SR"},
        "diagnostic": {"NORM"},
        "subdiagnostic": {"NORM"},
        "superdiagnostic": {"NORM"},
        "form": {"LVOLT"},
        "rhythm": {"SR"},
    },
    8: {  # {'IMI': 35.0, 'ABQRS': 0.0, 'SR': 0.0}
        "all": {"ABQRS", "IMI", "SR"},
        "diagnostic": {"IMI"},
        "subdiagnostic": {"IMI"},
        "superdiagnostic": {"MI"},
        "form": {"ABQRS"},
        "rhythm": {"SR"},
    },
    26: {  # {'NST_': 100.0, 'DIG': 100.0, 'SR': 0.0}: DIG's subclass is STTC, NST_'s is NST_
        "all": {"DIG", "NST_", "SR"},
        "diagnostic": {"DIG", "NST_"},
        "subdiagnostic": {"NST_", "STTC"},
        "superdiagnostic": {"STTC"},
        "form": {"DIG", "NST_"},
        "rhythm": {"SR"},
    },
    77: {  # {'AMI': 50.0, 'IRBBB': 100.0, 'SR': 0.0}: no form statement
        "all": {"AMI", "IRBBB", "SR"},
        "diagnostic": {"AMI", "IRBBB"},
        "subdiagnostic": {"AMI", "IRBBB"},
        "superdiagnostic": {"CD", "MI"},
        "form": set(),
        "rhythm": {"SR"},
    },
    500: {  # {'IMI': 50.0, 'LVH': 100.0, 'ISC_': 100.0, 'IVCD': 100.0, 'QWAVE': 0.0, 'STD_': 0.0, 'AFIB': 0.0}
        "all": {"AFIB", "IMI", "ISC_", "IVCD", "LVH", "QWAVE", "STD_"},
        "diagnostic": {"IMI", "ISC_", "IVCD", "LVH"},
        "subdiagnostic": {"IMI", "ISC_", "IVCD", "LVH"},
        "superdiagnostic": {"CD", "HYP", "MI", "STTC"},
        "form": {"QWAVE", "STD_"},
        "rhythm": {"AFIB"},
    },
}

# Labelled records per split (train folds 1-8, val 9, test 10), checked with an independent csv/ast count.
HAND_RECORDS = {
    "all": (353, 81, 66),
    "diagnostic": (352, 72, 64),
    "subdiagnostic": (352, 72, 64),
    "superdiagnostic": (352, 72, 64),
    "form": (87, 23, 16),
    "rhythm": (331, 75, 65),
}
# A few class positives per split, checked by grepping the CSV (e.g. 36 of fold 10's 66 rows list 'NORM').
HAND_POSITIVES = {
    ("superdiagnostic", "NORM"): (225, 36, 36),
    ("superdiagnostic", "HYP"): (25, 8, 7),
    ("rhythm", "AFLT"): (0, 5, 3),
    ("rhythm", "SR"): (291, 63, 53),
    ("all", "NORM"): (225, 36, 36),
}
NUM_CLASSES = {
    "all": 71,
    "diagnostic": 44,
    "subdiagnostic": 23,
    "superdiagnostic": 5,
    "form": 19,
    "rhythm": 12,
}


def independent_counts(root: Path, task: str) -> dict:
    """Records and positives per split computed with csv + ast only (no ecgadapt code)."""
    with open(root / "scp_statements.csv", newline="") as fh:
        st = {row[""]: row for row in csv.DictReader(fh)}

    def target(code: str) -> str | None:
        s = st[code]
        if task == "all":
            return code
        if task in ("form", "rhythm"):
            return code if s[task] == "1.0" else None
        if s["diagnostic"] != "1.0":
            return None
        return {
            "diagnostic": code,
            "subdiagnostic": s["diagnostic_subclass"],
            "superdiagnostic": s["diagnostic_class"],
        }[task]

    out = {split: {"records": 0, "positives": {}} for split in ("train", "val", "test")}
    with open(root / "ptbxl_database.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            fold = int(row["strat_fold"])
            split = "test" if fold == 10 else "val" if fold == 9 else "train"
            classes = {target(c) for c in ast.literal_eval(row["scp_codes"])} - {None}
            out[split]["records"] += bool(classes)
            for c in classes:
                out[split]["positives"][c] = out[split]["positives"].get(c, 0) + 1
    return out


@pytest.fixture(scope="module")
def real(ptbxl500: Path):
    return read_database(ptbxl500), read_statements(ptbxl500)


@pytest.mark.parametrize("task", TASKS)
def test_class_lists_are_full_and_sorted(real, task: str) -> None:
    _, st = real
    classes = task_classes(st, task)
    assert len(classes) == NUM_CLASSES[task]
    assert classes == sorted(classes)


def test_superdiagnostic_and_rhythm_class_names(real) -> None:
    _, st = real
    assert task_classes(st, "superdiagnostic") == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert task_classes(st, "rhythm") == [
        "AFIB",
        "AFLT",
        "BIGU",
        "PACE",
        "PSVT",
        "SARRH",
        "SBRAD",
        "SR",
        "STACH",
        "SVARR",
        "SVTAC",
        "TRIGU",
    ]


@pytest.mark.parametrize("task", TASKS)
def test_hand_checked_records(real, task: str) -> None:
    db, st = real
    y, classes = database_labels(db, st, task)
    for ecg_id, expected in HAND_LABELS.items():
        row = db.index.get_loc(ecg_id)
        assert {classes[j] for j in np.flatnonzero(y[row])} == expected[task], (ecg_id, task)


@pytest.mark.parametrize("task", TASKS)
def test_per_split_counts_match_hand_and_independent_counts(ptbxl500: Path, real, task: str) -> None:
    db, st = real
    y, classes = database_labels(db, st, task)
    folds = db["strat_fold"].to_numpy()
    indep = independent_counts(ptbxl500, task)
    for k, split in enumerate(("train", "val", "test")):
        sel = split_mask(folds, split) & y.any(axis=1)
        assert sel.sum() == HAND_RECORDS[task][k] == indep[split]["records"]
        pos = dict(zip(classes, y[sel].sum(axis=0).tolist()))
        assert {c: n for c, n in pos.items() if n} == indep[split]["positives"]
        for (t, c), counts in HAND_POSITIVES.items():
            if t == task:
                assert pos[c] == counts[k], (task, c, split)


def test_class_list_does_not_depend_on_the_records(real) -> None:
    db, st = real
    y, classes = task_labels(db["scp_codes"].iloc[:3], st, "all")
    assert len(classes) == 71 and y.shape == (3, 71)
    assert y.sum() == 7  # records 1-3 hold 3 + 2 + 2 statements


def test_zero_likelihood_counts(tmp_path: Path) -> None:
    root = make_root(tmp_path, n_records=1, codes=[{"LVOLT": 0.0}])
    y, classes = database_labels(read_database(root), read_statements(root), "form")
    assert classes == ["LVOLT", "NDT"] and y.tolist() == [[1, 0]]


def test_record_without_task_label_gets_a_zero_row(tmp_path: Path) -> None:
    root = make_root(tmp_path, n_records=2, codes=[{"NORM": 100.0}, {"SR": 0.0}])
    y, classes = database_labels(read_database(root), read_statements(root), "rhythm")
    assert classes == ["AFIB", "SR"] and y.tolist() == [[0, 0], [0, 1]]


def test_unknown_scp_code_is_a_data_error(tmp_path: Path) -> None:
    root = make_root(tmp_path, n_records=2, codes=[{"NORM": 100.0}, {"XYZ": 100.0}])
    with pytest.raises(DataError, match=r"ecg_id 2 lists SCP code 'XYZ'"):
        database_labels(read_database(root), read_statements(root), "all")


def test_unknown_task_lists_the_valid_ones(real) -> None:
    _, st = real
    with pytest.raises(
        ConfigError, match="valid tasks: all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm"
    ):
        task_classes(st, "diagnostics")
