"""Pretrain the encoder candidates of issue 12 and select between them on fold 9 of ptbxl-500 only.

Candidates (each pretrained on the same weighted mixture of corpora, each with its own objective):

- ``vit_p50``: ``ecg_vit_tiny_p50`` (0.5 s tokens), masked ECG modelling (75% of the (lead, patch) tokens);
- ``cnn``: ``xresnet1d_tiny``, masked-segment reconstruction (50% of the 0.25 s (lead, segment) tokens);
- ``vit``: ``ecg_vit_tiny`` (1.25 s tokens, today's architecture) on the same corpora, as the reference.

Corpora: ``deepfake:N:0`` (generated), ecgadapt's synthetic generator (seed 7) and the real, unlabelled,
per-lead z-scored ``ptbxl-unlabelled-1785`` array (``npy:``), mixed by ``--weights``. The real records come from
the full PTB-XL and may include some of its fold 10; no ptbxl-500 record is among them.

Selection: a linear probe (logistic regression on the frozen, pooled features) trained on folds 1-8 of
``ptbxl-500`` and scored on fold 9 (macro AUROC and AUPRC, superdiagnostic and rhythm), beside the same probe on
the architecture's random initialisation (the control: what pretraining adds). Fold 10 is never read.

Reproducible: every RNG is seeded from ``--seed``, data loading is single-process and torch uses
``--threads`` threads, so a rerun with the same arguments writes the same ``encoder.safetensors`` on the same
hardware (``selection.json`` records its SHA-256 and every setting). Usage (a short trial)::

    nice -n 10 python benchmarks/pretrain_candidates.py --out runs/candidates-trial --candidates cnn vit_p50 \
        --deepfake 2000 --synthetic 2000 --epochs 2 --steps-per-epoch 40
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.synthetic import write_synthetic_ptbxl
from ecgadapt.data.transforms import build_transforms
from ecgadapt.eval.metrics import macro_auprc, macro_auroc
from ecgadapt.models import create_model
from ecgadapt.paths import shared_dir
from ecgadapt.pretrain.config import PretrainConfig
from ecgadapt.pretrain.pretrain import ENCODER_FILE, run_pretrain
from ecgadapt.runs.hashing import file_sha256

CANDIDATES: dict[str, dict] = {
    "vit_p50": dict(model="ecg_vit_tiny_p50", mask_ratio=0.75, decoder_width=128, decoder_depth=2, lr=1e-3),
    "cnn": dict(model="xresnet1d_tiny", mask_ratio=0.5, segment_size=25, decoder_width=128, lr=3e-3),
    "vit": dict(model="ecg_vit_tiny", mask_ratio=0.75, decoder_width=128, decoder_depth=2, lr=1e-3),
}
TASKS = ("superdiagnostic", "rhythm")
MAX_FILE_MB = 20.0
TRAIN_FOLDS, SELECTION_FOLD = tuple(range(1, 9)), 9  # fold 10 is the test fold: never read here


def build_corpora(work: Path, shared: Path, n_deepfake: int, n_synthetic: int) -> list[str]:
    """Corpus sources: generated (deepfake-ecg), synthetic (ecgadapt, seed 7) and real (unlabelled PTB-XL)."""
    sources = []
    if n_deepfake:
        sources.append(f"deepfake:{n_deepfake}:0")
    if n_synthetic:
        sources.append(
            str(
                write_synthetic_ptbxl(work / f"synthetic-{n_synthetic}-s7", n_synthetic, seed=7, rates=(100,))
            )
        )
    sources.append(f"npy:{shared / 'data' / 'ptbxl-unlabelled-1785' / 'signals_100hz.npy'}")
    return sources


@torch.no_grad()
def pooled_features(model, cache, rows: np.ndarray, batch: int = 64) -> np.ndarray:
    """Frozen pooled features of the cache ``rows`` through the model's own eval pipeline."""
    transform = build_transforms(model.input_spec, cache.rate, train=False)
    model.eval()
    out = []
    for start in range(0, len(rows), batch):
        x = np.stack([transform(np.asarray(cache.signals[r])) for r in rows[start : start + batch]])
        out.append(model.forward_features(torch.from_numpy(x)).numpy())
    return np.concatenate(out)


def linear_probe_fold9(
    encoder: Path | None,
    model_name: str,
    ptbxl500: Path,
    cache_dir: Path,
    seed: int = 0,
    model_kwargs: dict | None = None,
) -> dict:
    """Macro AUROC/AUPRC on fold 9 of a logistic-regression probe trained on folds 1-8 (fold 10 untouched);
    ``encoder`` None probes the architecture's random initialisation (under ``seed``), the control.
    ``ptbxl500`` is any PTB-XL-layout folder at 100 Hz; ``model_kwargs`` are the architecture's overrides."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    cache = load_or_prepare(ptbxl500, 100, cache_dir=cache_dir, progress=False)
    folds = cache.index["strat_fold"].to_numpy()
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=0, pretrained=encoder, **(model_kwargs or {}))
    result = {}
    for task in TASKS:
        y, classes = cache.labels(task)
        labelled = y.any(axis=1)
        train = np.flatnonzero(np.isin(folds, TRAIN_FOLDS) & labelled)
        val = np.flatnonzero((folds == SELECTION_FOLD) & labelled)
        f_train = pooled_features(model, cache, train)
        scaler = StandardScaler().fit(f_train)
        f_train, f_val = scaler.transform(f_train), scaler.transform(pooled_features(model, cache, val))
        scores = np.zeros((len(val), len(classes)))
        for c in range(len(classes)):
            if 0 < y[train, c].sum() < len(train):
                probe = LogisticRegression(C=0.1, max_iter=2000).fit(f_train, y[train, c])
                scores[:, c] = probe.decision_function(f_val)
        result[task] = {
            "fold9_macro_auroc": macro_auroc(y[val], scores),
            "fold9_macro_auprc": macro_auprc(y[val], scores),
            "n_train": int(len(train)),
            "n_fold9": int(len(val)),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/pretrain-candidates"))
    p.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=["cnn", "vit_p50"])
    p.add_argument("--shared", type=Path, default=None, help="shared data folder (default: ECGADAPT_SHARED)")
    p.add_argument("--deepfake", type=int, default=50000, help="generated ECGs (0: none)")
    p.add_argument("--synthetic", type=int, default=20000, help="ecgadapt synthetic ECGs (0: none)")
    p.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=None,
        help="mixture weights, one per corpus in the order generated, synthetic, real (default 1 1 1)",
    )
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--steps-per-epoch", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    shared = args.shared or shared_dir()
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sources = build_corpora(work, shared, args.deepfake, args.synthetic)
    weights = args.weights or [1.0] * len(sources)
    summary = {
        "argv": sys.argv,
        "corpora": sources,
        "weights": weights,
        "threads": args.threads,
        "candidates": {},
    }
    for name in args.candidates:
        spec = CANDIDATES[name]
        cfg = PretrainConfig(
            corpora=sources,
            corpus_weights=weights,
            cache_dir=str(work / "cache"),
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            warmup_epochs=min(2.0, args.epochs / 4),
            seed=args.seed,
            num_workers=0,
            device=args.device,
            progress=False,
            **spec,
        )
        t0 = time.perf_counter()
        run = run_pretrain(cfg, work / name, resume=(work / name / "config.yaml").is_file())
        encoder = run / ENCODER_FILE
        size_mb = encoder.stat().st_size / 1e6
        if size_mb > MAX_FILE_MB:
            raise SystemExit(
                f"{encoder} is {size_mb:.1f} MB, over the {MAX_FILE_MB} MB budget for a shipped file"
            )
        final = json.loads((run / "final.json").read_text())
        ptbxl500 = shared / "data" / "ptbxl-500"
        probe = linear_probe_fold9(encoder, spec["model"], ptbxl500, work / "cache")
        control = linear_probe_fold9(None, spec["model"], ptbxl500, work / "cache", seed=args.seed)
        summary["candidates"][name] = {
            **spec,
            "encoder": str(encoder),
            "sha256": file_sha256(encoder),
            "size_mb": round(size_mb, 3),
            "held_out_losses": {
                k: v for k, v in final["last"].items() if k.startswith(("val_loss", "train_loss"))
            },
            "selection": probe,
            "random_init_control": control,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps({name: summary["candidates"][name]}, indent=2), flush=True)
    scored = {
        n: np.mean([c["selection"][t]["fold9_macro_auroc"] for t in TASKS])
        for n, c in summary["candidates"].items()
    }
    summary["selected_by_fold9_macro_auroc"] = max(scored, key=scored.get) if scored else None
    (work / "selection.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"selection -> {work / 'selection.json'}: {summary['selected_by_fold9_macro_auroc']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
