"""The pretraining-overlap guard on every source: PTB-XL identities from file names and labels CSVs, patients."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from wfdb_fixtures import digital, make_root, write_cinc, write_record

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.identity import (
    BY_DATABASE,
    BY_FILE_NAME,
    BY_LABELS_CSV,
    RecordIdentity,
    pretraining_overlap_counts,
    ptbxl_id_from_name,
    record_identities,
)
from ecgadapt.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_runs import tiny_config  # noqa: E402


@pytest.mark.parametrize(
    ("name", "ecg_id"),
    [
        ("records100/00000/00123_lr", 123),
        ("records500/21000/21837_hr", 21837),
        ("g1/HR00123", 123),
        ("HR00123.mat", 123),
        ("00123_lr.hea", 123),
        ("rec1", None),
        ("A0001", None),
        ("0012_lr", None),
    ],
)
def test_a_record_name_gives_its_ptbxl_ecg_id(name, ecg_id):
    assert ptbxl_id_from_name(name) == ecg_id


def _folder(
    root: Path, names: list[str], folds: list[int], extra: dict[str, list[str]] | None = None
) -> Path:
    for i, name in enumerate(names):
        write_record(root / Path(name).parent, Path(name).name, digital(30 + i, 1000), 100)
    extra = extra or {}
    header = ",".join(["record", "labels", "fold", *extra])
    rows = [
        ",".join([name, "NORM", str(fold), *(values[i] for values in extra.values())])
        for i, (name, fold) in enumerate(zip(names, folds))
    ]
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def _load(root: Path, tmp_path: Path, source: str = "folder"):
    return load_or_prepare(root, 100, cache_dir=tmp_path / "cache", progress=False, source=source)


def test_folder_records_are_identified_by_labels_csv_column_else_by_ptbxl_file_name(tmp_path):
    names = ["records100/00000/00011_lr", "a/rec2", "b/rec3", "rec4"]
    extra = {"ecg_id": ["", "22", "", ""], "patient_id": ["7", "8", "", ""]}
    cache = _load(_folder(tmp_path / "f", names, [1, 9, 10, 10], extra), tmp_path)
    identity = record_identities(cache)
    assert identity.table["ptbxl_ecg_id"].tolist() == [11, 22, pd.NA, pd.NA]
    assert identity.table["patient_id"].tolist() == [7, 8, pd.NA, pd.NA]
    assert identity.how == f"{BY_LABELS_CSV}, {BY_FILE_NAME}"
    assert "2 of 4 folder record(s) carry no PTB-XL identity" in identity.reason


def test_a_labels_csv_ecg_id_that_is_not_an_integer_names_its_row(tmp_path):
    root = _folder(tmp_path / "f", ["rec1", "rec2"], [1, 10], {"ecg_id": ["3", "x7"]})
    with pytest.raises(
        DataError, match=r"column ecg_id must hold PTB-XL's integer ecg_ids .* row\(s\) \[3\]"
    ):
        record_identities(_load(root, tmp_path))


def test_cinc_records_of_the_ptbxl_reexport_are_identified_by_their_hr_name(tmp_path):
    root = tmp_path / "c"
    for i, name in enumerate(["HR00005", "HR00006", "A0001"]):
        write_cinc(root, name, digital(50 + i, 1000), 100, "426783006")
    identity = record_identities(_load(root, tmp_path, "cinc"))
    assert identity.table["ptbxl_ecg_id"].tolist() == [pd.NA, 5, 6]  # A0001, HR00005, HR00006
    assert identity.how == BY_FILE_NAME and identity.table["patient_id"].isna().all()


def test_ptbxl_records_carry_the_database_ids_and_patients(tmp_path):
    identity = record_identities(_load(make_root(tmp_path, n_records=4), tmp_path, "ptbxl"))
    assert identity.how == BY_DATABASE
    assert identity.table["ptbxl_ecg_id"].tolist() == [1, 2, 3, 4]
    assert identity.table["patient_id"].tolist() == [1001, 1002, 1003, 1004]


def _identity(ids, patients, folds, how="x", reason=None) -> RecordIdentity:
    table = pd.DataFrame(
        {
            "ecg_id": range(1, len(ids) + 1),
            "strat_fold": folds,
            "ptbxl_ecg_id": pd.array(ids, dtype="Int64"),
            "patient_id": pd.array(patients, dtype="Int64"),
        }
    )
    return RecordIdentity(table, how, reason)


def test_overlap_counts_seen_records_and_other_records_of_seen_patients_per_split():
    identity = _identity([1, 2, 3, 4, 5, 6], [10, 10, 20, 30, 30, 40], [1, 9, 10, 10, 9, 1])
    out = pretraining_overlap_counts(identity, {1, 4, 99}, {1: 10, 4: 30, 99: 40}, 10, 9)
    assert (out["train"], out["val"], out["test"]) == (1, 0, 1)
    assert out["same_patient"] == {"train": 1, "val": 2, "test": 0}  # 6 (patient 40), 2 and 5
    assert out["unknown"] == [] and out["n_seen_pretraining"] == 3


def test_overlap_says_plainly_what_it_cannot_check():
    none = _identity(
        [None, None], [None, None], [9, 10], how=None, reason="2 of 2 folder record(s) carry none"
    )
    out = pretraining_overlap_counts(none, {1}, {}, 10, 9)
    assert (out["train"], out["val"], out["test"], out["same_patient"]) == (None, None, None, None)
    assert "whether the encoder saw them cannot be checked" in out["unknown"][0]
    assert "the patients of the records the encoder saw are unknown" in out["unknown"][1]
    some = _identity([1, None], [None, None], [9, 10], reason="1 of 2 folder record(s) carry none")
    out = pretraining_overlap_counts(some, {1, 2}, {1: 5}, 10, 9)
    assert out["val"] == 1 and out["n_unidentified"] == {"train": 0, "val": 0, "test": 1}
    assert "they are not counted" in out["unknown"][0] and "carry no patient_id" in out["unknown"][1]


def test_finetune_on_a_folder_of_ptbxl_records_flags_what_the_encoder_saw(tmp_path, monkeypatch, capsys):
    import ecgadapt.train.finetune as finetune_module

    names = [f"records100/00000/{i:05d}_lr" for i in range(1, 21)]
    folds = [(i % 10) + 1 for i in range(20)]  # ecg_id 10 and 20 test, 9 and 19 validate
    patients = [str(100 + i // 2) for i in range(20)]  # ecg_ids 1-2 one patient, 3-4 the next ...
    root = _folder(tmp_path / "f", names, folds, {"patient_id": patients})
    monkeypatch.setattr(finetune_module, "seen_ptbxl_ids", lambda sha: frozenset({1, 10, 19}))
    monkeypatch.setattr(finetune_module, "seen_ptbxl_patients", lambda sha: {1: 100, 10: 104, 19: 109})
    cfg = tiny_config(
        root, tmp_path / "cache", tmp_path / "run", "linear_probe", "data.source=folder", epochs=1
    )
    final = json.loads((finetune_module.run_finetune(cfg) / "final.json").read_text())
    overlap = final["pretraining_overlap"]
    assert (overlap["train"], overlap["val"], overlap["test"]) == (1, 1, 1)
    assert overlap["identity"] == BY_FILE_NAME
    assert overlap["same_patient"] == {
        "train": 1,
        "val": 1,
        "test": 1,
    }  # 2 (patient of 1), 9 (of 10), 20 (of 19)
    assert any("signals of 1 test and 1 validation records" in n for n in final["notes"])
    assert any("1 test and 1 validation records belong to patients" in n for n in final["notes"])
    assert "records belong to patients whose other records" in capsys.readouterr().out


def test_finetune_on_a_folder_without_identities_says_it_cannot_check(tmp_path, monkeypatch):
    import ecgadapt.train.finetune as finetune_module

    root = _folder(tmp_path / "f", [f"rec{i}" for i in range(20)], [(i % 10) + 1 for i in range(20)])
    monkeypatch.setattr(finetune_module, "seen_ptbxl_ids", lambda sha: frozenset({1, 10}))
    cfg = tiny_config(
        root, tmp_path / "cache", tmp_path / "run", "linear_probe", "data.source=folder", epochs=1
    )
    final = json.loads((finetune_module.run_finetune(cfg) / "final.json").read_text())
    assert final["pretraining_overlap"]["test"] is None and final["pretraining_overlap"]["identity"] is None
    assert any(
        "20 of 20 folder record(s) carry no PTB-XL identity" in n and "cannot be checked" in n
        for n in final["notes"]
    )
