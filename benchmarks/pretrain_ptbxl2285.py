"""Pretrain encoder candidates on ptbxl-2285 folds 1-8 plus synthetic ECGs, and choose one on fold 9 only (issue 19).

Candidates (the same corpora, mixture, steps and seed for each; each family's pretraining preset):

- ``cnn``: ``xresnet1d_tiny`` as shipped today (0.17 M parameters), masked-segment reconstruction (50% of the
  0.25 s lead segments, lr 3e-3);
- ``cnn_wide``: the same network with every width doubled (0.66 M parameters), same objective and preset;
- ``vit_p50``: ``ecg_vit_tiny_p50`` (0.5 s tokens, 0.14 M), masked ECG modelling (75% of the patches, lr 1e-3).

Corpora, mixed by ``--weights`` (synthetic : real, default 1 : 3 as the current default encoder):

- ``--synthetic`` ECGs from ecgadapt's own generator (seed 7, as the current default; the demo uses seed 0);
- ``ptbxl-2285`` as a PTB-XL folder with ``corpus_folds`` 1-8: its 1,773 real records of folds 1-8 and nothing of
  folds 9 and 10 (those of its records that are also in ``ptbxl-unlabelled-1785`` included, once).

Selection: a logistic-regression probe on the frozen pooled features, trained on folds 1-8 of ``ptbxl-2285`` and
scored on its fold 9 (macro AUROC and AUPRC, superdiagnostic and rhythm), beside the same probe on the
architecture's random initialisation (the control). The candidate with the higher mean fold-9 AUROC over the two
tasks is chosen. Fold 10 is never read.

Writes ``OUT/<candidate>/`` (an ``ecgadapt pretrain`` run each), ``OUT/selection.json`` (every setting, loss,
probe score and SHA-256) and the chosen encoder as ``OUT/chosen.safetensors`` with its
``OUT/chosen.seen_ptbxl_ids.txt``, after checking with ``pretraining_overlap`` that it saw no record of
``ptbxl-2285``'s folds 9 and 10. Finished runs are reused, interrupted ones resume.

Reproducible: every RNG is seeded from ``--seed``, data loading is single-process and each run uses ``--threads``
threads, so a rerun writes the same files on the same hardware. The encoder's metadata records the corpus paths
as passed: keep ``--out`` relative (the default) and ``--shared`` the same, and a rerun from a clone anywhere writes
the same bytes. ``--jobs 2`` pretrains two candidates at a time (one process each; the same results).

Sizing on the 2-core development machine, one thread, batch 64 (measured with ``--steps-per-epoch 3``):
see ``benchmarks/pretrain_ptbxl2285.sh`` for the full command and its time. Smoke test (a few steps)::

    python benchmarks/pretrain_ptbxl2285.py --out runs/pretrain-2285-smoke --synthetic 200 --epochs 1 \\
        --steps-per-epoch 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.synthetic import write_synthetic_ptbxl
from ecgadapt.models import create_model
from ecgadapt.paths import shared_dir
from ecgadapt.pretrain.config import PretrainConfig
from ecgadapt.pretrain.corpus import open_corpus
from ecgadapt.pretrain.pretrain import ENCODER_FILE, SEEN_IDS_FILE, run_pretrain
from ecgadapt.runs.hashing import file_sha256
from ecgadapt.train.config import DataConfig
from ecgadapt.train.finetune import pretraining_overlap
from pretrain_candidates import MAX_FILE_MB, TASKS, linear_probe_fold9

CANDIDATES: dict[str, dict] = {
    "cnn": {"model": "xresnet1d_tiny"},
    "cnn_wide": {
        "model": "xresnet1d_tiny",
        "model_kwargs": {"widths": [64, 64, 128, 128], "stem_widths": [32, 32, 64]},
    },
    "vit_p50": {"model": "ecg_vit_tiny_p50", "lr": 1e-3},
}
PRETRAIN_FOLDS = list(range(1, 9))  # folds 9 (selection) and 10 (test) are never pretrained on
DATASET = "ptbxl-2285"


def build_corpora(out: Path, shared: Path, n_synthetic: int) -> list[str]:
    """Corpus sources as passed to pretraining: synthetic ECGs (seed 7, if any), then ptbxl-2285."""
    sources = []
    if n_synthetic:
        folder = out / f"synthetic-{n_synthetic}-s7"
        write_synthetic_ptbxl(folder, n_synthetic, seed=7, rates=(100,))
        sources.append(str(folder))
    sources.append(str(shared / "data" / DATASET))
    return sources


def candidate_config(
    name: str, args: argparse.Namespace, sources: list[str], weights: list[float]
) -> PretrainConfig:
    """The pretraining config of candidate ``name``: shared corpora, folds 1-8, schedule and seed."""
    return PretrainConfig(
        corpora=sources,
        corpus_weights=weights,
        corpus_folds=PRETRAIN_FOLDS,
        cache_dir=str(args.out / "cache"),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        warmup_epochs=min(2.0, args.epochs / 4),
        seed=args.seed,
        num_workers=0,
        device="cpu",
        progress=False,
        **CANDIDATES[name],
    )


def pretrain_one(cfg: PretrainConfig, run: Path, threads: int) -> Path:
    """Run (or resume, or reuse) one candidate's pretraining with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    return run_pretrain(cfg, run, resume=(run / "config.yaml").is_file())


def check_unseen(encoder: Path, ptbxl: Path, cache_dir: Path) -> dict:
    """``pretraining_overlap`` of ``encoder`` on ptbxl-2285; SystemExit if it saw a fold-9 or fold-10 record."""
    cache = load_or_prepare(ptbxl, 100, cache_dir=cache_dir, progress=False)
    overlap = pretraining_overlap(cache, DataConfig(root=str(ptbxl)), file_sha256(encoder), encoder)
    if overlap and (overlap["val"] or overlap["test"]):
        raise SystemExit(
            f"{encoder} saw {overlap['val']} fold-9 and {overlap['test']} fold-10 records: {overlap}"
        )
    return overlap or {"train": 0, "val": 0, "test": 0}


def summarise(name: str, cfg: PretrainConfig, run: Path, ptbxl: Path, cache_dir: Path, seed: int) -> dict:
    """Size, losses, fold-9 probe and random-init control of one finished candidate run."""
    encoder = run / ENCODER_FILE
    size_mb = encoder.stat().st_size / 1e6
    if size_mb > MAX_FILE_MB:
        raise SystemExit(
            f"{encoder} is {size_mb:.1f} MB, over the {MAX_FILE_MB} MB budget for a shipped file"
        )
    final = json.loads((run / "final.json").read_text())
    kwargs = dict(cfg.model_kwargs)
    t0 = time.perf_counter()
    probe = linear_probe_fold9(encoder, cfg.model, ptbxl, cache_dir, model_kwargs=kwargs)
    control = linear_probe_fold9(None, cfg.model, ptbxl, cache_dir, seed=seed, model_kwargs=kwargs)
    n_params = sum(p.numel() for p in create_model(cfg.model, num_classes=0, **kwargs).parameters())
    return {
        **CANDIDATES[name],
        "encoder": str(encoder),
        "sha256": file_sha256(encoder),
        "size_mb": round(size_mb, 3),
        "n_params": n_params,
        "steps": final["steps_per_epoch"] * final["epochs"],
        "corpora": final["corpora"],
        "seen_ptbxl_ids": final["seen_ptbxl_ids"]["n"],
        "overlap_ptbxl2285": check_unseen(encoder, ptbxl, cache_dir),
        "held_out_losses": {
            k: v for k, v in final["last"].items() if k.startswith(("val_loss", "train_loss"))
        },
        "selection": probe,
        "random_init_control": control,
        "probe_seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/pretrain-2285"))
    p.add_argument(
        "--candidates", nargs="+", choices=sorted(CANDIDATES), default=["cnn", "cnn_wide", "vit_p50"]
    )
    p.add_argument("--shared", type=Path, default=None, help="shared data folder (default: ECGADAPT_SHARED)")
    p.add_argument("--synthetic", type=int, default=5000, help="ecgadapt synthetic ECGs (0: none)")
    p.add_argument(
        "--weights", type=float, nargs="+", default=[1.0, 3.0], help="synthetic, real mixture weights"
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per pretraining run")
    p.add_argument("--jobs", type=int, default=1, help="candidates pretrained at a time (one process each)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    shared = args.shared or shared_dir()
    ptbxl = shared / "data" / DATASET
    args.out.mkdir(parents=True, exist_ok=True)
    sources = build_corpora(args.out, shared, args.synthetic)
    weights = args.weights if args.synthetic else args.weights[-1:]
    if len(weights) != len(sources):
        raise SystemExit(f"--weights needs one weight per corpus ({len(sources)}: {sources}), got {weights}")
    for source in sources:  # prepare each corpus once, before runs may start side by side
        open_corpus(source, rate=100, cache_dir=args.out / "cache", progress=False)
    configs = {name: candidate_config(name, args, sources, weights) for name in args.candidates}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn")) as pool:
        runs = {n: pool.submit(pretrain_one, c, args.out / n, args.threads) for n, c in configs.items()}
        runs = {n: Path(f.result()) for n, f in runs.items()}
    summary = {
        "argv": sys.argv,
        "corpora": sources,
        "weights": weights,
        "corpus_folds": PRETRAIN_FOLDS,
        "threads": args.threads,
        "jobs": args.jobs,
        "pretrain_seconds": round(time.perf_counter() - t0, 1),
        "candidates": {},
    }
    for name, run in runs.items():
        summary["candidates"][name] = summarise(
            name, configs[name], run, ptbxl, args.out / "cache", args.seed
        )
        print(json.dumps({name: summary["candidates"][name]["selection"]}), flush=True)
    scored = {
        n: float(np.mean([c["selection"][t]["fold9_macro_auroc"] for t in TASKS]))
        for n, c in summary["candidates"].items()
    }
    chosen = max(scored, key=scored.get)
    summary["fold9_mean_macro_auroc"] = scored
    summary["chosen"] = chosen
    shutil.copyfile(runs[chosen] / ENCODER_FILE, args.out / "chosen.safetensors")
    shutil.copyfile(runs[chosen] / SEEN_IDS_FILE, args.out / "chosen.seen_ptbxl_ids.txt")
    summary["chosen_sha256"] = file_sha256(args.out / "chosen.safetensors")
    (args.out / "selection.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"chosen on fold 9: {chosen} -> {args.out / 'chosen.safetensors'} (sha256 {summary['chosen_sha256']})"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
