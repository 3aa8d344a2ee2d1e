"""The parser class and the flags several commands share (--data, --source, --labels, --device, --logger),
declared once."""

from __future__ import annotations

import argparse

SOURCES = ("ptbxl", "cinc", "folder")
"""The dataset layouts ``--source`` names."""

DATA_HELP = (
    "dataset folder: PTB-XL (ptbxl_database.csv, records100/, records500/), a PhysioNet/CinC 2020/2021 folder "
    "(WFDB headers with '# Dx:' lines) or a folder of WFDB records labelled by a CSV; --source names its layout"
)
SOURCE_HELP = "layout of --data: ptbxl, cinc (CinC 2020/2021 headers) or folder (WFDB records + labels CSV)"
LABELS_HELP = "labels CSV record,labels[,fold] of --source folder (default: DATA/labels.csv)"
DEVICE_HELP = "auto (CUDA if available), cpu, cuda or cuda:N"


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default after its help, unless it is None or False or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows defaults (its subcommands' parsers are of this class too)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def with_default(help_text: str, default: str | None) -> str:
    """``help_text`` with the default a config supplies (the flag's own default is None) named."""
    return help_text if default is None else f"{help_text} (default: {default})"


def data_flag(
    p: argparse.ArgumentParser,
    *,
    dest: str = "data",
    required: bool = True,
    help_text: str = DATA_HELP,
    legacy: str | None = None,
) -> None:
    """``--data DIR``; ``legacy`` is an old spelling kept working but hidden (e.g. ``--root``)."""
    where = p.add_mutually_exclusive_group(required=required) if legacy else p
    where.add_argument("--data", dest=dest, default=None, metavar="DIR", help=help_text)
    if legacy:
        where.add_argument(legacy, dest=dest, default=None, help=argparse.SUPPRESS)


def source_flag(
    p: argparse.ArgumentParser,
    *,
    dest: str = "source",
    default: str | None = "ptbxl",
    shown: str | None = None,
) -> None:
    """``--source ptbxl|cinc|folder`` (``shown``: the default a config gives when the flag's own is None)."""
    p.add_argument(
        "--source", dest=dest, choices=SOURCES, default=default, help=with_default(SOURCE_HELP, shown)
    )


def labels_flag(p: argparse.ArgumentParser, *, dest: str = "labels") -> None:
    """``--labels CSV`` of a folder source."""
    p.add_argument("--labels", dest=dest, default=None, metavar="CSV", help=LABELS_HELP)


def device_flag(
    p: argparse.ArgumentParser,
    *,
    dest: str = "device",
    default: str | None = "auto",
    shown: str | None = None,
) -> None:
    """``--device`` (``shown``: the default a config gives when the flag's own is None)."""
    p.add_argument(
        "--device", dest=dest, default=default, metavar="DEVICE", help=with_default(DEVICE_HELP, shown)
    )


def logger_flag(p: argparse.ArgumentParser, dest: str) -> None:
    """``--logger csv|tensorboard|mlflow``."""
    p.add_argument(
        "--logger",
        dest=dest,
        choices=("csv", "tensorboard", "mlflow"),
        default=None,
        help="where each epoch's losses and metrics and the final scores also go: csv (default: metrics.csv "
        "alone), tensorboard (RUN/tensorboard) or mlflow ($MLFLOW_TRACKING_URI); needs ecgadapt[loggers]",
    )


def run_dir_arg(p: argparse.ArgumentParser, *, dest: str = "run_dir", nargs: str | None = None) -> None:
    """The positional ``RUN_DIR`` of the commands on a finished run (``nargs="+"``: one or more)."""
    p.add_argument(dest, nargs=nargs, metavar="RUN_DIR", help="run directory written by 'ecgadapt finetune'")


def calibration_flags(p: argparse.ArgumentParser, uncalibrated_help: str) -> None:
    """``--uncalibrated`` or ``--calibration SITE``: the raw probabilities, or another site's temperatures."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--uncalibrated", action="store_true", help=uncalibrated_help)
    g.add_argument(
        "--calibration",
        metavar="SITE",
        default=None,
        help="apply the temperatures fitted on external site SITE (ecgadapt calibrate --data ... --fold K) "
        "instead of the run's own",
    )
