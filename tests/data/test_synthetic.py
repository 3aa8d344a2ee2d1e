"""Synthetic PTB-XL: determinism, exact layout, and labels that follow the signal."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy.signal import butter, find_peaks, resample_poly, sosfiltfilt

from ecgadapt.data import synthetic
from ecgadapt.data.synthetic import write_synthetic_ptbxl
from ecgadapt.errors import ConfigError, DataError

N = 60
PTBXL_STATEMENT_COLUMNS = [
    "description",
    "diagnostic",
    "form",
    "rhythm",
    "diagnostic_class",
    "diagnostic_subclass",
    "Statement Category",
    "SCP-ECG Statement Description",
    "AHA code",
    "aECG REFID",
    "CDISC Code",
    "DICOM Code",
]
PTBXL_LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_synthetic_ptbxl(tmp_path_factory.mktemp("syn") / "ptbxl", n_records=N, seed=0)


@pytest.fixture(scope="module")
def db(root) -> pd.DataFrame:
    df = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    df["codes"] = df.scp_codes.apply(ast.literal_eval)
    return df


@pytest.fixture(scope="module")
def signals(root, db) -> dict[int, np.ndarray]:
    return {i: wfdb.rdsamp(str(root / fn))[0].T for i, fn in db.filename_hr.items()}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _qrs_peaks(x: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """QRS locations from the 8-30 Hz derivative energy summed over leads."""
    y = sosfiltfilt(butter(3, [8, 30], btype="band", fs=fs, output="sos"), x, axis=-1)
    e = (np.gradient(y, axis=-1) ** 2).sum(0)
    w = int(0.04 * fs)
    e = np.convolve(e, np.ones(w) / w, mode="same")
    peaks, _ = find_peaks(e, height=0.2 * np.percentile(e, 99.5), distance=int(0.28 * fs))
    return peaks, e


def _qrs_width(x: np.ndarray, fs: int) -> float:
    peaks, e = _qrs_peaks(x, fs)
    h = int(0.2 * fs)
    peaks = peaks[(peaks > h) & (peaks < x.shape[1] - h)]
    avg = np.mean([e[p - h : p + h] for p in peaks], axis=0)
    return float((avg > 0.1 * avg.max()).sum() / fs)


def _with(db: pd.DataFrame, *codes: str) -> list[int]:
    return [i for i, c in db.codes.items() if any(k in c for k in codes)]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = write_synthetic_ptbxl(tmp_path / "a", n_records=12, seed=5)
    b = write_synthetic_ptbxl(tmp_path / "b", n_records=12, seed=5)
    c = write_synthetic_ptbxl(tmp_path / "c", n_records=12, seed=6)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    assert fa.keys() == fc.keys()
    assert fa["records500/00000/00001_hr.dat"] != fc["records500/00000/00001_hr.dat"]
    assert fa["ptbxl_database.csv"] != fc["ptbxl_database.csv"]


def test_any_number_of_worker_processes_writes_the_same_bytes(tmp_path):
    sizes = synthetic.ptbxl_fold_sizes(40)
    one = write_synthetic_ptbxl(tmp_path / "one", n_records=40, seed=4, fold_sizes=sizes)
    three = write_synthetic_ptbxl(tmp_path / "three", n_records=40, seed=4, fold_sizes=sizes, workers=3)
    assert _files(one) == _files(three)


def test_rerun_is_a_no_op_and_mismatches_are_refused(tmp_path):
    out = write_synthetic_ptbxl(tmp_path / "d", n_records=3, seed=1, rates=(100,))
    dat = out / "records100/00000/00001_lr.dat"
    before = dat.stat().st_mtime_ns
    assert write_synthetic_ptbxl(out, n_records=3, seed=1, rates=(100,)) == out
    assert dat.stat().st_mtime_ns == before
    assert not (out / "records500").exists()
    with pytest.raises(DataError, match="different synthetic dataset"):
        write_synthetic_ptbxl(out, n_records=4, seed=1, rates=(100,))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not an empty folder"):
        write_synthetic_ptbxl(tmp_path / "busy", n_records=3)
    with pytest.raises(ConfigError, match="rates"):
        write_synthetic_ptbxl(tmp_path / "e", n_records=3, rates=(250,))
    assert not list(tmp_path.glob(".*partial*"))


def test_ptbxl_fold_sizes_are_the_real_ones_at_full_size_and_scale_down() -> None:
    assert synthetic.ptbxl_fold_sizes(21799) == synthetic.PTBXL_FOLD_SIZES
    assert sum(synthetic.PTBXL_FOLD_SIZES[:8]) == 17418 and synthetic.PTBXL_FOLD_SIZES[8:] == (2183, 2198)
    for n in (10, 333, 2000, 5000):
        sizes = synthetic.ptbxl_fold_sizes(n)
        assert sum(sizes) == n and len(sizes) == 10 and min(sizes) >= 1
        assert max(abs(s - n * r / 21799) for s, r in zip(sizes, synthetic.PTBXL_FOLD_SIZES)) < 1
    with pytest.raises(ConfigError, match="too small"):
        synthetic.ptbxl_fold_sizes(9)


def test_fold_sizes_are_met_exactly_patient_wise(tmp_path):
    sizes = synthetic.ptbxl_fold_sizes(300)
    out = write_synthetic_ptbxl(tmp_path / "f", n_records=300, seed=2, rates=(100,), fold_sizes=sizes)
    db = pd.read_csv(out / "ptbxl_database.csv")
    assert tuple(db.strat_fold.value_counts().sort_index()) == sizes
    assert (db.groupby("patient_id").strat_fold.nunique() == 1).all()
    assert (db.groupby("patient_id").size() > 1).any(), "some patients have several records"
    assert write_synthetic_ptbxl(out, n_records=300, seed=2, rates=(100,), fold_sizes=sizes) == out
    with pytest.raises(DataError, match="different synthetic dataset"):
        write_synthetic_ptbxl(out, n_records=300, seed=2, rates=(100,))  # balanced folds: another dataset
    with pytest.raises(ConfigError, match="adding up to n_records=300"):
        write_synthetic_ptbxl(tmp_path / "g", n_records=300, fold_sizes=sizes[:9] + (1,))
    with pytest.raises(ConfigError, match="cannot hold a patient"):
        write_synthetic_ptbxl(tmp_path / "h", n_records=10, seed=0, rates=(100,), fold_sizes=(1,) * 10)


def test_writes_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    out = write_synthetic_ptbxl(tmp_path / "empty", n_records=2, seed=0)
    assert (out / "ptbxl_database.csv").is_file()


def test_layout_matches_ptbxl(root, db):
    for col in (
        "patient_id",
        "age",
        "sex",
        "scp_codes",
        "strat_fold",
        "filename_lr",
        "filename_hr",
        "report",
    ):
        assert col in db.columns
    assert list(db.index) == list(range(1, N + 1))
    assert db.loc[7, "filename_lr"] == "records100/00000/00007_lr"
    assert db.loc[7, "filename_hr"] == "records500/00000/00007_hr"
    for fn, fs in ((db.loc[7, "filename_lr"], 100), (db.loc[7, "filename_hr"], 500)):
        sig, fields = wfdb.rdsamp(str(root / fn))
        assert sig.shape == (10 * fs, 12)
        assert fields["fs"] == fs
        assert fields["sig_name"] == PTBXL_LEADS
        assert fields["units"] == ["mV"] * 12
        header = wfdb.rdheader(str(root / fn))
        assert header.fmt == ["16"] * 12 and header.adc_gain == [1000.0] * 12
    assert sorted(db.strat_fold.unique()) == list(range(1, 11))
    counts = db.strat_fold.value_counts()
    assert counts.max() - counts.min() <= 2
    # a patient's records stay in one fold
    assert (db.groupby("patient_id").strat_fold.nunique() == 1).all()
    st = pd.read_csv(root / "scp_statements.csv", index_col=0)
    assert list(st.columns) == PTBXL_STATEMENT_COLUMNS
    used = set().union(*db.codes.apply(set))
    assert used <= set(st.index)
    assert isinstance(db.loc[1, "codes"], dict) and all(
        isinstance(v, float) for v in db.loc[1, "codes"].values()
    )


def test_real_statement_attributes_match_ptbxl(ptbxl500):
    """The hard-coded rows equal the real scp_statements.csv (skips without the shared folder)."""
    real = pd.read_csv(ptbxl500 / "scp_statements.csv", index_col=0)
    ours = synthetic.scp_statements_frame()
    for code in ours.index:
        for col in ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"):
            a, b = ours.loc[code, col], real.loc[code, col]
            assert (pd.isna(a) and pd.isna(b)) or a == b, (code, col, a, b)


def test_every_benchmark_task_is_non_empty(root, db):
    st = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diag = st[st.diagnostic == 1]

    def labels(c: dict, task: str) -> set[str]:
        if task == "all":
            return set(c)
        if task == "diagnostic":
            return {k for k in c if k in diag.index}
        if task == "subdiagnostic":
            return {diag.loc[k, "diagnostic_subclass"] for k in c if k in diag.index}
        if task == "superdiagnostic":
            return {diag.loc[k, "diagnostic_class"] for k in c if k in diag.index}
        return {k for k in c if st.loc[k, task] == 1}

    for task in ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"):
        found = set().union(*(labels(c, task) for c in db.codes))
        assert len(found) >= 2, task
    supers = {diag.loc[k, "diagnostic_class"] for c in db.codes for k in c if k in diag.index}
    assert supers == {"NORM", "MI", "STTC", "CD", "HYP"}
    # NORM never co-occurs with another diagnostic class; every record has exactly one rhythm
    for c in db.codes:
        classes = {diag.loc[k, "diagnostic_class"] for k in c if k in diag.index}
        assert classes and ("NORM" not in classes or classes == {"NORM"})
        assert sum(k in ("SR", "STACH", "SBRAD", "AFIB") for k in c) == 1


def test_class_prevalence_is_imbalanced_but_not_rare():
    rng_rows = [synthetic._sample_labels(np.random.default_rng([0, i])) for i in range(3000)]
    classes = {"NORM": 0, "MI": 0, "STTC": 0, "CD": 0, "HYP": 0}
    st = synthetic.scp_statements_frame()
    for lab in rng_rows:
        for cls in {st.loc[k, "diagnostic_class"] for k in lab["codes"]}:
            classes[cls] += 1
    frac = {k: v / len(rng_rows) for k, v in classes.items()}
    assert all(f >= 0.08 for f in frac.values()), frac
    assert frac["NORM"] > 2 * frac["HYP"], frac


def test_limb_leads_follow_einthoven_and_goldberger(root, db):
    for fn in (db.loc[3, "filename_hr"], db.loc[3, "filename_lr"]):
        x = wfdb.rdsamp(str(root / fn))[0].T
        i, ii, iii, avr, avl, avf = x[:6]
        tol = 1.6e-3  # two quantisation steps of 1 uV
        assert np.abs(iii - (ii - i)).max() <= tol
        assert np.abs(avr + (i + ii) / 2).max() <= tol
        assert np.abs(avl - (i - ii / 2)).max() <= tol
        assert np.abs(avf - (ii - i / 2)).max() <= tol


def test_100hz_is_the_decimated_500hz_record(root, db):
    hr = wfdb.rdsamp(str(root / db.loc[2, "filename_hr"]))[0].T
    lr = wfdb.rdsamp(str(root / db.loc[2, "filename_lr"]))[0].T
    dec = resample_poly(hr, 1, 5, axis=1)
    mid = slice(50, -50)
    assert np.abs(dec[:, mid] - lr[:, mid]).max() < 0.01
    assert np.abs(lr).max() > 0.3  # a real signal, not zeros


def test_heart_rate_follows_rhythm_labels(db, signals):
    seen = set()
    for i, c in db.codes.items():
        peaks, _ = _qrs_peaks(signals[i], 500)
        rr = np.diff(peaks) / 500
        hr = 60 / np.median(rr)
        if "STACH" in c:
            assert hr > 97, (i, hr)
        elif "SBRAD" in c:
            assert hr < 62, (i, hr)
        elif "SR" in c:
            assert 57 < hr < 103, (i, hr)
        seen |= {k for k in c if k in ("SR", "STACH", "SBRAD", "AFIB")}
    assert seen == {"SR", "STACH", "SBRAD", "AFIB"}


def test_afib_has_irregular_rr(db, signals):
    def cv(i):
        rr = np.diff(_qrs_peaks(signals[i], 500)[0])
        return rr.std() / rr.mean()

    afib = [cv(i) for i in _with(db, "AFIB")]
    sinus = [cv(i) for i in _with(db, "SR", "STACH", "SBRAD")]
    assert afib and min(afib) > max(sinus)


def test_conduction_blocks_widen_qrs(db, signals):
    wide = [_qrs_width(signals[i], 500) for i in _with(db, "CLBBB", "CRBBB", "IVCD")]
    norm = [_qrs_width(signals[i], 500) for i in _with(db, "NORM")]
    assert len(wide) >= 2 and len(norm) >= 10
    assert np.mean(wide) > np.mean(norm) + 0.015  # severities vary: some blocks are subtle
    assert np.mean(norm) < 0.11


def test_lvh_has_higher_voltage(db, signals):
    def sokolow(i):  # Sokolow-Lyon-like: S depth in V1 + R height in V5 (mV)
        x = signals[i]
        return -np.percentile(x[6], 0.5) + np.percentile(x[10], 99.5)

    lvh = [sokolow(i) for i in _with(db, "LVH")]
    norm = [sokolow(i) for i in _with(db, "NORM")]
    assert lvh and np.mean(lvh) > 1.3 * np.mean(norm)


def test_inferior_mi_has_q_waves_in_inferior_leads(db, signals):
    def q_depth(i):  # deepest dip in aVF within 60 ms before the QRS energy peak, averaged over beats
        x = signals[i]
        peaks, _ = _qrs_peaks(x, 500)
        peaks = peaks[(peaks > 150) & (peaks < x.shape[1] - 50)]
        return np.mean([x[5, p - 40 : p].min() - np.median(x[5, p - 120 : p - 60]) for p in peaks])

    imi = [q_depth(i) for i in _with(db, "IMI", "ILMI")]
    norm = [q_depth(i) for i in _with(db, "NORM")]
    assert imi and np.mean(imi) < np.mean(norm) - 0.1
