"""Figures for a pretrained encoder's model card: the loss curve, and a held-out ECG with its masked patches rebuilt.

    python benchmarks/model_card_figures.py --run RUN_DIR --out src/ecgadapt/weights

``RUN_DIR`` is an ``ecgadapt pretrain`` run. The script writes ``<model>_loss.png`` and ``<model>_reconstruction.png``:
- the loss curve shows the masked-patch (ViT) or masked-segment (CNN) loss on the training batches, on the held-out
  part of each corpus (generated, synthetic, real: a run with several corpora logs each), and on real PTB-XL records
  never trained on where the run measured them;
- the reconstruction shows one real PTB-XL record of the test fold (10), never seen in pretraining, with the run's
  mask ratio of its patches (segments) masked: the input in black, the decoder's prediction of each masked one in
  red. Predictions are per-patch normalised; like MAE's figures, they are drawn with the true patch's mean and std.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from matplotlib.figure import Figure

from ecgadapt.constants import LEADS
from ecgadapt.data.ptbxl import read_database, read_record, record_base
from ecgadapt.data.transforms import build_transforms
from ecgadapt.models import model_info
from ecgadapt.paths import shared_dir
from ecgadapt.pretrain.config import OBJECTIVES, PretrainConfig
from ecgadapt.pretrain.folds import format_folds
from ecgadapt.pretrain.pretrain import build_encoder, build_masked_model

ORIGIN_LABELS = {
    "generated": "held-out generated ECGs",
    "synthetic": "held-out synthetic ECGs",
    "real": "held-out real ECGs (ptbxl-unlabelled-1785)",
}
ORIGIN_COLOURS = {"generated": "tab:blue", "synthetic": "tab:green", "real": "tab:purple"}


def real_corpus_label(cfg: PretrainConfig) -> str:
    """``held-out real ECGs (ptbxl-2285, folds 1-8)``: the held-out real line's label, from the run's corpora."""
    names = []
    for corpus in cfg.corpora:
        path = Path(str(corpus).removeprefix("npy:").split("@")[0])
        names.append(path.parent.name if path.suffix == ".npy" else path.name)
    real = [n for n in names if n.startswith("ptbxl")] or names
    folds = f", folds {format_folds(cfg.corpus_folds)}" if cfg.corpus_folds else ""
    return f"held-out real ECGs ({', '.join(real)}{folds})"


def loss_figure(
    metrics: pd.DataFrame,
    steps_per_epoch: int,
    title: str,
    unit: str = "patch",
    real_label: str | None = None,
) -> Figure:
    """Masked-patch (or -segment) loss against optimiser steps: train, held-out per corpus origin, real PTB-XL."""
    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.add_subplot()
    steps = metrics["epoch"] * steps_per_epoch
    by_origin = [
        o for o in ORIGIN_LABELS if metrics.get(f"val_loss_{o}", pd.Series(dtype=float)).notna().any()
    ]
    ax.plot(
        steps,
        metrics["train_loss"],
        label="train batches" + (" (generated)" if not by_origin else ""),
        color="0.5",
    )
    if by_origin:
        for origin in by_origin:
            ax.plot(
                steps,
                metrics[f"val_loss_{origin}"],
                label=real_label if origin == "real" and real_label else ORIGIN_LABELS[origin],
                color=ORIGIN_COLOURS[origin],
                marker="o",
                ms=3,
            )
    else:
        ax.plot(
            steps, metrics["val_loss"], label="held-out generated ECGs", color="tab:blue", marker="o", ms=3
        )
    if metrics["real_val_loss"].notna().any():
        ax.plot(
            steps,
            metrics["real_val_loss"],
            label="real PTB-XL records (never trained on)",
            color="tab:red",
            marker="o",
            ms=3,
        )
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label=f"predicting each {unit}'s mean (loss 1)")
    ax.set(xlabel="optimiser steps", ylabel=f"masked-{unit} MSE (per-{unit} normalised)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reconstruction_figure(out: dict, rate: int, title: str) -> Figure:
    """Twelve leads of one ECG: input, masked regions shaded, masked patches predicted."""
    x = out["input"][0].numpy()
    recon = out["reconstruction"][0].numpy()
    mask = out["mask"][0].numpy()
    n_leads, length = x.shape
    patch = length // mask.shape[1]
    t = np.arange(length) / rate
    fig = Figure(figsize=(10, 12), dpi=100)
    axes = fig.subplots(n_leads, 1, sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(t, x[i], color="k", lw=0.8)
        for j in np.flatnonzero(mask[i]):
            sl = slice(j * patch, (j + 1) * patch)
            ax.axvspan(t[sl][0], t[sl][-1], color="0.9")
            ax.plot(t[sl], recon[i, sl], color="tab:red", lw=0.9)
        ax.set_ylabel(LEADS[i], rotation=0, labelpad=14)
        ax.set_yticks([])
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main() -> None:
    """Write both figures for the pretraining run ``--run``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="ecgadapt pretrain run directory")
    parser.add_argument("--out", default="src/ecgadapt/weights")
    parser.add_argument(
        "--real", default=str(shared_dir() / "data" / "ptbxl-500"), help="PTB-XL-layout folder"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask")
    parser.add_argument(
        "--name", default=None, help="the model name in the titles and file names (default: the run's model)"
    )
    args = parser.parse_args()

    run, out = Path(args.run), Path(args.out)
    cfg = PretrainConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    metrics = pd.read_csv(run / "metrics.csv")
    name = args.name or cfg.model
    final = json.loads((run / "final.json").read_text()) if (run / "final.json").is_file() else {}
    steps = final.get("steps_per_epoch") or cfg.steps_per_epoch or 1
    objective = OBJECTIVES[model_info(cfg.model).family]
    unit, plural = ("segment", "segments") if objective == "masked-segment" else ("patch", "patches")
    title = f"{name}: {objective} pretraining ({len(metrics)} epochs x {steps} steps)"
    loss_figure(metrics, steps, title, unit, real_corpus_label(cfg)).savefig(out / f"{name}_loss.png")

    model = build_masked_model(cfg, build_encoder(cfg))
    model.load_state_dict(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"])
    spec = model.encoder.input_spec
    database = read_database(args.real)
    ecg_id = int(database.index[database["strat_fold"] == 10][0])
    signal = read_record(record_base(args.real, database, ecg_id, spec.sampling_rate), spec.sampling_rate)
    x = build_transforms(spec, spec.sampling_rate, train=False)(signal)
    with torch.no_grad():
        rebuilt = model.reconstruct(torch.from_numpy(x)[None], seed=args.seed)
    title = f"PTB-XL ecg_id {ecg_id} (test fold, never seen): {cfg.mask_ratio:.0%} of {plural} masked, red = predicted"
    reconstruction_figure(rebuilt, spec.sampling_rate, title).savefig(out / f"{name}_reconstruction.png")
    print(f"wrote {out / f'{name}_loss.png'} and {out / f'{name}_reconstruction.png'}")


if __name__ == "__main__":
    main()
