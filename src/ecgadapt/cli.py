"""Command-line interface: argument parsing only; each command calls one public function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ecgadapt import __version__
from ecgadapt.errors import ECGAdaptError

# Each ``_add_*`` function registers one command (or command group) and sets ``func`` to a handler
# ``handler(args) -> int``. Handlers import lazily so that ``ecgadapt --help`` stays fast.


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded synthetic dataset")
    p.add_argument("--out", default="ecgadapt_demo", help="folder for the demo's data, cache and runs")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to compare over")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.demo import run_demo

        run_demo(out_dir=args.out, seeds=args.seeds)
        return 0

    p.set_defaults(func=run)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="read a dataset once into a memory-mapped cache")
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    q = sources.add_parser("ptbxl", help="cache a PTB-XL folder at one sampling rate")
    q.add_argument("--root", required=True, help="PTB-XL folder (holds ptbxl_database.csv, records100/, records500/)")
    q.add_argument("--rate", type=int, choices=(100, 500), default=500, help="sampling rate in Hz (default 500)")
    q.add_argument("--cache", default=None, help="cache base folder (default $ECGADAPT_CACHE or ~/.cache/ecgadapt)")
    q.add_argument("--workers", type=int, default=None, help="reader processes (default: all cores)")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.data.cache import prepare_cache

        print(prepare_cache(args.root, args.rate, cache_dir=args.cache, workers=args.workers))
        return 0

    q.set_defaults(func=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = cmds.add_parser("stats", help="records and class positives per split of a task (reads only the CSVs)")
    q.add_argument("--root", required=True, help="PTB-XL folder (holds ptbxl_database.csv and scp_statements.csv)")
    q.add_argument("--task", required=True, help="all, diagnostic, subdiagnostic, superdiagnostic, form or rhythm")
    q.add_argument("--rate", type=int, choices=(100, 500), default=None, help="sampling rate (recorded only)")
    q.add_argument("--test-fold", type=int, default=10, help="strat_fold of the test split (default 10)")
    q.add_argument("--val-fold", type=int, default=9, help="strat_fold of the validation split (default 9)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(args: argparse.Namespace) -> int:
        import json

        from ecgadapt.data.stats import format_stats, split_stats

        stats = split_stats(args.root, args.task, rate=args.rate, test_fold=args.test_fold, val_fold=args.val_fold)
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        return 0

    q.set_defaults(func=run)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_prepare, _add_data]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="ecgadapt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecgadapt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ecgadapt`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ECGAdaptError as err:
        print(f"ecgadapt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ecgadapt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
