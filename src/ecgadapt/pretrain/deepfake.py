"""ECGs generated with the MIT-licensed ``deepfake-ecg`` package (optional extra ``ecgadapt[deepfake]``): the
generator, the eight-to-twelve lead derivation, and the chunked fill of a corpus array."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ecgadapt.errors import ConfigError

DEEPFAKE_RATE = 500
DEEPFAKE_LENGTH = 5000
DEEPFAKE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
DEEPFAKE_SCALE_MV = 6.0
"""mV per generator unit: the package's output x 6000 is in microvolts. ``python benchmarks/deepfake_amplitudes.py``
(200 generated ECGs, seed 0, against the 500 records of ../shared/data/ptbxl-500 at 500 Hz) gives a median over
leads of the per-lead median robust peak-to-peak ratio (generated / real) of 0.84 raw and 0.88 after the
0.67-40 Hz band-pass (lead II 0.93 / 0.99; the derived leads III and aVL 0.62-0.73): microvolt scale confirmed,
generated ECGs slightly smaller than real ones."""


def twelve_from_eight(eight: np.ndarray) -> np.ndarray:
    """(..., 8, T) leads I, II, V1-V6 -> (..., 12, T) in LEADS order (III, aVR, aVL, aVF from Einthoven/Goldberger)."""
    lead_i, lead_ii = eight[..., 0, :], eight[..., 1, :]
    limb = np.stack(
        [
            lead_i,
            lead_ii,
            lead_ii - lead_i,
            -(lead_i + lead_ii) / 2,
            lead_i - lead_ii / 2,
            lead_ii - lead_i / 2,
        ],
        axis=-2,
    )
    return np.concatenate([limb, eight[..., 2:, :]], axis=-2).astype(np.float32)


def _deepfake_generator(device: str):
    """The deepfake-ecg Pulse2Pulse generator with its packaged weights (no download)."""
    try:
        import deepfakeecg
        from deepfakeecg import Generator
    except ImportError as err:
        raise ConfigError(
            f"generating ECGs needs the optional deepfake-ecg package ({err}); install it with "
            "pip install 'ecgadapt[deepfake]' (or pip install deepfake-ecg)"
        ) from None
    import warnings

    import torch

    weights = Path(deepfakeecg.__file__).parent / "checkpoints" / "g_stat.pt"
    if not weights.is_file():
        raise ConfigError(
            f"deepfake-ecg is installed but its packaged weights {weights} are missing; reinstall it"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the package calls a deprecated init function
        net = Generator()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state["stat_dict"] if "stat_dict" in state else state)
    return net.to(device).eval()


def deepfake_fill(
    n: int, seed: int, rate: int, chunk_size: int, device: str, progress: bool
) -> tuple[int, Callable[[np.ndarray], None]]:
    """Samples per ECG at ``rate`` and a function that fills an (n, 12, samples) array with ``n`` generated ECGs
    (leads I, II, V1-V6 at 500 Hz from seeded uniform noise, the other limb leads derived, then resampled)."""
    import torch
    from tqdm.auto import tqdm

    from ecgadapt.data.transforms import Resample

    net = _deepfake_generator(device)
    resample = Resample(DEEPFAKE_RATE, rate)
    length = len(resample(np.zeros((1, DEEPFAKE_LENGTH), dtype=np.float32))[0])
    noise_rng = torch.Generator().manual_seed(int(seed))

    def fill(signals: np.ndarray) -> None:
        with tqdm(
            total=n, desc="generate deepfake ECGs", unit="ECG", disable=not progress, leave=False
        ) as bar:
            for start in range(0, n, chunk_size):
                b = min(chunk_size, n - start)
                noise = torch.rand(b, len(DEEPFAKE_LEADS), DEEPFAKE_LENGTH, generator=noise_rng) * 2 - 1
                with torch.no_grad():
                    out = net(noise.to(device)).float().cpu().numpy() * DEEPFAKE_SCALE_MV
                signals[start : start + b] = resample(twelve_from_eight(out))
                bar.update(b)

    return length, fill
