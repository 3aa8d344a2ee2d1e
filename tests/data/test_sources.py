"""Data sources beside PTB-XL: the SNOMED mapping, CinC and folder layouts, real-world headers, caching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from wfdb_fixtures import digital, write_cinc, write_record

from ecgadapt.constants import LEADS
from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.dataset import ECGDataset, record_mean
from ecgadapt.data.records import read_any_record, read_dx, read_segments, read_window
from ecgadapt.data.sources import (
    class_coverage,
    load_mapping,
    ptbxl_statements,
    scan_cinc,
    scan_folder,
    stratified_folds,
)
from ecgadapt.errors import DataError

LOWER = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")


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
    base = write_cinc(
        tmp_path, "B1", d[:, order], 250, "426783006", names=[LOWER[i] for i in order], unit="uV", gain=1.0
    )
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


def test_long_records_are_cached_as_segments_covering_them(tmp_path):
    import json

    import torch

    from ecgadapt.data.transforms import FixedWindows, Resample

    write_record(tmp_path, "ten", digital(20, 1000), 100)  # 10 s: one row, exactly as before
    write_record(tmp_path, "thirty", digital(21, 3000), 100)  # 30 s: three consecutive rows
    write_record(tmp_path, "five", digital(22, 500), 100)  # 5 s: one zero-padded row
    long500 = write_cinc(tmp_path, "long500", digital(23, 12500), 500, "426783006")  # 25 s at 500 Hz
    (tmp_path / "labels.csv").write_text(
        "record,labels,fold\nten,NORM,10\nthirty,IMI,10\nfive,NORM,10\nlong500,NDT,10\n"
    )
    cache = load_or_prepare(tmp_path, 100, cache_dir=tmp_path / "cache", progress=False, source="folder")
    assert cache.shape == (1 + 3 + 1 + 3, 12, 1000)
    assert cache.index["ecg_id"].tolist() == [1, 2, 2, 2, 3, 4, 4, 4]
    assert np.array_equal(cache.signals[0], read_window(tmp_path / "ten", 100, 1000))
    thirty = digital(21, 3000).T / 1000.0
    for k in range(3):
        np.testing.assert_allclose(cache.signals[1 + k], thirty[:, 1000 * k : 1000 * (k + 1)], rtol=1e-6)
    np.testing.assert_array_equal(cache.signals[4, :, 500:], 0.0)
    resampled = Resample(500, 100)(read_any_record(long500)[0])  # 2500 samples: windows at 0, 750, 1500
    np.testing.assert_array_equal(cache.signals[5:8], FixedWindows(1000, 3)(resampled))
    np.testing.assert_array_equal(read_segments(long500, 100, 1000), cache.signals[5:8])

    test = ECGDataset(cache, "superdiagnostic", "test")  # evaluation: every segment is an item
    assert test.rows.tolist() == list(range(8)) and test.record_ids.tolist() == [1, 2, 3, 4]
    y, p = test.labels, np.arange(8, dtype=np.float32)[:, None].repeat(5, axis=1)
    y_rec, p_rec = record_mean(test.ecg_ids, y, p)
    assert y_rec.tolist() == cache.labels("superdiagnostic")[0][[0, 1, 4, 5]].tolist()
    np.testing.assert_allclose(p_rec[:, 0], [0, 2, 4, 6])  # the mean over a record's segments
    train = ECGDataset(cache, "superdiagnostic", "test", segments="random")  # training: one item per record
    assert len(train) == 4 and train.n_segments.tolist() == [1, 3, 1, 3]
    torch.manual_seed(0)
    seen = {tuple(train[1][0][0, :3].tolist()) for _ in range(30)}
    assert seen == {tuple(cache.signals[1 + k][0, :3].tolist()) for k in range(3)}  # any of its segments

    manifest = json.loads((cache.path / "manifest.json").read_text())
    del manifest["segment_s"]  # a cache of an older ecgadapt (central 10 s only) is rebuilt
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    again = load_or_prepare(tmp_path, 100, cache_dir=tmp_path / "cache", progress=False, source="folder")
    assert again.manifest["segment_s"] == 10.0


def test_record_mean_leaves_one_item_records_untouched():
    y, p = np.eye(3, dtype=np.float32), np.random.default_rng(0).random((3, 3)).astype(np.float32)
    y2, p2 = record_mean(np.array([7, 3, 5]), y, p)
    assert y2 is y and p2 is p
    with pytest.raises(DataError, match="2 predictions for 3 items"):
        record_mean(np.array([7, 3, 5]), y[:2], p[:2])
