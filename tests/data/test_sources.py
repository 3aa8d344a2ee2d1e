"""Data sources beside PTB-XL: the SNOMED mapping, CinC and folder layouts, real-world headers, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat
from wfdb_fixtures import digital, write_record

from ecgadapt import LEADS
from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.data.sources import (
    class_coverage,
    load_mapping,
    ptbxl_statements,
    read_any_record,
    read_dx,
    read_window,
    scan_cinc,
    scan_folder,
    stratified_folds,
)
from ecgadapt.errors import DataError

LOWER = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")


def write_cinc(folder: Path, name: str, d: np.ndarray, fs: int, dx: str, names=LEADS, unit: str = "mV",
               gain: float = 1000.0) -> Path:  # fmt: skip
    """One CinC 2020/2021 record: ``<name>.mat`` ('val', leads x samples) and a header with ``# Dx:``."""
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / f"{name}.mat", {"val": d.T.astype(np.int16)})
    lines = [f"{name} {d.shape[1]} {fs} {d.shape[0]}"]
    lines += [f"{name}.mat 16+24 {gain:g}/{unit} 16 0 {d[0, i]} 0 0 {n}" for i, n in enumerate(names)]
    lines += ["# Age: 60", "# Sex: Male", f"# Dx: {dx}", "# Rx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name


def test_mapping_covers_superdiagnostic_and_rhythm_classes():
    mapping = load_mapping()
    assert mapping["source"].str.len().gt(0).all()  # every row names its source
    assert set(mapping["ptbxl_statement"]) - {""} <= set(ptbxl_statements().index)
    superdiag = class_coverage("superdiagnostic")
    assert sorted(superdiag) == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert all(superdiag.values()), superdiag
    rhythm = class_coverage("rhythm")
    assert len(rhythm) == 12 and all(rhythm.values()), {k: v for k, v in rhythm.items() if not v}
    assert "164889003" in rhythm["AFIB"] and "426783006" in rhythm["SR"]


def test_shipped_statements_match_ptbxl(ptbxl500):
    from ecgadapt.data.ptbxl import read_statements

    real = read_statements(ptbxl500)
    cols = ["diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
    pd.testing.assert_frame_equal(ptbxl_statements()[cols], real[cols], check_dtype=False)


def test_cinc_source_reads_mat_and_counts_unmapped_codes(tmp_path):
    d = digital(1, 1000)
    write_cinc(tmp_path, "A0001", d, 500, "164889003,59118001")
    write_cinc(tmp_path, "A0002", digital(2, 1000), 500, "426783006,999999999")
    assert read_dx(tmp_path / "A0001") == ["164889003", "59118001"]
    records = scan_cinc(tmp_path)
    assert records.table["scp_codes"].tolist() == [{"AFIB": 100.0, "CRBBB": 100.0}, {"SR": 100.0}]
    summary = records.summary()
    assert summary["unmapped_codes"] == {"999999999": 1} and summary["n_unmapped"] == 1
    x, fs = read_any_record(tmp_path / "A0001")
    assert fs == 500 and x.shape == (12, 1000)
    np.testing.assert_allclose(x, d.T / 1000.0, rtol=1e-6)


def test_lower_case_reordered_leads_uv_units_and_250_hz(tmp_path):
    d = digital(3, 2500)  # 10 s at 250 Hz
    order = [11, 0, 5, 3, 2, 1, 4, 6, 7, 8, 9, 10]  # leads shuffled, names lower case
    base = write_cinc(tmp_path, "B1", d[:, order], 250, "426783006", names=[LOWER[i] for i in order], unit="uV",
                      gain=1.0)  # fmt: skip
    x, fs = read_any_record(base)
    assert fs == 250
    np.testing.assert_allclose(x, d.T / 1000.0, rtol=1e-6)  # uV -> mV, back in LEADS order
    w = read_window(base, 500, 5000)
    assert w.shape == (12, 5000)
    from ecgadapt.data.transforms import Resample

    np.testing.assert_allclose(w, Resample(250, 500)(x), rtol=1e-6)


def test_upper_case_wfdb_dat_record_with_extra_lead(tmp_path):
    names = [*("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"), "X"]
    d = digital(4, 1000, n_sig=13)
    base = write_record(tmp_path, "r1", d, 100, sig_name=names)
    x = read_window(base, 100, 1000)
    np.testing.assert_allclose(x, d[:, :12].T / 1000.0, rtol=1e-6)


def test_record_without_needed_leads_is_refused_naming_it(tmp_path):
    base = write_record(tmp_path, "short6", digital(5, 500, n_sig=6), 100, sig_name=LEADS[:6])
    with pytest.raises(DataError, match=r"record short6: its leads \['I', 'II'.*V1"):
        read_any_record(base)


def test_folder_source_with_folds_statements_and_class_names(tmp_path):
    for i in range(4):
        write_record(tmp_path, f"rec{i}", digital(10 + i, 1000), 100)
    csv = tmp_path / "labels.csv"
    csv.write_text("record,labels,fold\nrec0,NORM;SR,1\nrec1,IMI,9\nrec2,AFIB;CLBBB,10\nrec3,NORM,10\n")
    records = scan_folder(tmp_path)
    assert records.labels == "statements" and records.table["strat_fold"].tolist() == [1, 9, 10, 10]
    cache = load_or_prepare(tmp_path, 100, cache_dir=tmp_path / "cache", progress=False, source="folder")
    y, classes = cache.labels("superdiagnostic")
    assert classes == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert y.tolist() == [[0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
    np.testing.assert_allclose(cache.signals[2], digital(12, 1000).T / 1000.0, rtol=1e-6)
    test = ECGDataset(cache, "superdiagnostic", "test")
    assert len(test) == 2

    by_class = tmp_path / "classes.csv"
    by_class.write_text("record,labels\nrec0,NORM\nrec1,MI\nrec2,CD;MI\nrec3,NORM\n")
    records = scan_folder(tmp_path, by_class)
    assert records.labels == "classes" and set(records.table["strat_fold"]) <= set(range(1, 11))
    cache = load_or_prepare(
        tmp_path, 100, labels=by_class, cache_dir=tmp_path / "cache", progress=False, source="folder"
    )
    y, _ = cache.labels("superdiagnostic")
    assert y.tolist() == [[0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0]]


def test_folder_labels_that_are_neither_codes_nor_classes_are_refused(tmp_path):
    write_record(tmp_path, "rec0", digital(1, 100), 100)
    (tmp_path / "labels.csv").write_text("record,labels\nrec0,NORM;bogus\n")
    with pytest.raises(DataError, match="bogus"):
        scan_folder(tmp_path)


def test_stratified_folds_are_seeded_and_spread_each_label():
    labels = [{"A": 1}] * 40 + [{"B": 1}] * 20
    folds = stratified_folds(labels, seed=3)
    assert np.array_equal(folds, stratified_folds(labels, seed=3))
    assert np.bincount(folds, minlength=11)[1:].tolist() == [6] * 10  # equal folds
    for part, share in ((folds[:40], 4), (folds[40:], 2)):  # each label within one record of its share
        assert np.abs(np.bincount(part, minlength=11)[1:] - share).max() <= 1
