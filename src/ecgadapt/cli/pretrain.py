"""``pretrain``: self-supervised pretraining of an encoder."""

from __future__ import annotations

import argparse

from ecgadapt.cli.flags import device_flag
from ecgadapt.errors import ECGAdaptError


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of an ecg_vit (masked ECG) or xresnet1d (masked segments) encoder on "
        "unlabelled corpora (writes a run directory)",
        description="Writes config.yaml, env.json, metrics.csv, checkpoints/last.pt and, when finished, "
        "encoder.safetensors (load it with finetune --weights PATH).",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="model to pretrain: ecg_vit_* or xresnet1d_* (default ecg_vit_tiny); each family has a preset of "
        "mask ratio, segment size and lr (ecg_vit: 0.75, -, 5e-4; xresnet1d: 0.5, 25, 3e-3) that flags override",
    )
    p.add_argument(
        "--corpus",
        dest="corpora",
        action="append",
        metavar="SRC",
        help="PTB-XL folder, prepared cache, folder of WFDB records, deepfake:N[:SEED], or a preprocessed "
        "(records, 12, samples) array npy:FILE.npy[@RATE] (repeatable)",
    )
    p.add_argument(
        "--corpus-weight",
        dest="corpus_weights",
        action="append",
        type=float,
        metavar="W",
        help="share of training draws for each --corpus, in order (default: by corpus size)",
    )
    p.add_argument(
        "--corpus-folds",
        type=_folds,
        metavar="FOLDS",
        help="keep only these PTB-XL strat_folds (e.g. 1-8 or 1,2,5-8) of every corpus of PTB-XL records: PTB-XL "
        "folders and caches, and npy: arrays whose ecg_ids.csv --corpus-folds-from places; other corpora are used whole",
    )
    p.add_argument(
        "--corpus-folds-from",
        metavar="DIR",
        help="PTB-XL folder whose ptbxl_database.csv gives the folds of npy: arrays' ecg_ids (ecg_ids.csv beside "
        "the array), e.g. ../shared/data/ptbxl-2285 for ptbxl-unlabelled-1785",
    )
    p.add_argument(
        "--allow-eval-folds",
        action="store_true",
        default=None,
        help="let corpora include PTB-XL folds 9 and 10 (validation and test); without it pretrain refuses them",
    )
    p.add_argument(
        "--real-val", metavar="DIR", help="real held-out set (e.g. PTB-XL) for the domain-gap loss"
    )
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int, metavar="N", help="cap on optimiser steps per epoch")
    p.add_argument("--batch-size", type=int, metavar="N")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--mask-ratio", type=float)
    p.add_argument("--decoder-width", type=int)
    p.add_argument("--decoder-depth", type=int)
    p.add_argument(
        "--segment-size", type=int, metavar="N", help="samples per masked segment (xresnet1d; preset 25)"
    )
    p.add_argument("--val-fraction", type=float, help="share of each corpus held out (default 0.05)")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-workers", type=int, metavar="N")
    device_flag(p, default=None, shown="auto")
    p.add_argument("--cache-dir", metavar="DIR", help="where prepared and generated corpora go")
    p.add_argument(
        "--model-arg",
        dest="model_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture override, e.g. --model-arg depth=6 (repeatable)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    g.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.pretrain.config import build_pretrain_config
        from ecgadapt.pretrain.pretrain import run_pretrain

        skip = {"command", "func", "debug", "out", "resume", "force", "no_progress", "model_args"}
        flags = {k: v for k, v in vars(args).items() if k not in skip}
        cfg = build_pretrain_config(
            args.out, args.resume, args.model_args, progress=False if args.no_progress else None, **flags
        )
        run_pretrain(cfg, args.out, resume=args.resume, force=args.force)
        return 0

    p.set_defaults(func=run)


def _folds(text: str) -> list[int]:
    """argparse type of ``--corpus-folds``: ``1-8`` -> [1, ..., 8]."""
    from ecgadapt.pretrain.folds import parse_folds

    try:
        return parse_folds(text)
    except ECGAdaptError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
