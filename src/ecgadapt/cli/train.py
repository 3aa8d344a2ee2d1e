"""``finetune`` (one run) and the tools on a finished run: ``evaluate``, ``predict``, ``export``, ``calibrate``,
``robustness``."""

from __future__ import annotations

import argparse

from ecgadapt.cli.flags import (
    DATA_HELP,
    calibration_flags,
    data_flag,
    device_flag,
    labels_flag,
    logger_flag,
    run_dir_arg,
    source_flag,
    with_default,
)
from ecgadapt.weights import DEFAULT_MODEL


def add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on a dataset's task with a recipe (writes a run directory)",
        description="Precedence: defaults < recipe preset < --config YAML < explicit flags < --set.",
    )
    data_flag(p, dest="data__root", required=False)
    p.add_argument(
        "--task",
        dest="data__task",
        metavar="TASK",
        help=with_default(
            "all, diagnostic, subdiagnostic, superdiagnostic, form or rhythm", "superdiagnostic"
        ),
    )
    p.add_argument(
        "--model",
        dest="model__name",
        metavar="NAME",
        help=with_default(
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
        help=with_default(
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
        help=with_default("fraction of the training split (0, 1]", "1.0"),
    )
    p.add_argument(
        "--seed",
        type=int,
        help=with_default("run seed (model head init, shuffling, crops, fraction subsample)", "0"),
    )
    p.add_argument(
        "--rate",
        dest="data__rate",
        type=int,
        metavar="HZ",
        help=with_default("sampling rate of the records read (100 or 500)", "100"),
    )
    source_flag(p, dest="data__source", default=None, shown="ptbxl")
    labels_flag(p, dest="data__labels")
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
        help=with_default("records per batch", "64"),
    )
    p.add_argument(
        "--num-workers",
        dest="training__num_workers",
        type=int,
        metavar="N",
        help=with_default("data-loader processes (0: load in the training process)", "0"),
    )
    device_flag(p, dest="training__device", default=None, shown="auto")
    p.add_argument(
        "--eval-windows",
        dest="training__eval_windows",
        type=int,
        metavar="N",
        help=with_default("crops averaged at val/test", "1"),
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
    logger_flag(p, dest="training__logger")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.bench.tune import run_tuned, tune_overrides
        from ecgadapt.engine.distributed import refuse_under_torchrun
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
            refuse_under_torchrun("`ecgadapt finetune --tune`")
            run_tuned(cfg, resume=args.resume, overwrite=args.overwrite, jobs=args.jobs)
        else:
            run_finetune(cfg, resume=args.resume, overwrite=args.overwrite)
        return 0

    p.set_defaults(func=run)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="re-score a finished run's best checkpoint on a split")
    run_dir_arg(p)
    p.add_argument(
        "--split", choices=("test", "val", "train"), default="test", help="split of the run's dataset"
    )
    p.add_argument(
        "--eval-windows", type=int, default=None, help="crops averaged per record (default: the run's)"
    )
    device_flag(p)
    p.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    calibration_flags(p, "score the raw probabilities, not the temperature-scaled ones")
    data_flag(p, required=False, help_text=f"score on this external dataset instead of a split: {DATA_HELP}")
    source_flag(p, default="folder")
    labels_flag(p)
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


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="class probabilities of WFDB records or .npy arrays from a finished run"
    )
    run_dir_arg(p)
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
    device_flag(p)
    calibration_flags(p, "raw probabilities, not the run's temperature-scaled ones")

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


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a finished run's network to ONNX or TorchScript, with FILE.json saying how to feed it",
        description="FILE takes preprocessed windows (N, 12, L) at the run's rate and returns logits (N, C); "
        "FILE.json holds the rate, filter, normalisation, windows, class names and temperatures that reproduce "
        "'ecgadapt predict'. ONNX needs pip install \"ecgadapt[export]\".",
    )
    run_dir_arg(p)
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


def add_calibrate(sub: argparse._SubParsersAction) -> None:
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
    run_dir_arg(p)
    p.add_argument(
        "--mode",
        choices=("global", "per_class", "none"),
        default=None,
        help="one temperature, one per class, or none (removes calibration.json); default: the run's "
        "training.calibration (global for a site when that is none)",
    )
    data_flag(p, required=False, help_text=f"fit on this external site instead: {DATA_HELP}")
    source_flag(p, default="folder")
    labels_flag(p)
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
    device_flag(p)
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


def add_robustness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness",
        help="score a finished run's test split under seeded corruptions (writes robustness.csv and .png)",
        description="Corruptions (severity 0 = clean): gaussian_noise, electrode_motion (SNR 24-0 dB), "
        "baseline_wander, powerline_50hz, powerline_60hz, amplitude_scaling, time_shift, zeroed_leads, lead_sets "
        "(six limb leads, I + II, II alone). Seeded: a rerun gives the same table.",
    )
    run_dir_arg(p, dest="run_dirs", nargs="+")
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
    device_flag(p)
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
