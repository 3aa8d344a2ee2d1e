"""Command-line interface: argument parsing only; each command calls one public function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ecgadapt.constants import VERSION as __version__
from ecgadapt.errors import ECGAdaptError
from ecgadapt.weights import DEFAULT_MODEL

# Each ``_add_*`` function registers one command (or command group) and sets ``func`` to a handler
# ``handler(args) -> int``. Handlers import lazily so that ``ecgadapt --help`` stays fast. The flags several
# commands share (--data, --source, --labels, --device) are declared once, by the ``_*_flag`` helpers below.

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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help shows defaults (its subcommands' parsers are of this class too)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _shown(help_text: str, default: str | None) -> str:
    """``help_text`` with the default a config supplies (the flag's own default is None) named."""
    return help_text if default is None else f"{help_text} (default: {default})"


def _data_flag(
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


def _source_flag(
    p: argparse.ArgumentParser,
    *,
    dest: str = "source",
    default: str | None = "ptbxl",
    shown: str | None = None,
) -> None:
    """``--source ptbxl|cinc|folder`` (``shown``: the default a config gives when the flag's own is None)."""
    p.add_argument("--source", dest=dest, choices=SOURCES, default=default, help=_shown(SOURCE_HELP, shown))


def _labels_flag(p: argparse.ArgumentParser, *, dest: str = "labels") -> None:
    """``--labels CSV`` of a folder source."""
    p.add_argument("--labels", dest=dest, default=None, metavar="CSV", help=LABELS_HELP)


def _device_flag(
    p: argparse.ArgumentParser,
    *,
    dest: str = "device",
    default: str | None = "auto",
    shown: str | None = None,
) -> None:
    """``--device`` (``shown``: the default a config gives when the flag's own is None)."""
    p.add_argument("--device", dest=dest, default=default, metavar="DEVICE", help=_shown(DEVICE_HELP, shown))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded synthetic dataset")
    p.add_argument("--out", default="ecgadapt_demo", help="folder for the demo's data, cache and runs")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to compare over")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.demo import run_demo

        run_demo(out_dir=args.out, seeds=args.seeds)
        return 0

    p.set_defaults(func=run)


_SOURCE_FOLDERS = {
    "ptbxl": ("a PTB-XL folder", "PTB-XL folder (holds ptbxl_database.csv, records100/, records500/)"),
    "cinc": ("a PhysioNet/CinC 2020/2021 folder", "CinC folder (WFDB headers with '# Dx:' lines, .mat/.dat)"),
    "folder": ("a folder of WFDB records labelled by a CSV", "folder of WFDB records (and labels.csv)"),
}


def _add_prepare(sub: argparse._SubParsersAction) -> None:
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
            source=args.source,
            labels=getattr(args, "labels", None),
        )
        print(path)
        return 0

    for source, (what, root_help) in _SOURCE_FOLDERS.items():
        q = sources.add_parser(source, help=f"cache {what} at one sampling rate")
        _data_flag(q, help_text=root_help, legacy="--root")
        if source == "folder":
            _labels_flag(q)
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
        q.set_defaults(func=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = cmds.add_parser(
        "stats", help="records and class positives per split of a task (reads only the labels, no signal)"
    )
    _data_flag(q, legacy="--root")
    _source_flag(q)
    _labels_flag(q)
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


def _add_models(sub: argparse._SubParsersAction) -> None:
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


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on a dataset's task with a recipe (writes a run directory)",
        description="Precedence: defaults < recipe preset < --config YAML < explicit flags < --set.",
    )
    _data_flag(p, dest="data__root", required=False)
    p.add_argument(
        "--task",
        dest="data__task",
        metavar="TASK",
        help=_shown("all, diagnostic, subdiagnostic, superdiagnostic, form or rhythm", "superdiagnostic"),
    )
    p.add_argument(
        "--model",
        dest="model__name",
        metavar="NAME",
        help=_shown(
            "registered model name, e.g. xresnet1d_small, xresnet1d_tiny, st_mem_vit_b75", DEFAULT_MODEL
        ),
    )
    p.add_argument(
        "--weights",
        dest="model__weights",
        metavar="PATH",
        help="pretrained checkpoint PATH, 'bundled', or 'none' (default: 'bundled' where ecgadapt ships a checkpoint for the model, else none)",
    )
    p.add_argument(
        "--recipe",
        help=_shown(
            "scratch, linear_probe, baseline_ft, lp_ft, post_training, post_training_no_lp, "
            "post_training_no_sd, post_training_no_dropout",
            "post_training",
        ),
    )
    p.add_argument(
        "--fraction",
        dest="data__fraction",
        type=float,
        metavar="F",
        help=_shown("fraction of the training split (0, 1]", "1.0"),
    )
    p.add_argument(
        "--seed",
        type=int,
        help=_shown("run seed (model head init, shuffling, crops, fraction subsample)", "0"),
    )
    p.add_argument(
        "--rate",
        dest="data__rate",
        type=int,
        metavar="HZ",
        help=_shown("sampling rate of the records read (100 or 500)", "100"),
    )
    _source_flag(p, dest="data__source", default=None, shown="ptbxl")
    _labels_flag(p, dest="data__labels")
    p.add_argument(
        "--cache-dir",
        dest="data__cache_dir",
        metavar="DIR",
        help="cache base folder (default: $ECGADAPT_CACHE or ~/.cache/ecgadapt)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        help="maximum epochs of every stage (default: the recipe's; see training.min_steps)",
    )
    p.add_argument(
        "--batch-size",
        dest="training__batch_size",
        type=int,
        metavar="N",
        help=_shown("records per batch", "64"),
    )
    p.add_argument(
        "--num-workers",
        dest="training__num_workers",
        type=int,
        metavar="N",
        help=_shown("data-loader processes (0: load in the training process)", "0"),
    )
    _device_flag(p, dest="training__device", default=None, shown="auto")
    p.add_argument(
        "--eval-windows",
        dest="training__eval_windows",
        type=int,
        metavar="N",
        help=_shown("crops averaged at val/test", "1"),
    )
    p.add_argument(
        "--max-train-batches",
        dest="training__max_train_batches",
        type=int,
        metavar="N",
        help="cap batches/epoch (default: none)",
    )
    p.add_argument(
        "--config", help="YAML file with config sections (data, model, recipe, training, seed, out)"
    )
    p.add_argument(
        "--set",
        dest="set_items",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any field, e.g. --set recipe.stages.1.drop_path_rate=0.2 (repeatable)",
    )
    p.add_argument(
        "--tune",
        dest="tune_items",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="search KEY over the values on validation fold 9, e.g. --tune lr=1e-4,3e-4,1e-3 --tune "
        "head_lr_scale=1,10 (repeatable; only the chosen candidate is scored on the test fold)",
    )
    p.add_argument("--jobs", type=int, default=1, help="tune candidates trained in parallel")
    p.add_argument("--out", help="run directory to create")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the killed run in --out")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_logger_flag(p, dest="training__logger")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.bench.tune import run_tuned, tune_overrides
        from ecgadapt.train.config import build_config
        from ecgadapt.train.finetune import run_finetune

        flags = {k: v for k, v in vars(args).items() if "__" in k or k in ("recipe", "seed", "out")}
        if args.no_progress:
            flags["training__progress"] = False
        set_items = [*args.set_items, *tune_overrides(args.tune_items)]
        cfg = build_config(
            args.config, set_items, resume_dir=args.out if args.resume else None, epochs=args.epochs, **flags
        )
        if cfg.tune:
            run_tuned(cfg, resume=args.resume, overwrite=args.overwrite, jobs=args.jobs)
        else:
            run_finetune(cfg, resume=args.resume, overwrite=args.overwrite)
        return 0

    p.set_defaults(func=run)


def _add_logger_flag(p: argparse.ArgumentParser, dest: str) -> None:
    p.add_argument(
        "--logger",
        dest=dest,
        choices=("csv", "tensorboard", "mlflow"),
        default=None,
        help="where each epoch's losses and metrics and the final scores also go: csv (default: metrics.csv "
        "alone), tensorboard (RUN/tensorboard) or mlflow ($MLFLOW_TRACKING_URI); needs ecgadapt[loggers]",
    )


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="re-score a finished run's best checkpoint on a split")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'ecgadapt finetune'")
    p.add_argument(
        "--split", choices=("test", "val", "train"), default="test", help="split of the run's dataset"
    )
    p.add_argument(
        "--eval-windows", type=int, default=None, help="crops averaged per record (default: the run's)"
    )
    _device_flag(p)
    p.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--uncalibrated",
        action="store_true",
        help="score the raw probabilities, not the temperature-scaled ones",
    )
    g.add_argument(
        "--calibration",
        metavar="SITE",
        default=None,
        help="apply the temperatures fitted on external site SITE (ecgadapt calibrate --data ... --fold K) "
        "instead of the run's own",
    )
    _data_flag(p, required=False, help_text=f"score on this external dataset instead of a split: {DATA_HELP}")
    _source_flag(p, default="folder")
    _labels_flag(p)
    p.add_argument(
        "--name", default=None, help="name of the external set in the run (default: --data's folder name)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        import json

        from ecgadapt.train.evaluate import evaluate_run, format_evaluation

        if args.data is not None:
            from ecgadapt.inference.external import evaluate_external, format_external

            r = evaluate_external(
                args.run_dir,
                args.data,
                args.source,
                args.labels,
                name=args.name,
                eval_windows=args.eval_windows,
                device=args.device,
                progress=not args.no_progress,
                calibration=args.calibration,
            )
            print(json.dumps(r, indent=2) if args.json else format_external(r))
            return 0
        m = evaluate_run(
            args.run_dir,
            split=args.split,
            eval_windows=args.eval_windows,
            device=args.device,
            uncalibrated=args.uncalibrated,
            progress=not args.no_progress,
            calibration=args.calibration,
        )
        print(json.dumps(m, indent=2) if args.json else format_evaluation(args.run_dir, m))
        return 0

    p.set_defaults(func=run)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="class probabilities of WFDB records or .npy arrays from a finished run"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'ecgadapt finetune'")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="one or more WFDB records (.hea or base name) or .npy arrays (12,T)/(N,12,T)",
    )
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)  # the old spelling of RUN_DIR
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help='sampling rate of .npy inputs in Hz (required unless <name>.json beside the array gives {"rate": HZ})',
    )
    p.add_argument(
        "--eval-windows", type=int, default=None, help="minimum windows per record (default: the run's)"
    )
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    p.add_argument("--out", default=None, help="output file (default: print)")
    _device_flag(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--uncalibrated", action="store_true", help="raw probabilities, not the run's temperature-scaled ones"
    )
    g.add_argument(
        "--calibration",
        metavar="SITE",
        default=None,
        help="apply the temperatures fitted on external site SITE (ecgadapt calibrate --data ... --fold K) "
        "instead of the run's own",
    )

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.inference.predict import predict, write_predictions

        run_dir, inputs = args.run_dir, args.inputs
        if args.run is not None:  # predict --run RUN_DIR INPUT...: the first positional is an input
            run_dir, inputs = args.run, [args.run_dir, *inputs]
        if not inputs:
            p.error("the following arguments are required: INPUT (one or more records or arrays)")
        df = predict(
            run_dir,
            inputs,
            rate=args.rate,
            eval_windows=args.eval_windows,
            device=args.device,
            uncalibrated=args.uncalibrated,
            calibration=args.calibration,
        )
        text = write_predictions(df, args.out, args.format)
        if args.out is None:
            print(text, end="")
        return 0

    p.set_defaults(func=run)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a finished run's network to ONNX or TorchScript, with FILE.json saying how to feed it",
        description="FILE takes preprocessed windows (N, 12, L) at the run's rate and returns logits (N, C); "
        "FILE.json holds the rate, filter, normalisation, windows, class names and temperatures that reproduce "
        "'ecgadapt predict'. ONNX needs pip install \"ecgadapt[export]\".",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'ecgadapt finetune'")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="default: onnx")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="the file to write (FILE.json goes beside it)"
    )

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.inference.export import export_run, sidecar_path

        out, record = export_run(args.run_dir, args.format, args.out)
        shape = ", ".join(str(d) for d in record["input"]["shape"])
        print(
            f"wrote {out} ({args.format}: {record['input']['name']} ({shape}) float32 at "
            f"{record['preprocessing']['sampling_rate']} Hz -> {record['output']['name']} "
            f"(N, {len(record['class_names'])}); max |difference| from PyTorch "
            f"{record['check']['max_abs_diff_logits_vs_pytorch']:.1e}) and {sidecar_path(out)}"
        )
        return 0

    p.set_defaults(func=run)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit temperature scaling of a finished run on its validation predictions (calibration.json) or on "
        "part of an external site (--data ... --fold K: calibration_SITE.json)",
        description="Without --data: reads only predictions_val.npz (fold 9), so the test fold never informs the "
        "temperatures; predict, evaluate and robustness then apply them unless given --uncalibrated. With --data: "
        "scores the run on the site, fits temperatures on the site's fold(s) K (its labels CSV's fold column, else "
        "ten label-stratified folds ecgadapt assigns with seed 0), reports the ECE on the site's other records, "
        "and writes calibration_SITE.json beside the run's own (never replacing it); predict and evaluate apply it "
        "with --calibration SITE.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'ecgadapt finetune'")
    p.add_argument(
        "--mode",
        choices=("global", "per_class", "none"),
        default=None,
        help="one temperature, one per class, or none (removes calibration.json); default: the run's "
        "training.calibration (global for a site when that is none)",
    )
    _data_flag(p, required=False, help_text=f"fit on this external site instead: {DATA_HELP}")
    _source_flag(p, default="folder")
    _labels_flag(p)
    p.add_argument(
        "--fold",
        dest="folds",
        type=int,
        action="append",
        metavar="K",
        help="the site's fold (1-10) to fit on; the others measure the fit (repeatable; needs --data)",
    )
    p.add_argument("--name", default=None, help="name of the site in the run (default: --data's folder name)")
    p.add_argument(
        "--eval-windows", type=int, default=None, help="crops averaged per record (default: the run's)"
    )
    _device_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.eval.temperature import calibrate_run

        if args.data is None:
            if args.folds:
                p.error("--fold picks the records of an external site to fit on: give the site with --data")
            print(calibrate_run(args.run_dir, args.mode))
            return 0
        from ecgadapt.inference.site_calibration import calibrate_site, format_site_calibration, site_mode

        record = calibrate_site(
            args.run_dir,
            args.data,
            args.source,
            args.labels,
            folds=args.folds or [],
            name=args.name,
            mode=site_mode(args.run_dir, args.mode),
            eval_windows=args.eval_windows,
            device=args.device,
            progress=not args.no_progress,
        )
        print(format_site_calibration(record, args.run_dir))
        return 0

    p.set_defaults(func=run)


def _add_robustness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness",
        help="score a finished run's test split under seeded corruptions (writes robustness.csv and .png)",
        description="Corruptions (severity 0 = clean): gaussian_noise, electrode_motion (SNR 24-0 dB), "
        "baseline_wander, powerline_50hz, powerline_60hz, amplitude_scaling, time_shift, zeroed_leads, lead_sets "
        "(six limb leads, I + II, II alone). Seeded: a rerun gives the same table.",
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directory written by 'ecgadapt finetune'"
    )
    p.add_argument(
        "--data",
        default=None,
        help="the run's dataset folder, if it moved (default: the run's data.root); with --source, an external set",
    )
    p.add_argument(
        "--source",
        choices=("cinc", "folder"),
        default=None,
        help="score the external set --data (this layout) instead of the run's test fold "
        "(default: the run's own source and test fold)",
    )
    p.add_argument(
        "--labels", default=None, metavar="CSV", help="labels CSV record,labels[,fold] of a folder source"
    )
    p.add_argument("--name", default=None, help="name of the external set (default: --data's folder name)")
    p.add_argument(
        "--corruption",
        dest="corruptions",
        action="append",
        default=None,
        metavar="NAME",
        help="only this corruption (repeatable; default: all)",
    )
    p.add_argument(
        "--severity",
        dest="severities",
        type=int,
        action="append",
        default=None,
        metavar="N",
        help="only this severity >= 1 (repeatable; default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="corruption seed")
    _device_flag(p)
    p.add_argument("--uncalibrated", action="store_true", help="loss and ECE of the raw probabilities")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.inference.robustness import format_robustness, run_robustness

        for run_dir in args.run_dirs:
            table = run_robustness(
                run_dir,
                args.data,
                source=args.source,
                labels=args.labels,
                name=args.name,
                corruptions=args.corruptions,
                severities=args.severities,
                seed=args.seed,
                device=args.device,
                uncalibrated=args.uncalibrated,
                progress=not args.no_progress,
            )
            print(format_robustness(table, run_dir))
        return 0

    p.set_defaults(func=run)


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="run a grid of fine-tuning cells (models x tasks x recipes x fractions x seeds) from a spec",
        description="Finished cells are skipped, partial ones resume; a cell whose saved config differs is an error. "
        "--set edits the spec (seeds=[0,1], models.0.weights=PATH, stage_overrides.epochs=1) or, for config paths "
        "(training.batch_size=8), adds a shared override.",
    )
    p.add_argument(
        "--spec",
        required=True,
        help="built-in spec (paper-main, paper-data-efficiency, paper-ablation, "
        "paper-vs-task-specific) or a YAML file",
    )
    _data_flag(p)
    _source_flag(p, default=None, shown="ptbxl")
    _labels_flag(p)
    p.add_argument("--out", required=True, help="results folder (runs/, spec.yaml, results.csv)")
    p.add_argument(
        "--set",
        dest="set_items",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="spec or config override (repeatable)",
    )
    p.add_argument(
        "--weights", default=None, help="checkpoint for every model whose spec says 'weights: required'"
    )
    p.add_argument(
        "--protocol", choices=("official", "rotate-folds"), default=None, help="override the spec's protocol"
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel runs of the local executor")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="where the runs go")
    p.add_argument(
        "--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    p.add_argument(
        "--gpus-per-cell",
        type=float,
        default=None,
        help="Ray GPUs per run (default: 1 if the cluster has GPUs)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_logger_flag(p, dest="logger")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.bench.grid import run_benchmark

        data_sets = [f"data.{k}={v}" for k, v in (("source", args.source), ("labels", args.labels)) if v]
        if args.logger:
            data_sets.append(f"training.logger={args.logger}")  # passed to every cell's config
        run_benchmark(
            args.spec,
            args.data,
            args.out,
            [*data_sets, *args.set_items],
            weights=args.weights,
            protocol=args.protocol,
            jobs=args.jobs,
            executor=args.executor,
            address=args.address,
            gpus_per_cell=args.gpus_per_cell,
            progress=not args.no_progress,
        )
        return 0

    p.set_defaults(func=run)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="report.md + self-contained report.html (tables, figures) of a benchmark"
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the --out folder of 'ecgadapt benchmark'")
    p.add_argument("--out", default=None, help="report folder (default RESULTS_DIR/report)")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="record-bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--drop-test-fold",
        type=int,
        action="append",
        default=[],
        metavar="K",
        help="score rotate-folds cells without the run that tests on fold K (repeatable), in every table; "
        "the table used is written to the report folder's results.csv",
    )
    p.add_argument(
        "--bootstrap-groups",
        choices=("records", "patient"),
        default="records",
        help="what the bootstraps resample: test records (default), or patients with all their records",
    )

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.eval.report import build_report

        rep = build_report(
            args.results_dir,
            args.out,
            n_resamples=args.n_bootstrap,
            seed=args.seed,
            drop_test_folds=args.drop_test_fold,
            bootstrap_groups=args.bootstrap_groups,
        )
        print(f"report: {rep.html} and {rep.markdown} ({len(rep.figures)} figures)")
        for title, why in rep.absent.items():
            print(f"  section '{title}' not shown: {why}")
        return 0

    p.set_defaults(func=run)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
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
    _device_flag(p, default=None, shown="auto")
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


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_prepare,
    _add_data,
    _add_models,
    _add_finetune,
    _add_evaluate,
    _add_predict,
    _add_export,
    _add_calibrate,
    _add_robustness,
    _add_benchmark,
    _add_report,
    _add_pretrain,
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(prog="ecgadapt", description=__doc__)
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


if __name__ == "__main__":
    sys.exit(main())
