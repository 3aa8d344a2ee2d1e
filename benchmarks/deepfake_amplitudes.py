"""Check deepfake-ecg amplitudes against real PTB-XL: per-lead amplitude statistics of both, side by side.

Usage: python benchmarks/deepfake_amplitudes.py [--n 200] [--seed 0] [--ptbxl ../shared/data/ptbxl-500]
Generates --n ECGs (500 Hz, scaled by ecgadapt.pretrain.deepfake.DEEPFAKE_SCALE_MV, i.e. generator output x 6000
read as microvolts) and reads the PTB-XL records at 500 Hz, then prints, per lead, the median over records of
the standard deviation and of the robust peak-to-peak range (99.5th - 0.5th percentile), in mV, raw and after
the 0.67-40 Hz band-pass the models use, and the deepfake / PTB-XL ratio of each.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ecgadapt.constants import LEADS
from ecgadapt.data.transforms import BandPass
from ecgadapt.paths import shared_dir
from ecgadapt.pretrain.corpus import generate_deepfake_corpus, open_corpus
from ecgadapt.pretrain.deepfake import DEEPFAKE_SCALE_MV


def lead_stats(signals: np.ndarray, band_pass: bool) -> dict[str, np.ndarray]:
    """Per-lead medians over records of std and robust peak-to-peak (mV)."""
    filt = BandPass(500, 0.67, 40.0)
    stds, p2ps = [], []
    for x in signals:
        x = filt(np.asarray(x)) if band_pass else np.asarray(x, dtype=np.float64)
        stds.append(x.std(axis=-1))
        p2ps.append(np.percentile(x, 99.5, axis=-1) - np.percentile(x, 0.5, axis=-1))
    return {"std": np.median(stds, axis=0), "p2p": np.median(p2ps, axis=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ptbxl", type=Path, default=shared_dir() / "data" / "ptbxl-500")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fake = open_corpus(
            generate_deepfake_corpus(Path(tmp) / "fake", args.n, seed=args.seed, rate=500), rate=500
        )
        real = open_corpus(args.ptbxl, rate=500, cache_dir=tmp)
        print(
            f"deepfake-ecg: {len(fake)} ECGs (seed {args.seed}, scale {DEEPFAKE_SCALE_MV} mV per unit); "
            f"PTB-XL: {len(real)} records from {args.ptbxl}"
        )
        for band_pass in (False, True):
            f, r = lead_stats(fake.signals, band_pass), lead_stats(real.signals, band_pass)
            print(f"\n{'band-passed 0.67-40 Hz' if band_pass else 'raw'} (medians over records, mV)")
            print("| lead | std fake | std PTB-XL | ratio | p2p fake | p2p PTB-XL | ratio |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for i, lead in enumerate(LEADS):
                print(
                    f"| {lead} | {f['std'][i]:.3f} | {r['std'][i]:.3f} | {f['std'][i] / r['std'][i]:.2f} "
                    f"| {f['p2p'][i]:.3f} | {r['p2p'][i]:.3f} | {f['p2p'][i] / r['p2p'][i]:.2f} |"
                )
            ratio = np.median(f["p2p"] / r["p2p"])
            print(f"median over leads of the p2p ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
