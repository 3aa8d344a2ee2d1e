"""Real-world WFDB records (headers with ``.mat`` or ``.dat`` signals) read into the model's lead order.

Lead names match case-insensitively and are reordered by name (extra signals are ignored), gains and units
(``mV``, ``uV``, ``V``) come from the header, and other sampling rates are resampled. A record longer than the
cache's window is cut into evenly spaced windows covering it (:func:`read_segments`), as ``predict`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecgadapt.constants import LEADS
from ecgadapt.data.ptbxl import Header, _read_simple, _read_wfdb, read_header
from ecgadapt.data.transforms import CenterCrop, FixedWindows, Resample
from ecgadapt.errors import DataError

UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nv": 1e-6}
RECORD_FIX = "fix the record's files or leave the record out of the source"


def header_units(header: Header) -> list[str]:
    """The unit of each signal in the header (WFDB's default ``mV`` when the gain field gives none)."""
    lines = [ln.strip() for ln in header.path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    units = []
    for ln in lines[1 : 1 + header.n_sig]:
        f = ln.split(maxsplit=8)
        gain = f[2] if len(f) > 2 else ""
        units.append(gain.split("/", 1)[1] if "/" in gain else "mV")
    return units


def header_comments(base: str | os.PathLike) -> list[str]:
    """The ``#`` comment lines of ``<base>.hea`` without the leading ``#``."""
    text = Path(f"{base}.hea").read_text(errors="replace")
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("#")]


def read_dx(base: str | os.PathLike) -> list[str]:
    """The SNOMED-CT codes of the ``# Dx:`` line(s) of a CinC header, in order, without duplicates."""
    codes: list[str] = []
    for comment in header_comments(base):
        key, _, value = comment.partition(":")
        if key.strip().lower() == "dx":
            codes += [c.strip() for c in value.split(",") if c.strip() and c.strip() not in codes]
    return codes


def source_lead_order(header: Header, required: tuple[str, ...] = LEADS) -> np.ndarray:
    """Signal indices that give ``required`` leads, matched by name case-insensitively (DataError otherwise)."""
    upper = [s.strip().upper() for s in header.sig_names]
    bad = [lead for lead in required if upper.count(lead.upper()) != 1]
    if bad:
        raise DataError(
            f"record {header.path.stem}: its leads {list(header.sig_names)} cannot supply the model input "
            f"{list(required)} (missing or repeated: {bad}); header {header.path}. Lead names match "
            "case-insensitively; rename the signals in the header or drop the record"
        )
    return np.array([upper.index(lead.upper()) for lead in required])


def _read_mat(base: Path, header: Header) -> np.ndarray:
    from scipy.io import loadmat

    mat = base.parent / header.files[0]
    try:
        val = np.asarray(loadmat(str(mat))["val"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"record {base.name}: {mat} is not a readable .mat file with a 'val' array ({err})"
        ) from err
    if val.ndim != 2 or val.shape[0] != header.n_sig:
        raise DataError(
            f"record {base.name}: {mat} holds 'val' of shape {val.shape}, header declares {header.n_sig} signals"
        )
    phys = (val - np.asarray(header.baselines, dtype=np.float64)[:, None]) / np.asarray(header.gains)[:, None]
    return phys.T


def read_any_record(base: str | os.PathLike) -> tuple[np.ndarray, float]:
    """One WFDB record (``.mat`` or ``.dat``) as float32 millivolts (12, T) in ``LEADS`` order, and its rate."""
    base = Path(base)
    header = read_header(base, RECORD_FIX)
    order = source_lead_order(header)
    units = header_units(header)
    if header.files[0].lower().endswith(".mat"):
        phys = _read_mat(base, header)
    else:
        phys = (
            _read_simple(base, header, RECORD_FIX) if header.simple else _read_wfdb(base, header, RECORD_FIX)
        )
    scale = []
    for i in order:
        unit = units[i].strip().lower()
        if unit not in UNITS_TO_MV:
            raise DataError(
                f"record {base.name}: lead {header.sig_names[i]} has unit {units[i]!r}; "
                f"use one of mV, uV or V in header {header.path}"
            )
        scale.append(UNITS_TO_MV[unit])
    x = phys[:, order].T * np.asarray(scale)[:, None]
    if not np.isfinite(x).all():
        raise DataError(
            f"record {base.name}: {int((~np.isfinite(x)).sum())} missing (NaN) sample(s) in {base}"
        )
    return np.ascontiguousarray(x, dtype=np.float32), float(header.fs)


def read_window(base: str | os.PathLike, rate: int, n_samples: int) -> np.ndarray:
    """:func:`read_any_record` resampled to ``rate`` and cut to the central ``n_samples`` (zero-padded if shorter)."""
    x, fs = read_any_record(base)
    if abs(fs - rate) > 1e-6:
        x = Resample(fs, rate)(x)
    return CenterCrop(n_samples)(x)


def n_segments(base: str | os.PathLike, rate: int, n_samples: int) -> int:
    """Cache rows of a record (its header's length at ``rate`` over ``n_samples``, rounded up; at least 1)."""
    header = read_header(base, RECORD_FIX)
    length = header.sig_len
    if abs(header.fs - rate) > 1e-6:
        r = Resample(header.fs, rate)
        length = -(-length * r.up // r.down)  # resample_poly's output length
    return max(1, -(-length // n_samples))


def read_segments(base: str | os.PathLike, rate: int, n_samples: int) -> np.ndarray:
    """:func:`read_any_record` at ``rate`` as :func:`n_segments` evenly spaced windows (S, 12, ``n_samples``).

    One segment is :func:`read_window`'s central window; more cover the record from its start to its end.
    """
    x, fs = read_any_record(base)
    if abs(fs - rate) > 1e-6:
        x = Resample(fs, rate)(x)
    return FixedWindows(n_samples, n_segments(base, rate, n_samples))(x)
