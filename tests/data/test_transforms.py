"""ECG transforms: resampling, zero-phase band-pass, normalisation, crops, windows and build_transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgadapt.data.transforms import (
    BandPass,
    CenterCrop,
    Compose,
    FixedWindows,
    FlattenLeads,
    MinMax,
    RandomCrop,
    Resample,
    Standardize,
    build_transforms,
)
from ecgadapt.errors import ConfigError
from ecgadapt.models.base import InputSpec


def _sine(freq: float, rate: int, seconds: float = 10.0, leads: int = 12) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.tile(np.sin(2 * np.pi * freq * t), (leads, 1)).astype(np.float32)


def _dominant_freq(x: np.ndarray, rate: float) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("src,dst", [(100, 250), (500, 250), (100, 500), (500, 100), (250, 250)])
def test_resample_keeps_frequency_and_scales_length(src, dst):
    x = _sine(7.0, src)
    y = Resample(src, dst)(x)
    assert y.shape == (12, 10 * dst)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert _dominant_freq(y[0], dst) == pytest.approx(7.0, abs=0.11)
    mid = slice(dst, -dst)  # away from the edges the values match the analytic sine
    assert np.abs(y[0, mid] - _sine(7.0, dst)[0, mid]).max() < 0.02


def test_bandpass_removes_wander_and_mains_keeps_10hz_without_shift():
    rate = 500
    t = np.arange(10 * rate) / rate
    ten = np.sin(2 * np.pi * 10 * t)
    x = np.tile(ten + 1.5 * np.sin(2 * np.pi * 0.1 * t) + 0.5 * np.sin(2 * np.pi * 60 * t), (12, 1))
    y = BandPass(rate, 0.67, 40.0)(x.astype(np.float32))
    mid = slice(rate, -rate)
    assert np.abs(y[0, mid] - ten[mid]).max() < 0.05
    spec = np.abs(np.fft.rfft(y[0, mid]))
    f = np.fft.rfftfreq(y[0, mid].size, 1 / rate)
    # 60 Hz (input 0.5) kept below 5 % of its amplitude relative to the 10 Hz tone (input 1.0)
    assert spec[np.argmin(np.abs(f - 60))] < 0.05 * 0.5 * spec[np.argmin(np.abs(f - 10))]
    # zero phase: a narrow peak stays where it was
    pulse = np.zeros((1, 2000), dtype=np.float32)
    pulse[0, 1000 - 10 : 1000 + 11] = np.hanning(21)
    z = BandPass(rate, 0.67, 40.0)(pulse)
    assert int(np.argmax(z[0])) == 1000


def test_bandpass_above_nyquist_falls_back_to_high_pass():
    bp = BandPass(100, 0.67, 60.0)
    x = _sine(45.0, 100) + 1.0  # 45 Hz survives, DC goes
    y = bp(x)
    assert np.abs(y[0, 200:-200]).max() > 0.9
    assert abs(y[0, 200:-200].mean()) < 0.02
    with pytest.raises(ConfigError):
        BandPass(100, 60.0, 80.0)


def test_standardize_lead_and_global():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(12, 1000)) * np.arange(1, 13)[:, None] + 5).astype(np.float32)
    x[3] = 2.0  # flat lead
    y = Standardize("lead")(x)
    live = [k for k in range(12) if k != 3]
    np.testing.assert_allclose(y[live].mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(y[live].std(1), 1, atol=1e-4)
    assert np.all(y[3] == 0)
    g = Standardize("global")(x)
    assert abs(g.mean()) < 1e-5 and abs(g.std() - 1) < 1e-4
    assert g[11].std() > g[0].std()  # relative lead scale is kept
    assert np.all(Standardize("global")(np.ones((12, 50), np.float32)) == 0)
    with pytest.raises(ConfigError):
        Standardize("batch")


def test_minmax_per_lead():
    x = np.stack([np.linspace(-3, 9, 100), np.full(100, 4.0)]).astype(np.float32)
    y = MinMax()(x)
    assert y[0].min() == pytest.approx(-1) and y[0].max() == pytest.approx(1)
    assert np.all(y[1] == 0)


def test_random_crop_reproducible_and_varied():
    x = np.arange(1000, dtype=np.float32)[None].repeat(12, 0)
    crop = RandomCrop(250)
    torch.manual_seed(3)
    a = [int(crop(x)[0, 0]) for _ in range(20)]
    torch.manual_seed(3)
    b = [int(crop(x)[0, 0]) for _ in range(20)]
    assert a == b
    assert len(set(a)) > 10
    assert all(0 <= s <= 750 for s in a)
    out = crop(x)
    assert out.shape == (12, 250) and np.all(np.diff(out[0]) == 1)
    short = RandomCrop(1200)(x)
    assert short.shape == (12, 1200) and np.all(short[:, 1000:] == 0) and short[0, 999] == 999


def test_center_crop_and_pad():
    x = np.arange(1000, dtype=np.float32)[None].repeat(2, 0)
    assert CenterCrop(200)(x)[0, 0] == 400
    padded = CenterCrop(1100)(x)
    assert padded.shape == (2, 1100) and padded[0, 0] == 0 and padded[0, 999] == 999 and padded[0, 1050] == 0


def test_fixed_windows_cover_start_and_end():
    x = np.arange(1000, dtype=np.float32)[None].repeat(12, 0)
    w = FixedWindows(300, 4)(x)
    assert w.shape == (4, 12, 300)
    assert w[0, 0, 0] == 0 and w[-1, 0, -1] == 999
    starts = w[:, 0, 0]
    assert np.all(np.diff(starts) > 0)
    assert FixedWindows(300, 1)(x)[0, 0, 0] == 350
    assert FixedWindows(1200, 3)(x).shape == (3, 12, 1200)


def test_flatten_leads_lead_after_lead():
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    y = FlattenLeads()(x)
    assert y.shape == (1, 24) and np.array_equal(y[0], np.arange(24))
    assert FlattenLeads()(np.zeros((3, 12, 5), np.float32)).shape == (3, 1, 60)


def test_compose_runs_in_order():
    x = np.arange(1000, dtype=np.float32)[None].repeat(12, 0)
    y = Compose([CenterCrop(10), MinMax()])(x)
    assert y.shape == (12, 10) and y.min() == -1 and y.max() == 1


@pytest.mark.parametrize(
    "spec,train,windows,shape",
    [
        (InputSpec(sampling_rate=250, length=2250), True, 1, (12, 2250)),
        (InputSpec(sampling_rate=250, length=2250), False, 3, (3, 12, 2250)),
        (InputSpec(sampling_rate=500, length=5000, normalisation="global"), False, 1, (12, 5000)),
        (
            InputSpec(
                sampling_rate=100, length=500, normalisation="minmax", band_pass=None, flatten_leads=True
            ),
            False,
            1,
            (1, 6000),
        ),
        (
            InputSpec(sampling_rate=100, length=500, normalisation="none", flatten_leads=True),
            False,
            2,
            (2, 1, 6000),
        ),
        (InputSpec(sampling_rate=500, length=1000, leads=("I", "II", "V1")), True, 1, (3, 1000)),
    ],
)
def test_build_transforms_shapes(spec, train, windows, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 1000)).astype(np.float32)  # 10 s at 100 Hz
    y = build_transforms(spec, source_rate=100, train=train, n_eval_windows=windows)(x)
    assert y.shape == shape
    assert y.dtype == np.float32 and y.flags.c_contiguous


def test_build_transforms_normalises_and_selects_leads():
    x = np.random.default_rng(1).normal(size=(12, 5000)).astype(np.float32) * 3 + 1
    x[6] += 100.0  # V1 marker survives selection as a distinct lead before normalisation
    spec = InputSpec(sampling_rate=500, length=5000, leads=("V1", "I"), band_pass=None)
    pipe = build_transforms(spec, source_rate=500, train=False)
    y = pipe(x)
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(1), 1, atol=1e-3)
    raw = build_transforms(
        InputSpec(500, 5000, leads=("V1", "I"), normalisation="none", band_pass=None), 500, False
    )(x)
    assert raw[0].mean() > 90 and abs(raw[1].mean() - 1) < 0.2
    with pytest.raises(ConfigError):
        build_transforms(InputSpec(500, 5000, normalisation="zscore"), 500, False)
    with pytest.raises(ConfigError):
        build_transforms(InputSpec(500, 5000, leads=("X1",)), 500, False)
