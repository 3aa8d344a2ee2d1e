"""Synthetic PTB-XL: realistic 12-lead ECGs whose labels follow the signal, in the exact PTB-XL layout.

The generator is a small vectorcardiographic model. Each beat is a sum of Gaussian waves (P, septal q,
main R, terminal S, T, optional ST shift and pathological extras), each with a 3-D direction (x left,
y inferior, z anterior). Leads I, II and V1..V6 are projections of that heart vector (with per-record
electrode jitter and independent noise); III, aVR, aVL and aVF are derived from I and II by Einthoven's
and Goldberger's relations, so they hold exactly up to quantisation. Signals are made at 500 Hz and
the 100 Hz files are the same ECG decimated with an anti-aliasing polyphase FIR
(:func:`scipy.signal.resample_poly`).

Labels (``scp_codes``) are drawn first and the morphology is built from them:

* rhythm: SR (60-100 bpm), STACH (>100), SBRAD (<60), AFIB (irregular RR, no P, fibrillatory waves);
* CD: CLBBB, CRBBB, IVCD (QRS >= 115 ms with morphology), LAFB (left axis), 1AVB (long PR);
* MI: IMI / ILMI (Q waves in II, III, aVF), ASMI / AMI (QS in V1-V3);
* STTC: NDT, ISC_, ISCAL, NST_ (T flattening / inversion, ST depression);
* HYP: LVH (high voltage), RVH (right axis, tall R in V1);
* form: ABQRS, QWAVE, STD_, INVT, LOWT, LVOLT, HVOLT (plus the diagnostic-and-form NDT, NST_).

Every abnormality has a severity drawn per record, so some cases are subtle: the task is learnable
but not trivially separable.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from ecgadapt.data.synthetic_signal import MARGIN, synthesize_record
from ecgadapt.data.synthetic_statements import STATEMENTS, scp_statements_frame
from ecgadapt.errors import ConfigError, DataError

__all__ = [
    "write_synthetic_ptbxl",
    "scp_statements_frame",
    "synthesize_record",
    "PTBXL_LEAD_NAMES",
    "PTBXL_FOLD_SIZES",
    "ptbxl_fold_sizes",
]

GENERATOR_VERSION = 1
MARKER_NAME = ".ecgadapt_synthetic.json"
PTBXL_LEAD_NAMES: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "AVR",
    "AVL",
    "AVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)

PTBXL_FOLD_SIZES: tuple[int, ...] = (2175, 2181, 2192, 2174, 2174, 2173, 2176, 2173, 2183, 2198)
"""Records in ``strat_fold`` 1..10 of PTB-XL 1.0.3's ``ptbxl_database.csv`` (21,799 in all: 17,418 in folds
1-8, 2,183 in fold 9, 2,198 in fold 10), as counted from that file; the total and the 17,418 / 2,183 / 2,198
split are the ones PTB-XL 1.0.3 and the PTB-XL benchmark papers report."""


def ptbxl_fold_sizes(n_records: int) -> tuple[int, ...]:
    """PTB-XL 1.0.3's records per fold scaled to ``n_records`` (largest remainder): the real sizes at 21,799."""
    n = int(n_records)
    if n < len(PTBXL_FOLD_SIZES):
        raise ConfigError(f"n_records={n_records} is too small for 10 folds: use at least 10")
    real = np.array(PTBXL_FOLD_SIZES, dtype=np.int64)
    exact = real * n / real.sum()
    sizes = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - sizes), kind="stable")[: n - int(sizes.sum())]
    sizes[extra] += 1
    return tuple(int(v) for v in sizes)


# --- label sampling ------------------------------------------------------------------------------------


def _sample_labels(rng: np.random.Generator) -> dict:
    """Draw one record's statements and severities (0 < s <= 1); the signal is built from these."""
    lab: dict = {"codes": {}, "sev": {}}
    codes = lab["codes"]
    rhythm = rng.choice(["SR", "STACH", "SBRAD", "AFIB"], p=[0.68, 0.11, 0.10, 0.11])
    hyp = rng.random() < 0.13
    mi = rng.random() < 0.22
    cd = rng.random() < 0.19 + 0.12 * hyp
    sttc = rng.random() < 0.14 + 0.25 * mi + 0.3 * hyp

    def sev() -> float:
        return float(rng.uniform(0.03, 1.0))

    if mi:
        sub = str(rng.choice(["IMI", "ILMI", "ASMI", "AMI"], p=[0.42, 0.13, 0.32, 0.13]))
        codes[sub] = float(rng.choice([100.0, 80.0, 50.0], p=[0.6, 0.25, 0.15]))
        lab["sev"][sub] = sev()
    if hyp:
        sub = str(rng.choice(["LVH", "RVH"], p=[0.7, 0.3]))
        codes[sub] = float(rng.choice([100.0, 50.0], p=[0.7, 0.3]))
        lab["sev"][sub] = sev()
    if cd:
        options = ["CRBBB", "CLBBB", "IVCD", "LAFB", "1AVB"]
        probs = np.array([0.22, 0.15, 0.19, 0.22, 0.22])
        if rhythm == "AFIB":  # no PR interval in AFIB
            probs[4] = 0.0
        picked = {str(rng.choice(options, p=probs / probs.sum()))}
        if rng.random() < 0.12:  # bifascicular block or AV block on top
            extra = "LAFB" if "CRBBB" in picked else ("1AVB" if rhythm != "AFIB" else "LAFB")
            if not ({"CLBBB", "LAFB"} & picked and extra == "LAFB"):
                picked.add(extra)
        for sub in sorted(picked):
            codes[sub] = 100.0
            lab["sev"][sub] = sev()
    if sttc:
        sub = str(rng.choice(["NDT", "ISC_", "ISCAL", "NST_"], p=[0.34, 0.26, 0.16, 0.24]))
        codes[sub] = float(rng.choice([100.0, 50.0], p=[0.7, 0.3]))
        lab["sev"][sub] = sev()
    if not (mi or hyp or cd or sttc):
        codes["NORM"] = float(rng.choice([100.0, 80.0], p=[0.8, 0.2]))
    # form statements that follow the morphology
    if rng.random() < 0.05:
        lab["lvolt"] = True
    if "LVH" in codes and rng.random() < 0.5:
        lab["hvolt"] = True
    elif not (hyp or lab.get("lvolt")) and rng.random() < 0.04:
        lab["hvolt"] = True  # high voltage in a healthy young heart
    lab["rhythm"] = str(rhythm)
    return lab


def _finish_codes(lab: dict, rng: np.random.Generator) -> dict[str, float]:
    """PTB-XL-style ordered scp_codes: diagnostic, then form, then rhythm."""
    codes = dict(lab["codes"])
    form: list[str] = []
    if lab.get("abqrs"):
        form.append("ABQRS")
    if lab.get("qwave"):
        form.append("QWAVE")
    if lab.get("std"):
        form.append("STD_")
    if lab.get("t_form"):
        form.append(lab["t_form"])
    if lab.get("lvolt"):
        form.append("LVOLT")
    if lab.get("hvolt"):
        form.append("HVOLT")
    ordered = {k: codes[k] for k in STATEMENTS if k in codes}
    for f in form:
        ordered[f] = 0.0
    ordered[lab["rhythm"]] = 0.0
    return ordered


# --- writing -------------------------------------------------------------------------------------------


def _write_wfdb(base: Path, digital: np.ndarray, fs: int) -> None:
    """Write a format-16 WFDB record (``base``.hea / .dat), gain 1000/mV, like PTB-XL."""
    name = base.name
    base.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(digital.T).astype("<i2")
    (base.parent / f"{name}.dat").write_bytes(frames.tobytes())
    n_sig, n = digital.shape
    checks = digital.astype(np.int64).sum(axis=1) % 65536
    lines = [f"{name} {n_sig} {fs} {n}"]
    for k in range(n_sig):
        lines.append(
            f"{name}.dat 16 1000.0(0)/mV 16 0 {int(digital[k, 0])} {int(checks[k])} 0 {PTBXL_LEAD_NAMES[k]}"
        )
    (base.parent / f"{name}.hea").write_text("\n".join(lines) + "\n")


def _to_digital(x_mv: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x_mv * 1000.0), -32767, 32767).astype(np.int16)


def _heart_axis(theta: float) -> str:
    if theta < -45:
        return "ALAD"
    if theta < -30:
        return "LAD"
    if theta <= 90:
        return "MID"
    if theta <= 120:
        return "RAD"
    return "ARAD"


def _assign_folds(patients: np.ndarray, rng: np.random.Generator) -> dict[int, int]:
    """Patient-wise folds 1..10 with balanced record counts (largest patients first)."""
    ids, counts = np.unique(patients, return_counts=True)
    order = np.lexsort((rng.permutation(ids.size), -counts))
    sizes = np.zeros(10, dtype=int)
    fold_of: dict[int, int] = {}
    for j in order:
        smallest = np.flatnonzero(sizes == sizes.min())
        f = int(rng.choice(smallest))
        fold_of[int(ids[j])] = f + 1
        sizes[f] += counts[j]
    return fold_of


def _assign_folds_to_sizes(
    patients: np.ndarray, rng: np.random.Generator, sizes: tuple[int, ...]
) -> dict[int, int]:
    """Patient-wise folds 1..10 holding exactly ``sizes`` records: largest patients first, each into the fold
    with the most room left (ties at random)."""
    ids, counts = np.unique(patients, return_counts=True)
    order = np.lexsort((rng.permutation(ids.size), -counts))
    room = np.array(sizes, dtype=np.int64)
    fold_of: dict[int, int] = {}
    for j in order:
        fits = np.flatnonzero(room >= counts[j])
        if fits.size == 0:
            raise ConfigError(
                f"fold_sizes={list(sizes)} cannot hold a patient's {counts[j]} records in one fold; use larger folds"
            )
        f = int(rng.choice(fits[room[fits] == room[fits].max()]))
        fold_of[int(ids[j])] = f + 1
        room[f] -= counts[j]
    return fold_of


def _check_args(n_records: int, rates) -> tuple[int, ...]:
    if int(n_records) < 1 or int(n_records) > 99999:
        raise ConfigError(f"n_records={n_records} is out of range: use 1..99999")
    rates_t = tuple(sorted({int(r) for r in rates}))
    if not rates_t or any(r not in (100, 500) for r in rates_t):
        raise ConfigError(f"rates={tuple(rates)} is not supported: use a subset of (100, 500)")
    return rates_t


def _check_fold_sizes(fold_sizes, n_records: int) -> tuple[int, ...] | None:
    if fold_sizes is None:
        return None
    sizes = tuple(int(v) for v in fold_sizes)
    if len(sizes) != 10 or min(sizes) < 1 or sum(sizes) != int(n_records):
        raise ConfigError(
            f"fold_sizes={list(sizes)} must be 10 positive record counts adding up to n_records={n_records}"
        )
    return sizes


def write_synthetic_ptbxl(
    out_dir: str | os.PathLike,
    n_records: int = 1000,
    seed: int = 0,
    rates: tuple[int, ...] = (100, 500),
    fold_sizes: Sequence[int] | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic dataset in PTB-XL layout under ``out_dir`` and return ``out_dir``.

    Deterministic in ``seed`` (same arguments give byte-identical files). A rerun on a complete folder
    made with the same arguments returns at once; files are written to a temporary sibling folder and
    moved into place at the end, so an interrupted run leaves nothing half-written. ``filename_lr`` /
    ``filename_hr`` are always filled, even when ``rates`` omits one of the rates. ``fold_sizes`` (10 counts
    adding up to ``n_records``, e.g. :func:`ptbxl_fold_sizes`) fixes the records per ``strat_fold`` exactly;
    without it the folds are balanced. ``workers`` processes write the records (each is made from its own seed,
    so the files are the same for any number).
    """
    rates_t = _check_args(n_records, rates)
    sizes = _check_fold_sizes(fold_sizes, n_records)
    out = Path(out_dir).expanduser().absolute()
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_records": int(n_records),
        "seed": int(seed),
        "rates": list(rates_t),
    }
    if sizes is not None:  # only then: a folder written before fold_sizes existed keeps its marker
        params["fold_sizes"] = list(sizes)
    marker = out / MARKER_NAME
    if marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError):
            found = None
        if found == params:
            return out
        raise DataError(
            f"{out} already holds a different synthetic dataset ({found}); delete it or choose another folder "
            f"to write n_records={n_records}, seed={seed}, rates={rates_t}"
            + ("" if sizes is None else f", fold_sizes={list(sizes)}")
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} exists and is not an empty folder; choose an empty or new folder for the synthetic data"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_all(tmp, int(n_records), int(seed), rates_t, sizes, max(1, int(workers)))
        (tmp / MARKER_NAME).write_text(json.dumps(params, sort_keys=True) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_all(
    root: Path,
    n: int,
    seed: int,
    rates: tuple[int, ...],
    fold_sizes: tuple[int, ...] | None = None,
    workers: int = 1,
) -> None:
    """Generate all records and CSVs into ``root`` (records in ``workers`` processes; the same files for any)."""
    rng = np.random.default_rng([seed, 7919])
    n_pat = max(1, int(round(n * 0.86)))
    patients = np.concatenate([np.arange(n_pat), rng.integers(0, n_pat, n - n_pat)])
    patients = rng.permutation(patients)
    pat_ids = (rng.permutation(np.arange(1, 4 * n_pat + 1))[:n_pat] + 10000).astype(float)
    fold_of = (
        _assign_folds(patients, rng)
        if fold_sizes is None
        else _assign_folds_to_sizes(patients, rng, fold_sizes)
    )
    pat_age = rng.integers(18, 92, n_pat).astype(float)
    pat_sex = rng.integers(0, 2, n_pat)

    people = []
    for k in range(n):
        p = int(patients[k])
        people.append(
            {"patient_id": pat_ids[p], "age": pat_age[p], "sex": int(pat_sex[p]), "strat_fold": fold_of[p]}
        )
    ids = list(range(1, n + 1))
    chunk = max(1, min(500, -(-n // max(1, workers * 4))))
    jobs = [(str(root), seed, rates, ids[i : i + chunk], people[i : i + chunk]) for i in range(0, n, chunk)]
    if workers <= 1 or len(jobs) == 1:
        parts = [_write_records(*job) for job in jobs]
    else:
        parts = _in_processes(jobs, workers)
    rows = [row for part in parts for row in part]
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    scp_statements_frame().to_csv(root / "scp_statements.csv")


def _in_processes(jobs: list[tuple], workers: int) -> list[list[dict]]:
    """:func:`_write_records` of every job in ``workers`` processes, results in job order."""
    from concurrent.futures import ProcessPoolExecutor

    from ecgadapt.procs import init_worker, stop_pool

    pool = ProcessPoolExecutor(max_workers=workers, initializer=init_worker, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(_write_records, *job) for job in jobs]
        parts = [f.result() for f in futures]
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return parts


def _write_records(
    root: str, seed: int, rates: tuple[int, ...], ids: list[int], people: list[dict]
) -> list[dict]:
    """Write the records ``ids`` (each from its own seed ``[seed, ecg_id]``) into ``root``; their database rows."""
    rows = []
    for ecg_id, person in zip(ids, people):
        rec_rng = np.random.default_rng([seed, ecg_id])
        lab = _sample_labels(rec_rng)
        ecg, meta = synthesize_record(rec_rng, lab)
        codes = _finish_codes(lab, rec_rng)
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        fn_lr = f"records100/{folder}/{ecg_id:05d}_lr"
        fn_hr = f"records500/{folder}/{ecg_id:05d}_hr"
        if 500 in rates:
            _write_wfdb(Path(root) / fn_hr, _to_digital(ecg[:, MARGIN:-MARGIN]), 500)
        if 100 in rates:
            low = resample_poly(ecg, 1, 5, axis=1)
            _write_wfdb(Path(root) / fn_lr, _to_digital(low[:, MARGIN // 5 : -MARGIN // 5]), 100)
        day = int(rec_rng.integers(0, 365 * 15))
        date = pd.Timestamp("1985-01-01") + pd.Timedelta(
            days=day, seconds=int(rec_rng.integers(6 * 3600, 20 * 3600))
        )
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": person["patient_id"],
                "age": person["age"],
                "sex": person["sex"],
                "height": np.nan,
                "weight": float(rec_rng.integers(50, 110)) if rec_rng.random() < 0.5 else np.nan,
                "nurse": np.nan,
                "site": float(rec_rng.integers(0, 3)),
                "device": "SYNTHETIC",
                "recording_date": date.strftime("%Y-%m-%d %H:%M:%S"),
                "report": ", ".join(STATEMENTS[c][0] for c in codes),
                "scp_codes": str(codes),
                "heart_axis": _heart_axis(meta["theta"]),
                "infarction_stadium1": "unknown"
                if any(c in codes for c in ("IMI", "ILMI", "ASMI", "AMI"))
                else np.nan,
                "infarction_stadium2": np.nan,
                "validated_by": np.nan,
                "second_opinion": False,
                "initial_autogenerated_report": False,
                "validated_by_human": True,
                "baseline_drift": ", alles" if meta["baseline_drift"] else np.nan,
                "static_noise": ", alles" if meta["static_noise"] else np.nan,
                "burst_noise": ", alles" if meta["burst_noise"] else np.nan,
                "electrodes_problems": np.nan,
                "extra_beats": np.nan,
                "pacemaker": np.nan,
                "strat_fold": person["strat_fold"],
                "filename_lr": fn_lr,
                "filename_hr": fn_hr,
            }
        )
    return rows
