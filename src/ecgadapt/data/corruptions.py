"""Controlled, seeded corruptions of 12-lead records, for robustness to distribution shift.

Every corruption maps a record ``x`` of shape (12, T) in mV (leads in :data:`ecgadapt.LEADS` order) at
``rate`` Hz to a corrupted copy; randomness comes only from the ``rng`` given. Each is graded by an integer
**severity**: 0 is the identity (the record is returned unchanged), 1..5 (1..3 for the reduced lead sets) grow
worse; :data:`CORRUPTIONS` holds each one's parameter per severity and its unit.

* ``gaussian_noise``: white noise at an SNR of 24, 18, 12, 6, 0 dB.
* ``electrode_motion``: electrode-motion-like noise at the same SNRs: 0.5-10 Hz band-limited noise under a
  random burst envelope, plus baseline steps at the burst onsets (the character of the MIT-BIH Noise Stress
  Test Database's ``em`` record, synthesised rather than read).
* SNR is per lead: ``10 log10(signal power / noise power)`` with powers the mean square of the mean-removed
  signal and of the added noise; the noise is scaled to meet it exactly (a flat lead gets no noise).
* ``baseline_wander``: a sum of three sinusoids at 0.05-0.5 Hz (random phases) of peak amplitude
  0.1, 0.25, 0.5, 1, 2 mV.
* ``powerline_50hz`` / ``powerline_60hz``: a sinusoid at 50 / 60 Hz (random phase per lead) of amplitude 0.05,
  0.1, 0.2, 0.5, 1 mV. At a rate below twice the mains frequency it is added as the samples would show it
  (aliased: 60 Hz appears at 40 Hz at 100 Hz sampling) -- what a recorder without an anti-aliasing filter sees.
* ``amplitude_scaling``: each lead multiplied by a gain drawn log-uniformly in ``[1/g, g]``, g = 1.25, 1.5,
  2, 3, 4 (per-lead standardisation in a model's preprocessing undoes most of it, by design).
* ``time_shift``: the record delayed or advanced (random sign) by 0.25, 0.5, 1, 2, 4 s, the gap filled with
  the edge sample.
* ``zeroed_leads``: 1, 2, 4, 6, 9 randomly chosen leads set to zero.
* ``lead_sets``: only the six limb leads (I, II, III, aVR, aVL, aVF), then I + II, then lead II alone are
  kept; the other leads are zero.

Pure numpy.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError, DataError

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "add_noise_at_snr",
    "corrupt",
    "corruption_rng",
    "get_corruption",
    "snr_db",
]

LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
LEAD_SETS = (LIMB_LEADS, ("I", "II"), ("II",))
LEAD_SET_NAMES = ("six limb leads", "I + II", "II alone")


def _power(x: np.ndarray) -> np.ndarray:
    """Mean square of the mean-removed signal per lead (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return np.mean((x - x.mean(axis=-1, keepdims=True)) ** 2, axis=-1)


def snr_db(clean: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """Per-lead SNR in dB of ``corrupted`` against ``clean``: ``10 log10(P(clean) / P(corrupted - clean))``."""
    noise = np.asarray(corrupted, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(_power(clean) / np.mean(noise**2, axis=-1))


def add_noise_at_snr(x: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``x`` plus ``noise`` (zero-mean, per lead) scaled so that each lead's SNR is exactly ``snr`` dB."""
    noise = np.asarray(noise, dtype=np.float64)
    noise = noise - noise.mean(axis=-1, keepdims=True)
    p_noise = np.mean(noise**2, axis=-1)
    target = _power(x) / 10 ** (snr / 10)
    scale = np.sqrt(np.divide(target, p_noise, out=np.zeros_like(target), where=p_noise > 0))
    return (x + scale[:, None] * noise).astype(x.dtype)


def _band_noise(
    rng: np.random.Generator, shape: tuple[int, int], rate: float, low: float, high: float
) -> np.ndarray:
    """White noise restricted to ``[low, high]`` Hz (FFT mask)."""
    spec = np.fft.rfft(rng.standard_normal(shape), axis=-1)
    freqs = np.fft.rfftfreq(shape[-1], d=1.0 / rate)
    spec[:, (freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spec, n=shape[-1], axis=-1)


def gaussian_noise(x: np.ndarray, snr: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr`` dB per lead."""
    return add_noise_at_snr(x, rng.standard_normal(x.shape), snr)


def electrode_motion(x: np.ndarray, snr: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Electrode-motion-like noise at ``snr`` dB per lead: bursts of 0.5-10 Hz noise with baseline steps."""
    n = x.shape[-1]
    t = np.arange(n) / rate
    envelope = np.full(n, 0.15)
    steps = np.zeros(x.shape)
    for _ in range(max(1, int(round(n / rate / 4)))):  # about one burst per 4 s
        start, width = rng.uniform(0, t[-1] if n > 1 else 1.0), rng.uniform(0.3, 1.5)
        envelope += np.exp(-0.5 * ((t - start - width / 2) / (width / 3)) ** 2)
        steps += (t >= start)[None, :] * rng.normal(0.0, 1.0, size=(x.shape[0], 1))
    noise = _band_noise(rng, x.shape, rate, 0.5, min(10.0, rate / 2)) * envelope
    noise = noise / (noise.std() + 1e-12) + 0.5 * steps
    return add_noise_at_snr(x, noise, snr)


def baseline_wander(x: np.ndarray, amplitude: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Three low-frequency sinusoids (0.05-0.5 Hz), summed and scaled to a peak of ``amplitude`` mV, per lead."""
    t = np.arange(x.shape[-1]) / rate
    freqs = rng.uniform(0.05, 0.5, size=(x.shape[0], 3, 1))
    phases = rng.uniform(0, 2 * np.pi, size=(x.shape[0], 3, 1))
    wander = np.sin(2 * np.pi * freqs * t + phases).sum(axis=1)
    peak = np.abs(wander).max(axis=-1, keepdims=True)
    return (x + amplitude * wander / np.where(peak > 0, peak, 1.0)).astype(x.dtype)


def _powerline(frequency: float) -> Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]:
    def powerline(x: np.ndarray, amplitude: float, rate: float, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(x.shape[-1]) / rate
        phases = rng.uniform(0, 2 * np.pi, size=(x.shape[0], 1))
        return (x + amplitude * np.sin(2 * np.pi * frequency * t + phases)).astype(x.dtype)

    powerline.__doc__ = f"A {frequency:g} Hz sinusoid of ``amplitude`` mV, random phase per lead."
    return powerline


def amplitude_scaling(x: np.ndarray, gain: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Each lead times a gain drawn log-uniformly in ``[1/gain, gain]``."""
    g = np.exp(rng.uniform(-np.log(gain), np.log(gain), size=(x.shape[0], 1)))
    return (x * g).astype(x.dtype)


def time_shift(x: np.ndarray, seconds: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """The record shifted by ``seconds`` (random direction), the gap filled with the edge sample."""
    k = min(int(round(seconds * rate)), x.shape[-1] - 1)
    if k <= 0:
        return x.copy()
    if rng.random() < 0.5:  # delayed: the start repeats
        return np.concatenate([np.repeat(x[:, :1], k, axis=-1), x[:, :-k]], axis=-1)
    return np.concatenate([x[:, k:], np.repeat(x[:, -1:], k, axis=-1)], axis=-1)


def zeroed_leads(x: np.ndarray, n_leads: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``n_leads`` randomly chosen leads set to zero."""
    out = x.copy()
    out[rng.choice(x.shape[0], size=min(int(n_leads), x.shape[0]), replace=False)] = 0
    return out


def lead_sets(x: np.ndarray, which: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Only the leads of :data:`LEAD_SETS` ``[which - 1]`` kept, the others zero."""
    keep = [LEADS.index(name) for name in LEAD_SETS[int(which) - 1]]
    out = np.zeros_like(x)
    out[keep] = x[keep]
    return out


@dataclass(frozen=True)
class Corruption:
    """A corruption: ``fn(x, parameter, rate, rng)`` and its parameter at severities 1, 2, ... (0 = identity)."""

    name: str
    fn: Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]
    parameters: tuple[float, ...]
    unit: str

    @property
    def severities(self) -> tuple[int, ...]:
        """The severities, 0 (identity) included."""
        return tuple(range(len(self.parameters) + 1))

    def level(self, severity: int) -> str:
        """A readable label of ``severity`` (e.g. ``SNR 12 dB``)."""
        if severity == 0:
            return "clean"
        p = self.parameters[severity - 1]
        if self.name == "lead_sets":
            return LEAD_SET_NAMES[int(p) - 1]
        return self.unit.format(p)


_SNRS = (24.0, 18.0, 12.0, 6.0, 0.0)
CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", gaussian_noise, _SNRS, "SNR {:g} dB"),
        Corruption("electrode_motion", electrode_motion, _SNRS, "SNR {:g} dB"),
        Corruption("baseline_wander", baseline_wander, (0.1, 0.25, 0.5, 1.0, 2.0), "{:g} mV"),
        Corruption("powerline_50hz", _powerline(50.0), (0.05, 0.1, 0.2, 0.5, 1.0), "{:g} mV"),
        Corruption("powerline_60hz", _powerline(60.0), (0.05, 0.1, 0.2, 0.5, 1.0), "{:g} mV"),
        Corruption("amplitude_scaling", amplitude_scaling, (1.25, 1.5, 2.0, 3.0, 4.0), "gain x/÷ {:g}"),
        Corruption("time_shift", time_shift, (0.25, 0.5, 1.0, 2.0, 4.0), "{:g} s"),
        Corruption("zeroed_leads", zeroed_leads, (1, 2, 4, 6, 9), "{:g} leads zeroed"),
        Corruption("lead_sets", lead_sets, (1, 2, 3), "{:g}"),
    )
}


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name`` (a clear error listing the names otherwise)."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def corruption_rng(seed: int, name: str, severity: int, record: int) -> np.random.Generator:
    """The generator of one (corruption, severity, record): the same numbers on every rerun, in any order."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(severity), int(record)])


def corrupt(x: np.ndarray, name: str, severity: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` (12, T) under corruption ``name`` at ``severity`` (0: ``x`` itself, unchanged)."""
    c = get_corruption(name)
    if severity not in c.severities:
        raise ConfigError(
            f"corruption {name!r} has severities {c.severities[0]}-{c.severities[-1]}, not {severity!r}"
        )
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise DataError(
            f"corruptions need a (12, samples) record in the order {', '.join(LEADS)}, got {x.shape}"
        )
    if severity == 0:
        return x
    return c.fn(x, c.parameters[severity - 1], float(rate), rng)


def parse_selection(
    names: Sequence[str] | None, severities: Sequence[int] | None
) -> list[tuple[str, list[int]]]:
    """``[(corruption, [severities >= 1])]`` for the given names (default all) and severities (default all)."""
    chosen = list(names) if names else list(CORRUPTIONS)
    out = []
    for name in chosen:
        c = get_corruption(name)
        levels = [s for s in c.severities[1:] if severities is None or s in severities]
        if severities is not None:
            bad = [s for s in severities if s not in c.severities]
            if bad and len(chosen) == 1:
                raise ConfigError(f"corruption {name!r} has severities 0-{c.severities[-1]}, not {bad}")
        out.append((name, levels))
    return out
