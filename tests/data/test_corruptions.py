"""Corruptions: identity at severity 0, seeded, SNRs as stated, each one doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

from ecgadapt.constants import LEADS
from ecgadapt.data.corruptions import (
    CORRUPTIONS,
    LIMB_LEADS,
    corrupt,
    corruption_rng,
    parse_selection,
    snr_db,
)
from ecgadapt.errors import ConfigError, DataError

RATE = 100.0


@pytest.fixture(scope="module")
def record() -> np.ndarray:
    """A 10 s, 12-lead, ECG-like record at 100 Hz (mV), every lead different and non-flat."""
    t = np.arange(1000) / RATE
    beats = np.exp(-(((t % 0.8) - 0.3) ** 2) / 0.0005)
    rng = np.random.default_rng(0)
    return np.stack(
        [(0.5 + 0.1 * i) * beats + 0.05 * np.sin(2 * np.pi * 1.3 * t + i) for i in range(12)]
    ).astype(np.float32) + 0.01 * rng.standard_normal((12, 1000)).astype(np.float32)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_zero_is_the_identity(record, name):
    out = corrupt(record, name, 0, RATE, np.random.default_rng(1))
    np.testing.assert_array_equal(out, record)
    assert out.dtype == record.dtype


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_severity_changes_the_record_reproducibly_and_never_in_place(record, name):
    before = record.copy()
    for severity in CORRUPTIONS[name].severities[1:]:
        a = corrupt(record, name, severity, RATE, corruption_rng(0, name, severity, 17))
        b = corrupt(record, name, severity, RATE, corruption_rng(0, name, severity, 17))
        c = corrupt(record, name, severity, RATE, corruption_rng(1, name, severity, 17))
        assert a.shape == record.shape and a.dtype == record.dtype and np.isfinite(a).all()
        assert not np.array_equal(a, record), (name, severity)
        np.testing.assert_array_equal(a, b)
        if name not in ("lead_sets", "time_shift"):  # deterministic, or random in direction only
            assert not np.array_equal(a, c), (name, severity)
    np.testing.assert_array_equal(record, before)


@pytest.mark.parametrize("name", ["gaussian_noise", "electrode_motion"])
def test_snr_is_what_it_says(record, name):
    c = CORRUPTIONS[name]
    for severity, snr in zip(c.severities[1:], c.parameters):
        out = corrupt(record.astype(np.float64), name, severity, RATE, corruption_rng(0, name, severity, 3))
        np.testing.assert_allclose(snr_db(record.astype(np.float64), out), snr, atol=1e-6)
        assert c.level(severity) == f"SNR {snr:g} dB"


def test_electrode_motion_is_low_frequency_and_gaussian_is_white(record):
    x = record.astype(np.float64)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / RATE)
    for name, expect_low in (("electrode_motion", True), ("gaussian_noise", False)):
        noise = corrupt(x, name, 3, RATE, corruption_rng(0, name, 3, 3)) - x
        power = np.abs(np.fft.rfft(noise, axis=-1)) ** 2
        share_below_10 = power[:, freqs <= 10].sum() / power.sum()
        assert (share_below_10 > 0.9) if expect_low else (share_below_10 < 0.4), (name, share_below_10)


def test_powerline_baseline_amplitude_and_shift(record):
    x = record.astype(np.float64)
    long = np.repeat(x, 5, axis=-1)  # the same record "at 500 Hz"
    freqs = np.fft.rfftfreq(long.shape[-1], 1 / 500.0)
    for name, hz in (("powerline_50hz", 50.0), ("powerline_60hz", 60.0)):
        added = corrupt(long, name, 3, 500.0, corruption_rng(0, name, 3, 1)) - long
        assert (freqs[np.abs(np.fft.rfft(added, axis=-1)).argmax(axis=-1)] == hz).all()
        np.testing.assert_allclose(np.abs(added).max(axis=-1), 0.2, atol=0.01)  # severity 3: 0.2 mV
    wander = corrupt(x, "baseline_wander", 4, RATE, corruption_rng(0, "b", 4, 1)) - x
    np.testing.assert_allclose(np.abs(wander).max(axis=-1), 1.0, atol=1e-6)  # severity 4: 1 mV peak
    power = np.abs(np.fft.rfft(wander, axis=-1)) ** 2
    assert power[:, np.fft.rfftfreq(1000, 1 / RATE) <= 0.6].sum() / power.sum() > 0.9
    gain = corrupt(x, "amplitude_scaling", 3, RATE, corruption_rng(0, "a", 3, 1)) / np.where(x == 0, 1, x)
    per_lead = gain[:, 10]
    assert ((per_lead >= 0.5 - 1e-9) & (per_lead <= 2 + 1e-9)).all() and np.ptp(per_lead) > 0
    np.testing.assert_allclose(gain, per_lead[:, None] * np.ones_like(gain), rtol=1e-6, atol=1e-6)
    shifted = corrupt(x, "time_shift", 3, RATE, corruption_rng(0, "t", 3, 1))  # 1 s = 100 samples
    assert np.array_equal(shifted[:, 100:], x[:, :-100]) or np.array_equal(shifted[:, :-100], x[:, 100:])


def test_missing_leads(record):
    z = corrupt(record, "zeroed_leads", 2, RATE, corruption_rng(0, "z", 2, 1))
    zero = ~z.any(axis=-1)
    assert zero.sum() == 2 and np.array_equal(z[~zero], record[~zero])
    for severity, kept in zip((1, 2, 3), (LIMB_LEADS, ("I", "II"), ("II",))):
        out = corrupt(record, "lead_sets", severity, RATE, corruption_rng(0, "l", severity, 1))
        idx = [LEADS.index(n) for n in kept]
        np.testing.assert_array_equal(out[idx], record[idx])
        assert not np.delete(out, idx, axis=0).any()


def test_bad_names_severities_and_shapes_are_refused(record):
    with pytest.raises(ConfigError, match="unknown corruption 'snow'"):
        corrupt(record, "snow", 1, RATE, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="severities 0-3"):
        corrupt(record, "lead_sets", 4, RATE, np.random.default_rng(0))
    with pytest.raises(DataError, match="12, samples"):
        corrupt(record[:6], "gaussian_noise", 1, RATE, np.random.default_rng(0))
    assert parse_selection(["lead_sets", "gaussian_noise"], [1, 5]) == [
        ("lead_sets", [1]),
        ("gaussian_noise", [1, 5]),
    ]
    with pytest.raises(ConfigError, match="severities 0-3"):
        parse_selection(["lead_sets"], [5])
