"""Commands on datasets: ``prepare`` (a source into a cache) and ``data stats``."""

from __future__ import annotations

import argparse

from ecgadapt.cli.flags import data_flag, labels_flag, source_flag

_SOURCE_FOLDERS = {
    "ptbxl": ("a PTB-XL folder", "PTB-XL folder (holds ptbxl_database.csv, records100/, records500/)"),
    "cinc": ("a PhysioNet/CinC 2020/2021 folder", "CinC folder (WFDB headers with '# Dx:' lines, .mat/.dat)"),
    "folder": ("a folder of WFDB records labelled by a CSV", "folder of WFDB records (and labels.csv)"),
}


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="read a dataset once into a memory-mapped cache")
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.data.cache import prepare_cache

        path = prepare_cache(
            args.data,
            args.rate,
            cache_dir=args.cache,
            workers=args.workers,
            verify=args.verify,
            progress=not args.no_progress,
            source=args.source,
            labels=getattr(args, "labels", None),
        )
        print(path)
        return 0

    for source, (what, root_help) in _SOURCE_FOLDERS.items():
        q = sources.add_parser(source, help=f"cache {what} at one sampling rate")
        data_flag(q, help_text=root_help, legacy="--root")
        if source == "folder":
            labels_flag(q)
        q.add_argument("--rate", type=int, choices=(100, 500), default=500, help="sampling rate in Hz")
        q.add_argument(
            "--cache", default=None, help="cache base folder (default $ECGADAPT_CACHE or ~/.cache/ecgadapt)"
        )
        q.add_argument("--workers", type=int, default=None, help="reader processes (default: all cores)")
        q.add_argument(
            "--verify",
            action="store_true",
            help="also compare the record files' content hashes (not only sizes and times) with the cache",
        )
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        q.set_defaults(func=run)


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = cmds.add_parser(
        "stats", help="records and class positives per split of a task (reads only the labels, no signal)"
    )
    data_flag(q, legacy="--root")
    source_flag(q)
    labels_flag(q)
    q.add_argument(
        "--task", required=True, help="all, diagnostic, subdiagnostic, superdiagnostic, form or rhythm"
    )
    q.add_argument("--rate", type=int, choices=(100, 500), default=None, help="sampling rate (recorded only)")
    q.add_argument("--test-fold", type=int, default=10, help="strat_fold of the test split")
    q.add_argument("--val-fold", type=int, default=9, help="strat_fold of the validation split")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(args: argparse.Namespace) -> int:
        import json

        from ecgadapt.data.stats import format_stats, split_stats

        stats = split_stats(
            args.data,
            args.task,
            rate=args.rate,
            test_fold=args.test_fold,
            val_fold=args.val_fold,
            source=args.source,
            labels=args.labels,
        )
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        return 0

    q.set_defaults(func=run)
