"""Wall and CPU time of a 40-epoch fine-tune on ptbxl-2285, before and after the speed work (issue 19, section 4).

Two runs, started together as ``benchmark --jobs 2`` runs them (one torch thread each, on a 2-core machine):

- ``post_training``: the default encoder (``xresnet1d_tiny``, bundled weights), a 10-epoch probe then 30 epochs
  of regularised fine-tuning;
- ``xresnet1d101_scratch``: ``xresnet1d101`` from random weights, 40 epochs.

Each *variant* is a source tree (``--variant NAME SRC [KEY=VALUE ...]``: ``SRC`` goes first on ``PYTHONPATH``,
the ``KEY=VALUE`` items are config overrides as ``--set`` takes them), so "before" can be the code of an earlier
commit, e.g. ``git archive 8d83a7d src | tar -x -C /tmp/before``. Variants alternate round by round, so a change
in the machine's load hits them alike. Every run is a process of this script that calls that tree's
``run_finetune`` (early stopping off: ``patience=null``, the budget's full cost; ``training.min_steps=0``) and
records wall and CPU seconds (its own and its reaped loader workers') at the start, after every epoch and at the
end. On a machine shared with other jobs the wall time depends on the load; the CPU time hardly does, and on an
otherwise idle machine a run without loader workers takes about its CPU time.

A full 40-epoch pair takes 10-30 minutes on the shared 2-core machine, so by default each stage runs
``--epochs`` epochs and the 40-epoch time is extrapolated: what was measured + per stage the epochs it did not
run times the median of its epochs after the first (the first fills the preprocessing memo or computes the
probe's features). ``--full`` runs the real 40 epochs instead.

Usage (one thread per run; the script sets ``OMP_NUM_THREADS=1`` for the runs)::

    python benchmarks/speed_finetune.py --data ../shared/data/ptbxl-2285 --out runs/speed \\
        --variant before /tmp/before/src --variant after src \\
        --markdown benchmarks/results/speed-finetune-ptbxl2285.md --json benchmarks/results/speed-finetune-ptbxl2285.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES: dict[str, dict] = {
    "post_training": {
        "flags": {"model__name": "xresnet1d_tiny", "recipe": "post_training"},
        "epochs": [10, 30],
    },
    "xresnet1d101_scratch": {"flags": {"model__name": "xresnet1d101", "recipe": "scratch"}, "epochs": [40]},
}
"""Each case's config (as ``ecgadapt finetune`` flags) and its stages' full lengths in epochs (the presets')."""


def child_command(case: str, variant: dict, args: argparse.Namespace, out: Path, record: Path) -> list[str]:
    """This script, as the process that runs one case (early stopping off, each stage's epochs as measured)."""
    full = CASES[case]["epochs"]
    sets = ["training.min_steps=0", "training.device=cpu", "training.progress=false"]
    for i, n in enumerate(full):
        sets += [
            f"recipe.stages.{i}.patience=null",
            f"recipe.stages.{i}.epochs={n if args.full else args.epochs}",
        ]
    sets += variant["sets"]
    cmd = [sys.executable, __file__, "--child", case, str(out), str(record), "--data", str(args.data)]
    cmd += ["--task", args.task, *[f"--set={item}" for item in sets]]
    return cmd


def run_child(case: str, out: Path, record: Path, args: argparse.Namespace) -> None:
    """Run one case with ``run_finetune`` (the ecgadapt on ``PYTHONPATH``), recording wall and CPU seconds
    (this process and its reaped loader workers) at the start, after every epoch, and at the end."""
    import torch

    from ecgadapt.train.config import build_config
    from ecgadapt.train.finetune import run_finetune

    torch.set_num_threads(1)
    stamps = [{"event": "start", **clock()}]

    def on_epoch(event: str, info: dict) -> None:
        if event == "epoch_end":
            stamps.append(
                {"event": "epoch", "stage": int(info["stage"]), "epoch_s": info["time_s"], **clock()}
            )

    cfg = build_config(
        data__root=str(args.data),
        data__task=args.task,
        data__rate=100,
        seed=0,
        out=str(out),
        set_items=args.sets,
        **CASES[case]["flags"],
    )
    run_finetune(cfg, overwrite=True, callbacks=[on_epoch])
    stamps.append({"event": "end", **clock()})
    record.write_text(json.dumps(stamps))


def clock() -> dict:
    """Wall seconds and CPU seconds of this process and of its reaped children (loader workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    return {"wall": time.perf_counter(), "cpu": cpu}


def run_pair(variant: dict, args: argparse.Namespace, round_no: int) -> list[dict]:
    """Start every case of ``variant`` at once (or one after another with ``--alone``); their timings."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(variant["src"]).resolve()), env.get("PYTHONPATH", "")])
    load_before = os.getloadavg()[0]
    started = []
    for case in args.cases:
        name = f"{variant['name']}-{case}-r{round_no}"
        out, record, log = args.out / name, args.out / f"{name}.json", (args.out / f"{name}.log").open("w")
        cmd = child_command(case, variant, args, out, record)
        started.append(
            (case, record, log, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        )
        if args.alone:
            started[-1][3].wait()
    results = []
    for case, record, log, proc in started:
        rc = proc.wait()
        log.close()
        if rc != 0:
            raise SystemExit(f"{variant['name']} {case} failed (exit {rc}); see {log.name}")
        stamps = json.loads(record.read_text())
        results.append(
            {"case": case, "variant": variant["name"], "round": round_no, **extrapolate(case, stamps)}
        )
        results[-1].update(load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2))
    return results


def extrapolate(case: str, stamps: list[dict]) -> dict:
    """Measured wall and CPU seconds, and both extrapolated to the case's full budget: what was measured plus,
    per stage, the epochs it did not run times the median of its later epochs (the first one fills the memo)."""
    out: dict = {"epochs_run": [], "later_epoch_wall_s": [], "later_epoch_cpu_s": []}
    for key in ("wall", "cpu"):
        measured = stamps[-1][key] - stamps[0][key]
        extra = 0.0
        for i, full in enumerate(CASES[case]["epochs"]):
            rows = [j for j, s in enumerate(stamps) if s.get("stage") == i]
            later = [stamps[j][key] - stamps[j - 1][key] for j in rows[1:]] or [
                stamps[rows[0]][key] - stamps[0][key]
            ]
            extra += (full - len(rows)) * statistics.median(later)
            out[f"later_epoch_{key}_s"].append(round(statistics.median(later), 2))
            if key == "wall":
                out["epochs_run"].append(len(rows))
        out[f"{key}_s"], out[f"budget_{key}_s"] = round(measured, 1), round(measured + extra, 1)
    return out


def markdown(results: list[dict], args: argparse.Namespace, argv: list[str]) -> str:
    """The per-run table, the summary per variant and case, and the exact command."""
    mode = "the full 40 epochs" if args.full else f"{args.epochs} epochs per stage, extrapolated to 40"
    lines = [
        "# 40-epoch fine-tunes on ptbxl-2285, before and after",
        "",
        f"Command: `{' '.join(argv)}`.",
        "",
        f"Settings: {args.data.name} at 100 Hz, task {args.task}, seed 0, early stopping off, {mode}; "
        f"{'one run at a time' if args.alone else 'the two runs started together'}, one torch thread each; CPU "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs). "
        "Variants: "
        + "; ".join(
            f"`{v['name']}` = `{v['src']}`" + (f" with `{' '.join(v['sets'])}`" if v["sets"] else "")
            for v in args.variants
        )
        + ".",
        "",
        "*wall* is elapsed time, *CPU* the run's CPU time with its loader workers' (on an otherwise idle machine, "
        "where each of the two runs has a core, a run without workers takes its CPU time). Later epoch: the "
        "median of each stage's epochs after its first.",
        "",
        "| variant | round | run | epochs run | wall s | CPU s | later epoch wall / CPU s | 40-epoch wall s (min) "
        "| 40-epoch CPU s (min) | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        later = ", ".join(
            f"{w:.1f} / {c:.1f}" for w, c in zip(r["later_epoch_wall_s"], r["later_epoch_cpu_s"])
        )
        lines.append(
            f"| {r['variant']} | {r['round']} | {r['case']} | {'+'.join(map(str, r['epochs_run']))} | "
            f"{r['wall_s']:.0f} | {r['cpu_s']:.0f} | {later} | {r['budget_wall_s']:.0f} ({r['budget_wall_s'] / 60:.1f}) | "
            f"{r['budget_cpu_s']:.0f} ({r['budget_cpu_s'] / 60:.1f}) | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    lines += ["", "Median over rounds of the 40-epoch budget, minutes (wall / CPU):", ""]
    lines += ["| variant | " + " | ".join(args.cases) + " |", "|---|" + "---|" * len(args.cases)]
    for v in args.variants:
        cells = []
        for case in args.cases:
            rows = [r for r in results if r["variant"] == v["name"] and r["case"] == case]
            wall = statistics.median(r["budget_wall_s"] for r in rows) / 60 if rows else None
            cpu = statistics.median(r["budget_cpu_s"] for r in rows) / 60 if rows else None
            cells.append("-" if wall is None else f"{wall:.1f} / {cpu:.1f}")
        lines.append(f"| {v['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_variant(items: list[str]) -> dict:
    """``NAME SRC [KEY=VALUE ...]`` -> a variant."""
    if len(items) < 2:
        raise SystemExit("--variant needs NAME SRC [KEY=VALUE ...]")
    return {"name": items[0], "src": items[1], "sets": items[2:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ptbxl-2285"))
    p.add_argument("--out", type=Path, default=Path("runs/speed"))
    p.add_argument("--task", default="superdiagnostic")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument(
        "--variant",
        dest="variants",
        nargs="+",
        action="append",
        default=[],
        metavar="ITEM",
        help="NAME SRC [KEY=VALUE ...]",
    )
    p.add_argument("--epochs", type=int, default=4, help="epochs per stage (extrapolated to the full budget)")
    p.add_argument("--full", action="store_true", help="run the full budget (no extrapolation)")
    p.add_argument("--rounds", type=int, default=1, help="rounds; variants alternate within each")
    p.add_argument("--alone", action="store_true", help="one run at a time instead of the pair together")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--child", nargs=3, metavar=("CASE", "OUT", "RECORD"), help=argparse.SUPPRESS)
    p.add_argument("--set", dest="sets", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        case, out, record = args.child
        run_child(case, Path(out), Path(record), args)
        return 0
    if not args.variants:
        p.error("give at least one --variant NAME SRC [KEY=VALUE ...]")
    args.variants = [parse_variant(v) for v in args.variants]
    args.out.mkdir(parents=True, exist_ok=True)
    argv_text = ["python", "benchmarks/speed_finetune.py", *(sys.argv[1:] if argv is None else argv)]
    results: list[dict] = []
    for round_no in range(1, args.rounds + 1):
        order = args.variants if round_no % 2 else args.variants[::-1]
        for variant in order:
            results += run_pair(variant, args, round_no)
            for r in results[-len(args.cases) :]:
                print(json.dumps(r), flush=True)
            if args.json:
                args.json.write_text(json.dumps({"argv": argv_text, "results": results}, indent=2) + "\n")
    text = markdown(results, args, argv_text)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
