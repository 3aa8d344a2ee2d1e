"""PTB-XL on disk: the two metadata CSVs and the WFDB records, read as float32 millivolts (12, T)."""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError, DataError

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
RATES: tuple[int, ...] = (100, 500)
FILENAME_COLUMN = {100: "filename_lr", 500: "filename_hr"}
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
STATEMENT_COLUMNS = ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")

_FIX_DOWNLOAD = "re-download PTB-XL from PhysioNet (https://physionet.org/content/ptb-xl/) or fix the file"


def check_rate(rate: int) -> int:
    """Return ``rate`` as an int if PTB-XL provides it (100 or 500 Hz), else raise ConfigError."""
    if rate not in RATES:
        raise ConfigError(f"sampling rate {rate!r} is not available in PTB-XL; use one of {list(RATES)} (Hz)")
    return int(rate)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(
            f"{path} not found; point --data at a PTB-XL folder holding {path.name} ({_FIX_DOWNLOAD})"
        )
    return path


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable CSV ({err}); {_FIX_DOWNLOAD}") from err


def _parse_codes(text: object, path: Path, ecg_id: int) -> dict[str, float]:
    try:
        codes = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as err:
        raise DataError(
            f"{path}: scp_codes of ecg_id {ecg_id} is not a dict literal: {text!r}; {_FIX_DOWNLOAD}"
        ) from err
    if not isinstance(codes, dict):
        raise DataError(
            f"{path}: scp_codes of ecg_id {ecg_id} is not a dict literal: {text!r}; {_FIX_DOWNLOAD}"
        )
    out = {}
    for k, v in codes.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: scp_codes of ecg_id {ecg_id} gives code {k!r} the likelihood {v!r}, which is not a number "
                f"(PTB-XL uses 0-100); fix that row or {_FIX_DOWNLOAD}"
            ) from None
    return out


def read_database(root: str | os.PathLike) -> pd.DataFrame:
    """Read ``ptbxl_database.csv``: one row per record, indexed by ``ecg_id``, ``scp_codes`` parsed to dicts."""
    path = _require_file(Path(root) / DATABASE_CSV)
    df = _read_csv(path)
    missing = [c for c in DATABASE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing}; it must be PTB-XL's ptbxl_database.csv ({_FIX_DOWNLOAD})"
        )
    if df["ecg_id"].isna().any() or df["ecg_id"].duplicated().any():
        raise DataError(f"{path}: column ecg_id has empty or duplicate values; {_FIX_DOWNLOAD}")
    folds = pd.to_numeric(df["strat_fold"], errors="coerce")
    bad = df.loc[folds.isna() | ~folds.isin(range(1, 11)), "ecg_id"].tolist()
    if bad:
        raise DataError(
            f"{path}: strat_fold must be an integer 1-10, not for ecg_id(s) {bad[:5]}; {_FIX_DOWNLOAD}"
        )
    df = df.assign(ecg_id=df["ecg_id"].astype(np.int64), strat_fold=folds.astype(np.int64))
    df["patient_id"] = pd.to_numeric(df["patient_id"], errors="coerce").astype("Int64")
    df["scp_codes"] = [_parse_codes(t, path, i) for t, i in zip(df["scp_codes"], df["ecg_id"])]
    return df.set_index("ecg_id", drop=False).rename_axis(None).sort_index()


def read_statements(root: str | os.PathLike) -> pd.DataFrame:
    """Read ``scp_statements.csv``: one row per SCP statement, indexed by its code, sorted by code."""
    path = _require_file(Path(root) / STATEMENTS_CSV)
    df = _read_csv(path, index_col=0)
    missing = [c for c in STATEMENT_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {missing}; it must be PTB-XL's scp_statements.csv ({_FIX_DOWNLOAD})"
        )
    df.index = df.index.astype(str)
    if df.index.duplicated().any():
        raise DataError(f"{path}: duplicate statement codes {sorted(set(df.index[df.index.duplicated()]))}")
    for col in ("diagnostic", "form", "rhythm"):
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(0).astype(np.int64)
    return df.sort_index()


def record_base(root: str | os.PathLike, database: pd.DataFrame, ecg_id: int, rate: int) -> Path:
    """Path (without extension) of one record's WFDB files at ``rate``."""
    return Path(root) / str(database.at[ecg_id, FILENAME_COLUMN[check_rate(rate)]])


def check_records_present(root: str | os.PathLike, database: pd.DataFrame, rate: int) -> None:
    """DataError, before any record is read, when the folder of ``rate``'s records (``records500/``) is absent."""
    root = Path(root)
    names = database[FILENAME_COLUMN[check_rate(rate)]].dropna().astype(str)
    folders = sorted({Path(n).parts[0] for n in names if len(Path(n).parts) > 1})
    missing = [f for f in folders if not (root / f).is_dir()]
    if not missing:
        return
    other = [r for r in RATES if r != rate and (root / f"records{r}").is_dir()]
    holds = (
        f"this copy holds only the {other[0]} Hz records (records{other[0]}/), so it is {other[0]} Hz only; "
        f"pass --rate {other[0]} (data.rate={other[0]} in a benchmark)"
        if other
        else f"it holds no records folder at all; {_FIX_DOWNLOAD}"
    )
    raise DataError(
        f"{root} has no {missing[0]}/ folder, where {DATABASE_CSV} ({FILENAME_COLUMN[rate]}) puts the {rate} Hz "
        f"records: {holds}"
    )


@dataclass(frozen=True)
class Header:
    """The parts of a WFDB header that reading PTB-XL needs."""

    path: Path
    n_sig: int
    fs: float
    sig_len: int
    sig_names: tuple[str, ...]
    files: tuple[str, ...]
    fmts: tuple[str, ...]
    gains: tuple[float, ...]
    baselines: tuple[int, ...]
    simple: bool  # one format-16 file, no skew/offset/multi-sample frames: the fast path applies


def read_header(base: str | os.PathLike, fix: str = _FIX_DOWNLOAD) -> Header:
    """Parse ``<base>.hea`` (single-segment WFDB header) without wfdb's slower parser; ``fix`` ends errors."""
    path = Path(f"{base}.hea")
    if not path.is_file():
        raise DataError(f"record {Path(base).name}: header {path} not found; {fix}")
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    try:
        rec = lines[0].split()
        if "/" in rec[0]:
            raise ValueError("multi-segment records are not supported")
        n_sig, fs, sig_len = int(rec[1]), float(rec[2].split("/")[0].split("(")[0]), int(rec[3])
        names, files, fmts, gains, baselines = [], [], [], [], []
        simple = True
        for ln in lines[1 : 1 + n_sig]:
            f = ln.split(maxsplit=8)
            fmt = f[1]
            plain_fmt = fmt.split("x")[0].split(":")[0].split("+")[0]
            simple &= fmt == "16"
            gain_txt = f[2] if len(f) > 2 else "200"
            gain = float(gain_txt.split("/")[0].split("(")[0])
            adc_zero = int(f[4]) if len(f) > 4 else 0
            baseline = int(gain_txt.split("(")[1].split(")")[0]) if "(" in gain_txt else adc_zero
            names.append(f[8].strip() if len(f) > 8 else "")
            files.append(f[0])
            fmts.append(plain_fmt)
            gains.append(gain if gain != 0 else 200.0)
            baselines.append(baseline)
    except (IndexError, ValueError) as err:
        raise DataError(f"record {Path(base).name}: cannot parse header {path} ({err}); {fix}") from err
    if len(names) != n_sig:
        raise DataError(
            f"record {Path(base).name}: header {path} declares {n_sig} signals but describes {len(names)}"
        )
    if not (math.isfinite(fs) and fs > 0):
        raise DataError(
            f"record {Path(base).name}: header {path} gives the sampling frequency {fs:g} Hz; write the "
            "record's rate (a positive number) in the header's first line, or drop the record"
        )
    if sig_len <= 0:
        raise DataError(
            f"record {Path(base).name}: header {path} declares {sig_len} samples per signal; write the "
            "record's length in the header's first line, or drop the record"
        )
    simple &= len(set(files)) == 1
    return Header(
        path,
        n_sig,
        fs,
        sig_len,
        tuple(names),
        tuple(files),
        tuple(fmts),
        tuple(gains),
        tuple(baselines),
        simple,
    )


def lead_order(header: Header) -> np.ndarray:
    """Column indices that put the header's signals into :data:`ecgadapt.LEADS` order (names case-insensitive)."""
    name = header.path.stem
    if header.n_sig != len(LEADS):
        raise DataError(
            f"record {name}: header {header.path} has {header.n_sig} leads {list(header.sig_names)}, "
            f"expected the 12 standard leads {list(LEADS)}; drop its row from {DATABASE_CSV} or {_FIX_DOWNLOAD}"
        )
    upper = [s.upper() for s in header.sig_names]
    missing = [lead for lead in LEADS if upper.count(lead.upper()) != 1]
    if missing:
        raise DataError(
            f"record {name}: header {header.path} lacks (or repeats) lead(s) {missing}; it has {list(header.sig_names)}. "
            f"Expected the 12 standard leads {list(LEADS)}; {_FIX_DOWNLOAD}"
        )
    return np.array([upper.index(lead.upper()) for lead in LEADS])


def _read_simple(base: Path, header: Header, fix: str = _FIX_DOWNLOAD) -> np.ndarray:
    dat = base.parent / header.files[0]
    if not dat.is_file():
        raise DataError(f"record {base.name}: signal file {dat} not found; {fix}")
    expected = header.sig_len * header.n_sig * 2
    size = dat.stat().st_size
    if size < expected:
        raise DataError(
            f"record {base.name}: signal file {dat} is truncated ({size} bytes, header needs {expected}); {fix}"
        )
    digital = np.fromfile(dat, dtype="<i2", count=header.sig_len * header.n_sig).reshape(
        header.sig_len, header.n_sig
    )
    # Same float64 arithmetic as wfdb's dac(), so the float32 result is bitwise what wfdb.rdsamp gives.
    phys = digital.astype(np.float64)
    np.subtract(phys, np.asarray(header.baselines, dtype=np.float64), phys)
    np.divide(phys, np.asarray(header.gains, dtype=np.float64), phys)
    phys[digital == -32768] = np.nan
    return phys


def _read_wfdb(base: Path, header: Header, fix: str = _FIX_DOWNLOAD) -> np.ndarray:
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base), physical=True)
    except FileNotFoundError as err:
        raise DataError(f"record {base.name}: signal file {err.filename} not found; {fix}") from err
    except ValueError as err:
        raise DataError(f"record {base.name}: signal file is truncated or corrupt ({err}); {fix}") from err
    sig = np.asarray(rec.p_signal, dtype=np.float64)
    if sig.shape != (header.sig_len, header.n_sig):
        raise DataError(
            f"record {base.name}: read {sig.shape[0]} samples but header {header.path} declares {header.sig_len} "
            f"(truncated signal file?); {fix}"
        )
    return sig


def read_record(base: str | os.PathLike, rate: int | None = None) -> np.ndarray:
    """Read one WFDB record as float32 millivolts, shape (12, T), leads in :data:`ecgadapt.LEADS` order.

    ``rate`` (Hz), when given, must match the header's sampling frequency.
    """
    base = Path(base)
    header = read_header(base)
    if rate is not None and abs(header.fs - rate) > 1e-6:
        raise DataError(
            f"record {base.name}: header {header.path} says {header.fs:g} Hz but {rate} Hz was requested; "
            f"use --rate {header.fs:g} or point the database's filename column at the {rate} Hz records"
        )
    order = lead_order(header)
    phys = _read_simple(base, header) if header.simple else _read_wfdb(base, header)
    bad = ~np.isfinite(phys)
    if bad.any():
        leads = sorted({header.sig_names[c] for c in np.nonzero(bad.any(axis=0))[0]})
        raise DataError(
            f"record {base.name}: {int(bad.sum())} missing (NaN) sample(s) in lead(s) {leads} of {base}; "
            f"exclude the record from {DATABASE_CSV} or {_FIX_DOWNLOAD}"
        )
    return np.ascontiguousarray(phys[:, order].T, dtype=np.float32)
