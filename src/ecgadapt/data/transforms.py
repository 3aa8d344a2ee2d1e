"""Composable ECG transforms on ``np.ndarray`` of shape (leads, T), usable inside a torch Dataset.

Every transform takes and returns a float32 array; :func:`build_transforms` turns a model's
:class:`~ecgadapt.models.base.InputSpec` into the matching pipeline
(select leads -> resample -> band-pass -> normalise -> crop / windows -> flatten).
Random choices use torch's RNG so that DataLoader worker seeding covers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import butter, resample_poly, sosfiltfilt

from ecgadapt.constants import LEADS
from ecgadapt.errors import ConfigError

__all__ = [
    "Compose",
    "SelectLeads",
    "Resample",
    "BandPass",
    "Standardize",
    "MinMax",
    "RandomCrop",
    "CenterCrop",
    "FixedWindows",
    "FlattenLeads",
    "ToFloat32",
    "build_transforms",
]

Transform = Callable[[np.ndarray], np.ndarray]


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"

    def split_deterministic(self) -> tuple[Compose, Compose]:
        """``(prefix, rest)``: the leading steps that give the same output for the same input every time (whose
        output a dataset may therefore remember), and the steps after them."""
        k = 0
        while k < len(self.transforms) and getattr(self.transforms[k], "deterministic", False):
            k += 1
        return Compose(self.transforms[:k]), Compose(self.transforms[k:])


class SelectLeads:
    """Keep the given lead indices (in that order)."""

    deterministic = True  # same input, same output: Compose.split_deterministic may remember it

    def __init__(self, indices: Sequence[int]):
        self.indices = list(indices)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _f32(x[..., self.indices, :])

    def __repr__(self) -> str:
        return f"SelectLeads({self.indices})"


class Resample:
    """Polyphase resampling along time (:func:`scipy.signal.resample_poly`).

    The rate ratio is reduced to ``up / down`` (e.g. 100->250 is 5/2, 500->250 is 1/2); the Kaiser-window
    FIR filter is anti-aliased and zero-phase. Output length is ``ceil(T * up / down)``.
    """

    deterministic = True  # same input, same output: Compose.split_deterministic may remember it

    def __init__(self, src_rate: float, dst_rate: float):
        if src_rate <= 0 or dst_rate <= 0:
            raise ConfigError(f"Resample rates must be positive, got {src_rate} -> {dst_rate}")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        ratio = Fraction(dst_rate).limit_denominator(1000) / Fraction(src_rate).limit_denominator(1000)
        self.up, self.down = ratio.numerator, ratio.denominator

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.up == self.down:
            return _f32(x)
        y = resample_poly(np.asarray(x, dtype=np.float64), self.up, self.down, axis=-1, padtype="line")
        return _f32(y)

    def __repr__(self) -> str:
        return f"Resample({self.src_rate}, {self.dst_rate})"


class BandPass:
    """Zero-phase Butterworth band-pass (:func:`scipy.signal.sosfiltfilt`).

    ``high`` of None or at / above Nyquist gives a high-pass only; ``low`` of None or <= 0 a low-pass only.
    Records are mirror-padded (``padtype="even"``) by ``rate / low`` samples, so the ends are not distorted
    by a step when the record does not end at its baseline.
    """

    deterministic = True  # same input, same output: Compose.split_deterministic may remember it

    def __init__(self, rate: float, low: float | None = 0.67, high: float | None = 40.0, order: int = 4):
        nyq = rate / 2
        use_low = low is not None and low > 0
        use_high = high is not None and high < nyq
        if use_low and low >= nyq:
            raise ConfigError(f"BandPass low cut {low} Hz must be below Nyquist ({nyq} Hz) at rate {rate}")
        if use_low and use_high and low >= high:
            raise ConfigError(f"BandPass low cut {low} Hz must be below high cut {high} Hz")
        self.rate, self.low, self.high, self.order = rate, low, high, order
        if use_low and use_high:
            self.sos = butter(order, [low, high], btype="bandpass", fs=rate, output="sos")
        elif use_low:
            self.sos = butter(order, low, btype="highpass", fs=rate, output="sos")
        elif use_high:
            self.sos = butter(order, high, btype="lowpass", fs=rate, output="sos")
        else:
            self.sos = None
        # even (mirror) padding of about one high-pass period: no step at the record ends, short edge transients
        self.padlen = 3 * (2 * order + 1)
        if use_low:
            self.padlen = max(self.padlen, int(rate / low))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.sos is None:
            return _f32(x)
        n = x.shape[-1]
        padlen = min(self.padlen, max(n - 1, 0))
        y = sosfiltfilt(self.sos, np.asarray(x, dtype=np.float64), axis=-1, padtype="even", padlen=padlen)
        return _f32(y)

    def __repr__(self) -> str:
        return f"BandPass({self.rate}, low={self.low}, high={self.high}, order={self.order})"


class Standardize:
    """Per-record z-score: per lead (``mode="lead"``) or one mean/std over all leads (``"global"``).

    A lead (or record) with std below ``eps`` becomes zeros.
    """

    deterministic = True  # same input, same output: Compose.split_deterministic may remember it

    def __init__(self, mode: str = "lead", eps: float = 1e-6):
        if mode not in ("lead", "global"):
            raise ConfigError(f"Standardize mode must be 'lead' or 'global', got {mode!r}")
        self.mode, self.eps = mode, eps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        axis = -1 if self.mode == "lead" else (-2, -1)
        mean = x.mean(axis=axis, keepdims=True)
        std = x.std(axis=axis, keepdims=True)
        ok = std >= self.eps
        y = np.where(ok, (x - mean) / np.where(ok, std, 1.0), 0.0)
        return _f32(y)

    def __repr__(self) -> str:
        return f"Standardize(mode={self.mode!r})"


class MinMax:
    """Scale each lead to [-1, 1] (constant leads become zeros)."""

    deterministic = True  # same input, same output: Compose.split_deterministic may remember it

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        lo = x.min(axis=-1, keepdims=True)
        span = x.max(axis=-1, keepdims=True) - lo
        ok = span >= self.eps
        y = np.where(ok, 2.0 * (x - lo) / np.where(ok, span, 1.0) - 1.0, 0.0)
        return _f32(y)

    def __repr__(self) -> str:
        return "MinMax()"


def _pad_right(x: np.ndarray, length: int) -> np.ndarray:
    pad = [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])]
    return np.pad(x, pad)


class _Crop:
    """Window of ``length`` samples starting at ``self._start(n)``; shorter records are zero-padded right."""

    def __init__(self, length: int):
        self.length = int(length)

    def _start(self, n: int) -> int:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        if n <= self.length:
            return _f32(_pad_right(x, self.length))
        start = self._start(n)
        return _f32(x[..., start : start + self.length])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.length})"


class RandomCrop(_Crop):
    """Random window of ``length`` samples (offset from ``torch.randint``); shorter records are zero-padded right."""

    def _start(self, n: int) -> int:
        return int(torch.randint(0, n - self.length + 1, (1,)).item())


class CenterCrop(_Crop):
    """Central window of ``length`` samples; shorter records are zero-padded right."""

    def _start(self, n: int) -> int:
        return (n - self.length) // 2


class FixedWindows:
    """``n_windows`` evenly spaced windows of ``length`` covering the record: (C, T) -> (W, C, length).

    The first window starts at 0 and the last ends at T (one window: the central one). Shorter records are
    zero-padded right and repeated.
    """

    def __init__(self, length: int, n_windows: int):
        if n_windows < 1:
            raise ConfigError(f"FixedWindows needs n_windows >= 1, got {n_windows}")
        self.length, self.n_windows = int(length), int(n_windows)

    def offsets(self, n: int) -> np.ndarray:
        """Start index of every window for a record of ``n`` samples."""
        span = max(n - self.length, 0)
        if self.n_windows == 1:
            return np.array([span // 2])
        return np.round(np.linspace(0, span, self.n_windows)).astype(int)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] < self.length:
            x = _pad_right(x, self.length)
        return _f32(np.stack([x[..., s : s + self.length] for s in self.offsets(x.shape[-1])]))

    def __repr__(self) -> str:
        return f"FixedWindows({self.length}, {self.n_windows})"


class FlattenLeads:
    """Concatenate leads one after another: (..., C, T) -> (..., 1, C * T) (HuBERT-ECG input)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _f32(x.reshape(*x.shape[:-2], 1, x.shape[-2] * x.shape[-1]))

    def __repr__(self) -> str:
        return "FlattenLeads()"


class ToFloat32:
    """Cast to a C-contiguous float32 array."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _f32(x)

    def __repr__(self) -> str:
        return "ToFloat32()"


def _lead_indices(leads: Sequence[str]) -> list[int]:
    upper = [name.upper() for name in LEADS]
    idx = []
    for name in leads:
        if name.upper() not in upper:
            raise ConfigError(f"unknown lead {name!r} in input spec; known leads: {', '.join(LEADS)}")
        idx.append(upper.index(name.upper()))
    return idx


def build_transforms(input_spec, source_rate: int, train: bool, n_eval_windows: int = 1) -> Compose:
    """The preprocessing pipeline for ``input_spec`` (an InputSpec) from records in ``LEADS`` order at ``source_rate``.

    resample to the spec rate -> band-pass -> normalise -> RandomCrop (train) or CenterCrop /
    FixedWindows (eval, ``n_eval_windows`` > 1 gives (W, C, L)) -> flatten leads if the spec says so.
    """
    steps: list[Transform] = []
    idx = _lead_indices(input_spec.leads)
    if idx != list(range(len(LEADS))):
        steps.append(SelectLeads(idx))
    if source_rate != input_spec.sampling_rate:
        steps.append(Resample(source_rate, input_spec.sampling_rate))
    if input_spec.band_pass is not None:
        low, high = input_spec.band_pass
        steps.append(BandPass(input_spec.sampling_rate, low, high))
    norm = input_spec.normalisation
    if norm in ("lead", "global"):
        steps.append(Standardize(norm))
    elif norm == "minmax":
        steps.append(MinMax())
    elif norm != "none":
        raise ConfigError(
            f"unknown normalisation {norm!r} in input spec; use 'lead', 'global', 'minmax' or 'none'"
        )
    if train:
        steps.append(RandomCrop(input_spec.length))
    elif n_eval_windows > 1:
        steps.append(FixedWindows(input_spec.length, n_eval_windows))
    else:
        steps.append(CenterCrop(input_spec.length))
    if input_spec.flatten_leads:
        steps.append(FlattenLeads())
    steps.append(ToFloat32())
    return Compose(steps)
