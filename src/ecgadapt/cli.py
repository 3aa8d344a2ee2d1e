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


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo]


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
