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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from ecgadapt.errors import ConfigError, DataError

__all__ = ["write_synthetic_ptbxl", "scp_statements_frame", "synthesize_record", "PTBXL_LEAD_NAMES"]

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
DURATION_S = 10.0
BASE_RATE = 500
_MARGIN = 100  # extra samples at 500 Hz on each side, dropped after decimation (multiple of 5)

# --- the scp_statements.csv rows used here, with their PTB-XL attributes -----------------------------
_STATEMENT_COLUMNS = (
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
)
_CAT_IVCD = "Intraventricular and intra-atrial Conduction disturbances"
_CAT_STT = "Basic roots for coding ST-T changes and abnormalities"
_CAT_RHY = "Statements related to impulse formation (abnormalities)"
_CAT_QRS = "Other QRS morphology descriptive statements"
_CAT_OSTT = "other ST-T descriptive statements"
# code: (description, diagnostic, form, rhythm, class, subclass, category, scp description, AHA, aECG, CDISC, DICOM)
_STATEMENTS: dict[str, tuple] = {
    "NORM": ("normal ECG", 1, 0, 0, "NORM", "NORM", "Normal/abnormal", "normal ECG", "1", "", "", "F-000B7"),
    "IMI": (
        "inferior myocardial infarction",
        1,
        0,
        0,
        "MI",
        "IMI",
        "Myocardial Infarction",
        "inferior myocardial infarction",
        "161",
        "",
        "",
        "",
    ),
    "ILMI": (
        "inferolateral myocardial infarction",
        1,
        0,
        0,
        "MI",
        "IMI",
        "Myocardial Infarction",
        "inferolateral myocardial infarction",
        "",
        "",
        "",
        "",
    ),
    "ASMI": (
        "anteroseptal myocardial infarction",
        1,
        0,
        0,
        "MI",
        "AMI",
        "Myocardial Infarction",
        "anteroseptal myocardial infarction",
        "165",
        "",
        "",
        "",
    ),
    "AMI": (
        "anterior myocardial infarction",
        1,
        0,
        0,
        "MI",
        "AMI",
        "Myocardial Infarction",
        "anterior myocardial infarction",
        "160",
        "",
        "",
        "",
    ),
    "NDT": (
        "non-diagnostic T abnormalities",
        1,
        1,
        0,
        "STTC",
        "STTC",
        _CAT_OSTT,
        "non-diagnostic T abnormalities",
        "",
        "",
        "",
        "",
    ),
    "NST_": (
        "non-specific ST changes",
        1,
        1,
        0,
        "STTC",
        "NST_",
        _CAT_STT,
        "non-specific ST changes",
        "145",
        "MDC_ECG_RHY_STHILOST",
        "",
        "",
    ),
    "ISC_": (
        "non-specific ischemic",
        1,
        0,
        0,
        "STTC",
        "ISC_",
        _CAT_STT,
        "ischemic ST-T changes",
        "226",
        "",
        "",
        "",
    ),
    "ISCAL": (
        "ischemic in anterolateral leads",
        1,
        0,
        0,
        "STTC",
        "ISCA",
        "ischemic ST-T changes",
        "in anterolateral leads",
        "",
        "",
        "",
        "",
    ),
    "LVH": (
        "left ventricular hypertrophy",
        1,
        0,
        0,
        "HYP",
        "LVH",
        "Ventricular Hypertrophy",
        "left ventricular hypertrophy",
        "142",
        "",
        "C71076",
        "",
    ),
    "RVH": (
        "right ventricular hypertrophy",
        1,
        0,
        0,
        "HYP",
        "RVH",
        "Ventricular Hypertrophy",
        "right ventricular hypertrophy",
        "143",
        "",
        "C71077",
        "",
    ),
    "CLBBB": (
        "complete left bundle branch block",
        1,
        0,
        0,
        "CD",
        "CLBBB",
        _CAT_IVCD,
        "(complete) left bundle branch block",
        "104",
        "MDC_ECG_BEAT_LBB_BLK_COMP",
        "C62269",
        "D3-33120 or 122752",
    ),
    "CRBBB": (
        "complete right bundle branch block",
        1,
        0,
        0,
        "CD",
        "CRBBB",
        _CAT_IVCD,
        "(complete) right bundle branch block",
        "106",
        "MDC_ECG_BEAT_RBB_BLK_COMP",
        "C62270",
        "D3-33110",
    ),
    "IVCD": (
        "non-specific intraventricular conduction disturbance (block)",
        1,
        0,
        0,
        "CD",
        "IVCD",
        _CAT_IVCD,
        "non-specific intraventricular conduction disturbance",
        "107",
        "MDC_ECG_BEAT_BLK_IVCD",
        "C62271",
        "D3-33000",
    ),
    "LAFB": (
        "left anterior fascicular block",
        1,
        0,
        0,
        "CD",
        "LAFB/LPFB",
        _CAT_IVCD,
        "left anterior fascicular block",
        "101",
        "MDC_ECG_BEAT_BLK_ANT_L_HEMI",
        "C62267",
        "D3-33140",
    ),
    "1AVB": (
        "first degree AV block",
        1,
        0,
        0,
        "CD",
        "_AVB",
        "Sinus node dysfunction, atrial and AV-conduction defects",
        "first degree AV block",
        "",
        "MDC_ECG_RHY_AV_HEART_BLK_DEG_1",
        "C111088",
        "",
    ),
    "ABQRS": ("abnormal QRS", 0, 1, 0, "", "", "Normal/abnormal", "abnormal QRS", "", "", "", ""),
    "QWAVE": ("Q waves present", 0, 1, 0, "", "", _CAT_QRS, "Q waves present", "", "", "", ""),
    "STD_": (
        "non-specific ST depression",
        0,
        1,
        0,
        "",
        "",
        _CAT_STT,
        "non-specific ST depression",
        "502",
        "",
        "",
        "F-38278",
    ),
    "INVT": ("inverted T-waves", 0, 1, 0, "", "", _CAT_OSTT, "inverted T-waves", "367", "", "", ""),
    "LOWT": ("low amplitude T-waves", 0, 1, 0, "", "", _CAT_OSTT, "low amplitude T-waves", "366", "", "", ""),
    "LVOLT": (
        "low QRS voltages in the frontal and horizontal leads",
        0,
        1,
        0,
        "",
        "",
        _CAT_QRS,
        "low QRS voltages in the frontal and horizontal leads",
        "",
        "",
        "",
        "",
    ),
    "HVOLT": ("high QRS voltage", 0, 1, 0, "", "", _CAT_QRS, "high QRS voltage", "", "", "", ""),
    "SR": ("sinus rhythm", 0, 0, 1, "", "", _CAT_RHY, "sinus rhythm", "20", "MDC_ECG_RHY_SINUS_RHY", "", ""),
    "AFIB": (
        "atrial fibrillation",
        0,
        0,
        1,
        "",
        "",
        _CAT_RHY,
        "atrial fibrillation",
        "50",
        "MDC_ECG_RHY_ATR_FIB",
        "",
        "D3-31520",
    ),
    "STACH": (
        "sinus tachycardia",
        0,
        0,
        1,
        "",
        "",
        _CAT_RHY,
        "sinus tachycardia",
        "21",
        "MDC_ECG_RHY_SINUS_TACHY",
        "",
        "",
    ),
    "SBRAD": (
        "sinus bradycardia",
        0,
        0,
        1,
        "",
        "",
        _CAT_RHY,
        "sinus bradycardia",
        "22",
        "MDC_ECG_RHY_SINUS_BRADY",
        "",
        "",
    ),
}
_DIAGNOSTIC = [c for c, row in _STATEMENTS.items() if row[1]]
_FORM_ONLY = [c for c, row in _STATEMENTS.items() if row[2] and not row[1]]


def scp_statements_frame() -> pd.DataFrame:
    """The scp_statements.csv table of the statements the generator uses (PTB-XL attributes)."""
    rows = []
    for code, row in _STATEMENTS.items():
        vals = list(row)
        for i in (1, 2, 3):  # flags: 1.0 or empty, as in PTB-XL
            vals[i] = 1.0 if vals[i] else np.nan
        for i in range(4, len(vals)):
            vals[i] = vals[i] if vals[i] != "" else np.nan
        rows.append([code, *vals])
    return pd.DataFrame(rows, columns=["", *_STATEMENT_COLUMNS]).set_index("").rename_axis(None)


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
    ordered = {k: codes[k] for k in _STATEMENTS if k in codes}
    for f in form:
        ordered[f] = 0.0
    ordered[lab["rhythm"]] = 0.0
    return ordered


# --- signal model --------------------------------------------------------------------------------------


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _main_direction(theta_deg: float, psi_deg: float) -> np.ndarray:
    """Heart vector with frontal axis ``theta`` and posterior tilt ``psi`` (degrees)."""
    th, ps = np.deg2rad(theta_deg), np.deg2rad(psi_deg)
    return np.array([np.cos(ps) * np.cos(th), np.cos(ps) * np.sin(th), -np.sin(ps)])


def _lead_matrix(rng: np.random.Generator) -> np.ndarray:
    """(8, 3) lead vectors of I, II, V1..V6 with per-record electrode-placement jitter."""
    rows = [[1.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0]]
    angles = np.array([115.0, 95.0, 78.0, 60.0, 35.0, 10.0]) + rng.normal(0, 6, 6)
    gains = np.array([1.3, 2.0, 1.9, 1.7, 1.35, 1.0]) * rng.uniform(0.85, 1.15, 6)
    for a, g in zip(angles, gains):
        r = np.deg2rad(a)
        rows.append([g * np.cos(r), g * rng.normal(0.0, 0.08), g * np.sin(r)])
    return np.asarray(rows)


def _beat_times(rng: np.random.Generator, rhythm: str, hr: float, t_end: float) -> np.ndarray:
    """R-peak times (s) from before 0 to after ``t_end``."""
    rr = 60.0 / hr
    n = int(np.ceil((t_end + 2.0) / (0.5 * rr))) + 4
    if rhythm == "AFIB":
        rrs = rr * np.exp(rng.normal(0.0, rng.uniform(0.14, 0.28), n))
        rrs = np.clip(rrs, 0.3, 2.2)
    else:  # sinus arrhythmia: respiratory modulation plus small jitter
        phase = rng.uniform(0, 2 * np.pi)
        breath = rng.uniform(3.0, 5.0)  # beats per breath
        rrs = rr * (1 + rng.uniform(0.0, 0.04) * np.sin(2 * np.pi * np.arange(n) / breath + phase))
        rrs = rrs * (1 + rng.normal(0, 0.01, n))
    t0 = -1.0 - rng.uniform(0, rr)
    times = t0 + np.concatenate([[0.0], np.cumsum(rrs)])
    return times[times < t_end + 1.0]


def _asym_gauss(tau: np.ndarray, c: np.ndarray, sl: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """(K, L) Gaussian bumps with different left / right widths."""
    d = tau[None, :] - c[:, None]
    s = np.where(d < 0, sl[:, None], sr[:, None])
    return np.exp(-0.5 * (d / s) ** 2)


def synthesize_record(rng: np.random.Generator, lab: dict) -> tuple[np.ndarray, dict]:
    """One ECG in mV, shape (12, 5000 + 2 * margin) at 500 Hz, from sampled labels; also returns metadata.

    ``lab`` comes from the label sampler and gains the form flags set by the morphology.
    """
    codes, sev = lab["codes"], lab["sev"]
    rhythm = lab["rhythm"]
    hr = {
        "SR": rng.uniform(60, 100),
        "STACH": rng.uniform(100.5, 150),
        "SBRAD": rng.uniform(40, 59.5),
        "AFIB": rng.uniform(60, 140),
    }[rhythm]
    rr = 60.0 / hr
    sq_rr = np.sqrt(rr)

    # normal morphology parameters
    theta = float(np.clip(rng.normal(50, 25), -25, 95))
    psi = rng.uniform(8, 32)
    amp_r = float(np.exp(rng.normal(np.log(1.25), 0.3)))
    qrs_d = float(np.clip(rng.normal(0.092, 0.01), 0.07, 0.118))
    pr = rng.uniform(0.12, 0.21)
    qtc = rng.uniform(0.38, 0.44)
    sept_dir = _unit(np.array([-0.4, 0.15, 0.9]) + rng.normal(0, 0.15, 3))
    sept_amp = rng.uniform(0.1, 0.28)
    if rng.random() < 0.25:  # normal variant: small inferior q
        sept_dir = _unit(sept_dir - np.array([0.0, rng.uniform(0.4, 1.2), 0.0]))
    if rng.random() < 0.12:  # normal variant: poor R-wave progression
        sept_amp *= 0.25
        psi += 10
    term_dir = _unit(np.array([-0.5, -0.5, -0.7]) + rng.normal(0, 0.2, 3))
    term_amp = rng.uniform(0.12, 0.35)
    t_amp = rng.uniform(0.2, 0.42)
    p_amp = rng.uniform(0.07, 0.18)
    p_dir = _unit(np.array([0.55, 0.8, 0.2]) + rng.normal(0, 0.12, 3))
    st_vec = np.array([0.0, 0.0, rng.uniform(0.0, 0.04)])  # slight anterior J elevation is normal
    extra: list[tuple[float, float, float, np.ndarray]] = []  # (centre rel. R, sigma_l, sigma_r, vector)
    voltage = 1.0
    main_width = 0.11
    abqrs = False

    # axis and voltage changes
    if "LAFB" in codes:
        theta = float(np.clip(-28 - 52 * sev["LAFB"] + rng.normal(0, 5), -85, -20))
        qrs_d += 0.008 + 0.012 * sev["LAFB"]
    if "RVH" in codes:
        s = sev["RVH"]
        theta = rng.uniform(90, 105) + 40 * s
        psi = -rng.uniform(5, 10) - 25 * s  # anterior: tall R in V1
        amp_r *= 1.0 + 0.3 * s
    if "LVH" in codes:
        s = sev["LVH"]
        amp_r *= 1.15 + 1.0 * s
        psi += 8 * s
        qrs_d += 0.01 * s
        theta = min(theta, 60.0)
    if lab.get("hvolt") and "LVH" not in codes:
        amp_r *= rng.uniform(1.5, 1.9)
    if lab.get("lvolt"):
        voltage = rng.uniform(0.3, 0.5)

    # conduction
    if "1AVB" in codes:
        pr = 0.2 + 0.12 * sev["1AVB"]
    main_dir = _main_direction(theta, psi)
    t_dir = _unit(main_dir * np.array([1.0, 1.0, 0.0]) + np.array([0.0, 0.0, 0.35]) + rng.normal(0, 0.12, 3))
    mains = [(0.0, main_width, 1.0, main_dir)]  # (centre in units of qrs_d, sigma in qrs_d, weight, dir)
    if "CLBBB" in codes:
        s = sev["CLBBB"]
        qrs_d = 0.115 + 0.055 * s + rng.uniform(0, 0.01)
        sept_dir = _unit([0.8, 0.1, -0.3])  # septum activated from the left: no q in I, V5, V6
        sept_amp *= 0.6
        lb_dir = _unit(main_dir + np.array([0.35, -0.1, -0.35]))
        mains = [(-0.2, 0.13, 0.6, lb_dir), (0.2, 0.13, 0.75, lb_dir)]  # broad notched R
        term_amp *= 0.3
        t_dir = -lb_dir  # discordant repolarisation
        st_vec = st_vec - lb_dir * rng.uniform(0.03, 0.1) * s
        abqrs = True
    if "CRBBB" in codes:
        s = sev["CRBBB"]
        qrs_d = max(qrs_d, 0.1 + 0.055 * s + rng.uniform(0, 0.01))
        rprime = _unit(np.array([-0.6, 0.05, 0.8]) + rng.normal(0, 0.1, 3))
        mains = [(c, w * 0.8, a, d) for c, w, a, d in mains]
        extra.append(
            (
                0.32 * qrs_d + 0.012,
                0.13 * qrs_d,
                0.13 * qrs_d,
                rprime * rng.uniform(0.35, 0.8) * (0.2 + 0.8 * s),
            )
        )
        t_dir = _unit(t_dir - np.array([0.0, 0.0, 0.5 * s]))  # T inverted in V1-V3
    if "IVCD" in codes:
        s = sev["IVCD"]
        qrs_d = max(qrs_d, 0.1 + 0.055 * s + rng.uniform(0, 0.01))
        mains = [(c, w * (1.1 + 0.3 * s), a, d) for c, w, a, d in mains]
        abqrs = abqrs or rng.random() < 0.6
        if abqrs:  # notch
            extra.append((0.18 * qrs_d, 0.05 * qrs_d, 0.05 * qrs_d, -main_dir * 0.15 * amp_r))
    if "LAFB" in codes:
        sept_dir = _unit(sept_dir + np.array([0.0, 0.6, 0.0]))  # q in I/aVL, r in II/III/aVF

    # infarction: pathological Q waves = initial vector pointing away from the dead wall
    mi_code = next((c for c in ("IMI", "ILMI", "ASMI", "AMI") if c in codes), None)
    if mi_code is not None:
        s = sev[mi_code]
        q_amp = (0.04 + 0.5 * s) * min(amp_r, 1.6)
        q_sig = 0.008 + 0.012 * s
        away = {
            "IMI": [0.05, -1.0, 0.0],
            "ILMI": [-0.6, -0.8, 0.0],
            "ASMI": [0.15, 0.0, -1.0],
            "AMI": [-0.35, 0.0, -0.95],
        }[mi_code]
        away = _unit(np.array(away) + rng.normal(0, 0.1, 3))
        extra.append((-0.3 * qrs_d - 0.006, q_sig, q_sig, away * q_amp))
        if mi_code in ("ASMI", "AMI"):
            sept_amp *= 1.0 - 0.9 * s
        toward = -away
        # lost electrical force over the dead wall
        mains = [
            (c, w, a, _unit(d - 0.35 * s * toward * np.clip(d @ toward, 0, None))) for c, w, a, d in mains
        ]
        if rng.random() < 0.45:  # evolving infarct: T inverted over the infarct
            t_dir = _unit(t_dir - 0.9 * s * toward)
        lab["qwave"] = rng.random() < 0.45
        abqrs = abqrs or rng.random() < 0.25

    # repolarisation
    t_form = None
    sttc_code = next((c for c in ("NDT", "ISC_", "ISCAL", "NST_") if c in codes), None)
    if sttc_code is not None:
        s = sev[sttc_code]
        if sttc_code == "NDT":
            f = 1.0 - 1.5 * s
            t_amp *= f
            t_form = "INVT" if f < 0 else ("LOWT" if f < 0.4 else None)
        elif sttc_code == "ISC_":
            st_vec = st_vec - _unit(main_dir) * (0.03 + 0.14 * s)
            f = 1.0 - 1.6 * s
            t_amp *= f
            t_form = "INVT" if f < 0 else ("LOWT" if f < 0.4 else None)
            lab["std"] = rng.random() < 0.6
        elif sttc_code == "ISCAL":
            al = _unit([0.6, 0.1, 0.8])
            st_vec = st_vec - al * (0.03 + 0.12 * s)
            t_dir = _unit(t_dir - al * (1.4 * s))
            t_form = "INVT" if s > 0.5 else None
            lab["std"] = rng.random() < 0.6
        else:  # NST_: small, direction-less ST changes
            st_vec = st_vec + _unit(rng.normal(0, 1, 3)) * (0.03 + 0.07 * s)
            t_amp *= rng.uniform(0.55, 1.0)
    if t_form is not None and rng.random() < 0.7:
        lab["t_form"] = t_form
    if abqrs:
        lab["abqrs"] = True

    # assemble the beat template: components with centre (s, rel. to R), sigma_l, sigma_r, 3-vector (mV)
    comps: list[tuple[float, float, float, np.ndarray]] = []
    if rhythm != "AFIB":
        p_sig = rng.uniform(0.016, 0.024)
        comps.append((-qrs_d / 2 - pr + 2 * p_sig, p_sig, p_sig, p_dir * p_amp))
    comps.append((-0.3 * qrs_d, 0.09 * qrs_d, 0.09 * qrs_d, sept_dir * sept_amp * amp_r / 1.25 * voltage))
    for c, w, a, d in mains:
        comps.append((c * qrs_d, w * qrs_d, w * qrs_d, d * a * amp_r * voltage))
    comps.append((0.3 * qrs_d, 0.1 * qrs_d, 0.1 * qrs_d, term_dir * term_amp * amp_r / 1.25 * voltage))
    for c, sl, sr, v in extra:
        comps.append((c, sl, sr, v * voltage))
    t_sr = 0.034 * sq_rr**0.7
    t_sl = 1.5 * t_sr
    t_c = qrs_d / 2 + (qtc * sq_rr - 0.09) - 2 * t_sr
    t_c = max(t_c, qrs_d / 2 + 0.06 + t_sl)
    comps.append((t_c, t_sl, t_sr, t_dir * t_amp))
    if np.any(st_vec):
        comps.append((qrs_d / 2 + 0.07, 0.04, 0.05, st_vec))

    fs = BASE_RATE
    tau = np.arange(-0.5 * fs, 0.8 * fs) / fs
    centres = np.array([c[0] for c in comps])
    sig_l = np.array([c[1] for c in comps])
    sig_r = np.array([c[2] for c in comps])
    vecs = np.stack([c[3] for c in comps])  # (K, 3)
    template = vecs.T @ _asym_gauss(tau, centres, sig_l, sig_r)  # (3, L)

    n_total = int(DURATION_S * fs) + 2 * _MARGIN
    pad = tau.size
    heart = np.zeros((3, n_total + 2 * pad))
    t_end = n_total / fs
    beats = _beat_times(rng, rhythm, hr, t_end)
    resp_f = rng.uniform(0.15, 0.35)
    resp_ph = rng.uniform(0, 2 * np.pi)
    resp_depth = rng.uniform(0.0, 0.08)
    zero = int(0.5 * fs)
    for tb in beats:
        start = int(round(tb * fs)) + pad - zero
        if start < 0 or start + tau.size > heart.shape[1]:
            continue
        heart[:, start : start + tau.size] += template * (
            1 + resp_depth * np.sin(2 * np.pi * resp_f * tb + resp_ph)
        )
    heart = heart[:, pad : pad + n_total]
    t = np.arange(n_total) / fs
    if rhythm == "AFIB":  # fibrillatory waves 4-9 Hz, mostly inferior / anterior
        f_dir = _unit(np.array([-0.2, 0.5, 0.8]) + rng.normal(0, 0.2, 3))
        fw = np.zeros(n_total)
        for _ in range(3):
            f0 = rng.uniform(4.0, 9.0)
            fm = 0.6 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
            fw += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f0 * t + fm + rng.uniform(0, 6.3))
        fw *= rng.uniform(0.02, 0.06) * (1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t))
        heart += f_dir[:, None] * fw[None, :]

    leads8 = _lead_matrix(rng) @ heart  # (8, T): I, II, V1..V6
    # noise: baseline wander, white noise, occasional EMG burst and 50 Hz mains
    wander_amp = rng.uniform(0.02, 0.12) * (3.0 if rng.random() < 0.12 else 1.0)
    for _ in range(2):
        f = rng.uniform(0.05, 0.5, (8, 1))
        leads8 += (
            wander_amp
            * rng.uniform(0.2, 1.0, (8, 1))
            * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3, (8, 1)))
        )
    white = rng.uniform(0.003, 0.02) * (2.0 if rng.random() < 0.1 else 1.0)
    leads8 += rng.normal(0.0, white, leads8.shape)
    burst = rng.random() < 0.1
    if burst:
        a, b = sorted(rng.integers(0, n_total, 2))
        leads8[:, a:b] += rng.normal(0, rng.uniform(0.02, 0.06), (8, b - a))
    if rng.random() < 0.08:
        leads8 += rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 6.3))

    i, ii = leads8[0], leads8[1]
    ecg = np.empty((12, n_total))
    ecg[0], ecg[1] = i, ii
    ecg[2] = ii - i  # Einthoven
    ecg[3] = -(i + ii) / 2  # Goldberger
    ecg[4] = i - ii / 2
    ecg[5] = ii - i / 2
    ecg[6:] = leads8[2:]
    meta = {
        "theta": theta,
        "hr": hr,
        "qrs_d": qrs_d,
        "baseline_drift": wander_amp > 0.15,
        "static_noise": white > 0.02,
        "burst_noise": burst,
    }
    return ecg, meta


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


def _check_args(n_records: int, rates) -> tuple[int, ...]:
    if int(n_records) < 1 or int(n_records) > 99999:
        raise ConfigError(f"n_records={n_records} is out of range: use 1..99999")
    rates_t = tuple(sorted({int(r) for r in rates}))
    if not rates_t or any(r not in (100, 500) for r in rates_t):
        raise ConfigError(f"rates={tuple(rates)} is not supported: use a subset of (100, 500)")
    return rates_t


def write_synthetic_ptbxl(
    out_dir: str | os.PathLike,
    n_records: int = 1000,
    seed: int = 0,
    rates: tuple[int, ...] = (100, 500),
) -> Path:
    """Write a synthetic dataset in PTB-XL layout under ``out_dir`` and return ``out_dir``.

    Deterministic in ``seed`` (same arguments give byte-identical files). A rerun on a complete folder
    made with the same arguments returns at once; files are written to a temporary sibling folder and
    moved into place at the end, so an interrupted run leaves nothing half-written. ``filename_lr`` /
    ``filename_hr`` are always filled, even when ``rates`` omits one of the rates.
    """
    rates_t = _check_args(n_records, rates)
    out = Path(out_dir).expanduser().absolute()
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_records": int(n_records),
        "seed": int(seed),
        "rates": list(rates_t),
    }
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
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} exists and is not an empty folder; choose an empty or new folder for the synthetic data"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_all(tmp, int(n_records), int(seed), rates_t)
        (tmp / MARKER_NAME).write_text(json.dumps(params, sort_keys=True) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_all(root: Path, n: int, seed: int, rates: tuple[int, ...]) -> None:
    """Generate all records and CSVs into ``root``."""
    rng = np.random.default_rng([seed, 7919])
    n_pat = max(1, int(round(n * 0.86)))
    patients = np.concatenate([np.arange(n_pat), rng.integers(0, n_pat, n - n_pat)])
    patients = rng.permutation(patients)
    pat_ids = (rng.permutation(np.arange(1, 4 * n_pat + 1))[:n_pat] + 10000).astype(float)
    fold_of = _assign_folds(patients, rng)
    pat_age = rng.integers(18, 92, n_pat).astype(float)
    pat_sex = rng.integers(0, 2, n_pat)

    rows = []
    for k in range(n):
        ecg_id = k + 1
        rec_rng = np.random.default_rng([seed, ecg_id])
        lab = _sample_labels(rec_rng)
        ecg, meta = synthesize_record(rec_rng, lab)
        codes = _finish_codes(lab, rec_rng)
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        fn_lr = f"records100/{folder}/{ecg_id:05d}_lr"
        fn_hr = f"records500/{folder}/{ecg_id:05d}_hr"
        if 500 in rates:
            _write_wfdb(root / fn_hr, _to_digital(ecg[:, _MARGIN:-_MARGIN]), 500)
        if 100 in rates:
            low = resample_poly(ecg, 1, 5, axis=1)
            _write_wfdb(root / fn_lr, _to_digital(low[:, _MARGIN // 5 : -_MARGIN // 5]), 100)
        p = int(patients[k])
        day = int(rec_rng.integers(0, 365 * 15))
        date = pd.Timestamp("1985-01-01") + pd.Timedelta(
            days=day, seconds=int(rec_rng.integers(6 * 3600, 20 * 3600))
        )
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": pat_ids[p],
                "age": pat_age[p],
                "sex": int(pat_sex[p]),
                "height": np.nan,
                "weight": float(rec_rng.integers(50, 110)) if rec_rng.random() < 0.5 else np.nan,
                "nurse": np.nan,
                "site": float(rec_rng.integers(0, 3)),
                "device": "SYNTHETIC",
                "recording_date": date.strftime("%Y-%m-%d %H:%M:%S"),
                "report": ", ".join(_STATEMENTS[c][0] for c in codes),
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
                "strat_fold": fold_of[p],
                "filename_lr": fn_lr,
                "filename_hr": fn_hr,
            }
        )
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    scp_statements_frame().to_csv(root / "scp_statements.csv")
