"""Command-line interface: argument parsing only; each command calls one public function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ecgadapt.cli.bench import add_benchmark, add_demo, add_report
from ecgadapt.cli.data import add_data, add_prepare
from ecgadapt.cli.flags import Parser
from ecgadapt.cli.models import add_models
from ecgadapt.cli.pretrain import add_pretrain
from ecgadapt.cli.train import (
    add_calibrate,
    add_evaluate,
    add_export,
    add_finetune,
    add_predict,
    add_robustness,
)
from ecgadapt.constants import VERSION as __version__
from ecgadapt.errors import ECGAdaptError

# Each ``add_*`` function (one module per command group) registers one command (or command group) and sets
# ``func`` to a handler ``handler(args) -> int``. Handlers import lazily, inside the handler, so that
# ``ecgadapt --help`` stays fast. The flags several commands share are declared once, in ``cli/flags.py``.

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo,
    add_prepare,
    add_data,
    add_models,
    add_finetune,
    add_evaluate,
    add_predict,
    add_export,
    add_calibrate,
    add_robustness,
    add_benchmark,
    add_report,
    add_pretrain,
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = Parser(prog="ecgadapt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecgadapt {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print its traceback (a failed worker's included) before the message",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ecgadapt`` console script."""
    from ecgadapt.fileio import is_write_problem, write_error
    from ecgadapt.procs import stop_signals

    args = build_parser().parse_args(argv)
    try:
        with stop_signals():  # SIGTERM stops a run as Ctrl-C does: finally blocks run, workers are stopped
            return int(args.func(args) or 0)
    except ECGAdaptError as err:
        _print_traceback(args, err)
        print(f"ecgadapt: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if not is_write_problem(err):
            raise
        _print_traceback(args, err)
        print(f"ecgadapt: error: {write_error(err.filename or '(output)', err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        import signal

        signum = getattr(err, "signum", signal.SIGINT)
        print(f"ecgadapt: interrupted ({signal.Signals(signum).name}); {_resume_hint(args)}", file=sys.stderr)
        return 128 + int(signum)


def _print_traceback(args: argparse.Namespace, err: BaseException) -> None:
    """With ``--debug``, the error's traceback and its causes (a worker's traceback travels as its cause)."""
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exception(err, file=sys.stderr)


def _resume_hint(args: argparse.Namespace) -> str:
    """How to continue an interrupted command."""
    if args.command == "finetune" and getattr(args, "out", None):
        return (
            f"every completed epoch is saved in {args.out}/checkpoints/last.pt; continue with "
            f"`ecgadapt finetune --out {args.out} --resume`"
        )
    if args.command == "benchmark":
        return "rerun the same command to continue: finished cells are skipped, interrupted ones resume"
    if args.command == "pretrain":
        return f"continue with `ecgadapt pretrain --out {args.out} --resume`"
    if args.command == "prepare":
        return "no cache was written; rerun the same command"
    return "rerun the command"
