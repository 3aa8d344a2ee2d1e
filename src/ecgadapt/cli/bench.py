"""``benchmark`` (a grid from a spec), ``report`` (of a results folder) and ``demo``."""

from __future__ import annotations

import argparse

from ecgadapt.cli.flags import data_flag, labels_flag, logger_flag, source_flag


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded synthetic dataset")
    p.add_argument("--out", default="ecgadapt_demo", help="folder for the demo's data, cache and runs")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to compare over")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.demo import run_demo

        run_demo(out_dir=args.out, seeds=args.seeds)
        return 0

    p.set_defaults(func=run)


def add_benchmark(sub: argparse._SubParsersAction) -> None:
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
    data_flag(p)
    source_flag(p, default=None, shown="ptbxl")
    labels_flag(p)
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
    logger_flag(p, dest="logger")

    def run(args: argparse.Namespace) -> int:
        from ecgadapt.bench.grid import run_benchmark
        from ecgadapt.engine.distributed import refuse_under_torchrun

        refuse_under_torchrun("`ecgadapt benchmark`")

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


def add_report(sub: argparse._SubParsersAction) -> None:
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
