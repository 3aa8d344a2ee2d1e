"""The synthetic ECG's signal model: Gaussian waves of a 3-D heart vector, projected onto the 12 leads.

See :mod:`ecgadapt.data.synthetic` for the model and the labels it follows.
"""

from __future__ import annotations

import numpy as np

DURATION_S = 10.0
BASE_RATE = 500
MARGIN = 100  # extra samples at 500 Hz on each side, dropped after decimation (multiple of 5)


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

    n_total = int(DURATION_S * fs) + 2 * MARGIN
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
