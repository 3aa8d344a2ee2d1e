"""Hand-made WFDB records and tiny PTB-XL-layout folders for the data-layer tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import wfdb
from scipy.io import savemat

from ecgadapt.constants import LEADS

PTBXL_NAMES = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")

# A few real PTB-XL statements (code, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass).
STATEMENTS = [
    ("AFIB", "", "", "1.0", "", ""),
    ("IMI", "1.0", "", "", "MI", "IMI"),
    ("LVOLT", "", "1.0", "", "", ""),
    ("NDT", "1.0", "1.0", "", "STTC", "STTC"),
    ("NORM", "1.0", "", "", "NORM", "NORM"),
    ("SR", "", "", "1.0", "", ""),
]
CODES = [
    {"NORM": 100.0, "SR": 0.0},
    {"IMI": 50.0, "LVOLT": 0.0, "SR": 0.0},
    {"NDT": 100.0, "AFIB": 0.0},
    {"LVOLT": 100.0},
    {"NORM": 80.0, "SR": 0.0},
]


def digital(seed: int, n_samples: int, n_sig: int = 12) -> np.ndarray:
    """Reproducible int16-range digital samples (T, n_sig), never the format-16 missing value."""
    rng = np.random.default_rng(seed)
    return rng.integers(-3000, 3000, size=(n_samples, n_sig)).astype(np.int64)


def write_record(
    folder: Path,
    name: str,
    d_signal: np.ndarray,
    fs: int,
    sig_name: tuple[str, ...] | list[str] = PTBXL_NAMES,
    fmt: str = "16",
) -> Path:
    """Write one WFDB record (gain 1000/mV, baseline 0, as PTB-XL) and return its base path."""
    folder.mkdir(parents=True, exist_ok=True)
    n_sig = d_signal.shape[1]
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * n_sig,
        sig_name=list(sig_name),
        d_signal=d_signal,
        fmt=[fmt] * n_sig,
        adc_gain=[1000.0] * n_sig,
        baseline=[0] * n_sig,
        write_dir=str(folder),
    )
    return folder / name


def make_root(
    tmp: Path,
    n_records: int = 5,
    seconds: int = 1,
    folds: list[int] | None = None,
    codes: list[dict] | None = None,
) -> Path:
    """A tiny PTB-XL folder: both CSVs and 100 + 500 Hz records 00001.., ``seconds`` long."""
    root = tmp / "mini_ptbxl"
    folds = folds or [(i % 10) + 1 for i in range(n_records)]
    codes = codes or [CODES[i % len(CODES)] for i in range(n_records)]
    rows = []
    for i in range(n_records):
        ecg_id = i + 1
        for fs, suffix, sub in ((100, "lr", "records100"), (500, "hr", "records500")):
            write_record(
                root / sub / "00000", f"{ecg_id:05d}_{suffix}", digital(ecg_id * 7 + fs, fs * seconds), fs
            )
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": float(1000 + ecg_id),
                "scp_codes": repr(codes[i]),
                "strat_fold": folds[i],
                "filename_lr": f"records100/00000/{ecg_id:05d}_lr",
                "filename_hr": f"records500/00000/{ecg_id:05d}_hr",
            }
        )
    write_database(root, rows)
    with open(root / "scp_statements.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
        )
        for code, *rest in STATEMENTS:
            w.writerow([code, code.lower(), *rest])
    return root


def write_database(root: Path, rows: list[dict], drop: tuple[str, ...] = ()) -> None:
    """Write ``ptbxl_database.csv`` from dict rows, leaving out the ``drop`` columns."""
    cols = [c for c in rows[0] if c not in drop]
    with open(root / "ptbxl_database.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def subset_root(source: Path, tmp: Path, n_records: int) -> Path:
    """A folder holding the first ``n_records`` rows of a PTB-XL folder (records linked, not copied)."""
    root = tmp / f"ptbxl_first{n_records}"
    root.mkdir()
    with open(source / "ptbxl_database.csv", newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    # The CSV quotes multi-line fields nowhere in PTB-XL: one line per record.
    (root / "ptbxl_database.csv").write_text("".join(lines[: n_records + 1]))
    (root / "scp_statements.csv").write_bytes((source / "scp_statements.csv").read_bytes())
    for sub in ("records100", "records500"):
        os.symlink((source / sub).resolve(), root / sub)
    return root


def write_cinc(
    folder: Path,
    name: str,
    d: np.ndarray,
    fs: int,
    dx: str,
    names: tuple[str, ...] | list[str] = LEADS,
    unit: str = "mV",
    gain: float = 1000.0,
) -> Path:
    """One CinC 2020/2021 record: ``<name>.mat`` ('val', leads x samples) and a header with ``# Dx:``."""
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / f"{name}.mat", {"val": d.T.astype(np.int16)})
    lines = [f"{name} {d.shape[1]} {fs} {d.shape[0]}"]
    lines += [f"{name}.mat 16+24 {gain:g}/{unit} 16 0 {d[0, i]} 0 0 {n}" for i, n in enumerate(names)]
    lines += ["# Age: 60", "# Sex: Male", f"# Dx: {dx}", "# Rx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name
