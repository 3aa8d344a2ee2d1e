"""``models list`` and ``models inspect``."""

from __future__ import annotations

import argparse


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models or inspect a checkpoint file")
    cmds = p.add_subparsers(dest="models_command", required=True, metavar="MODELS_COMMAND")
    q = cmds.add_parser("list", help="registered models: family, input spec, parameter count")

    def run_list(args: argparse.Namespace) -> int:
        from ecgadapt.models.inspect import describe_models

        print(describe_models())
        return 0

    q.set_defaults(func=run_list)
    q = cmds.add_parser("inspect", help="a checkpoint's format, wrapper, size, and the model it fits")
    q.add_argument("path", help="checkpoint file (.pt/.pth or .safetensors)")

    def run_inspect(args: argparse.Namespace) -> int:
        from ecgadapt.models.inspect import describe_checkpoint

        print(describe_checkpoint(args.path))
        return 0

    q.set_defaults(func=run_inspect)
