"""One ``paper-main`` cell on a full-size synthetic PTB-XL for a fixed number of steps, timed, and its wall time
extrapolated to the whole ``paper-main`` grid (issue 23; ``benchmarks/gpu_check.sh`` runs it).

Usage: python benchmarks/gpu_cell.py --work DIR --out cell.json [--markdown cell.md] [--records 21799]
       [--steps 60] [--device cuda] [--workers N] [--set KEY=VALUE ...]

1. ``ecgadapt.data.synthetic`` writes ``--records`` synthetic records in PTB-XL layout at 500 Hz (PTB-XL has
   21,799: folds 1-8 train, 9 validation, 10 test) and ``prepare`` caches them at the spec's rate; both are
   timed.
2. The first cell of ``paper-main`` (``superdiagnostic``, the literal ``baseline_ft``, seed 0, random init: the
   weights do not change the speed) fine-tunes for ``--steps`` optimiser steps (one epoch of that many
   batches), then scores validation fold 9 once and test fold 10, as a cell does. A callback times every step.
3. The steady step time (the median after ``WARMUP_STEPS``), the validation pass and the test pass are
   extrapolated to every fit of every ``paper-main`` cell at the real PTB-XL's 17,418 / 2,183 / 2,198 records:
   each stage's full budget in steps (no early stopping: an upper bound), a probe's step costed as a forward
   pass of its batch (its frozen backbone runs forward only), fold 9 scored every epoch, the chosen fit's test
   fold once. ``--set`` edits the spec for both the cell and the extrapolation (e.g. another model).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from ecgadapt.bench.cells import expand_cells
from ecgadapt.bench.spec import load_spec
from ecgadapt.data import synthetic
from ecgadapt.data.cache import load_or_prepare
from ecgadapt.train.finetune import run_finetune, run_plans

PTBXL_RECORDS = {"train": 17418, "val": 2183, "test": 2198}
"""PTB-XL 1.0.3's records in folds 1-8, 9 and 10 (a task drops unlabelled records: an upper bound)."""
WARMUP_STEPS = 3
"""Steps left out of the steady step time (CUDA's first kernels, the first batches' preprocessing)."""
SPEC = "paper-main"


def cell_sets(sets: list[str], steps: int, device: str) -> list[str]:
    """The spec edits that make paper-main's first cell a fixed number of steps on ``device``."""
    return [
        "tasks=[superdiagnostic]",
        "seeds=[0]",
        "recipes=[baseline_ft]",
        "models.0.weights=null",
        *sets,
        "budget_epochs=null",
        "stage_overrides.epochs=1",
        f"training.max_train_batches={steps}",
        "training.min_steps=0",
        f"training.device={device}",
        "training.progress=false",
    ]


def generate(root: Path, records: int, workers: int) -> float:
    """Write the synthetic dataset (500 Hz records only); seconds taken (about 0 when it was already there).

    Where the generator takes them (the full-size work of issue 23, section 1), the folds get PTB-XL's own sizes
    scaled to ``records`` and ``workers`` processes write the records; else the folds are balanced."""
    params = inspect.signature(synthetic.write_synthetic_ptbxl).parameters
    kwargs: dict = {}
    if "workers" in params:
        kwargs["workers"] = workers
    if "fold_sizes" in params and hasattr(synthetic, "ptbxl_fold_sizes"):
        kwargs["fold_sizes"] = synthetic.ptbxl_fold_sizes(records)
    t0 = time.perf_counter()
    synthetic.write_synthetic_ptbxl(root, n_records=records, seed=0, rates=(500,), **kwargs)
    return time.perf_counter() - t0


class StepTimer:
    """A fit callback: the time of every optimiser step and of each epoch's end."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps: list[float] = []
        self.epoch_ends: list[float] = []

    def __call__(self, event: str, info: dict) -> None:
        now = time.perf_counter()
        if event == "batch_end":
            self.steps.append(now)
        elif event == "epoch_end":
            self.epoch_ends.append(now)

    def step_seconds(self) -> float:
        """The median step time after the warm-up steps (all steps when there are too few)."""
        times = [self.start, *self.steps]
        gaps = [b - a for a, b in zip(times, times[1:])]
        steady = gaps[WARMUP_STEPS:] or gaps
        return statistics.median(steady)


def grid_extrapolation(
    sets: list[str], step_s: float, batch: int, val_items_s: float, test_items_s: float
) -> dict:
    """Seconds of every ``paper-main`` cell at the real PTB-XL's sizes from the measured rates."""
    spec = load_spec(SPEC, ["models.0.weights=null", *sets])
    cells = expand_cells(spec, "/nonexistent-data", "/nonexistent-results")
    total, fits, steps = 0.0, 0, 0
    for cell in cells:
        for run in cell.runs:
            for fit in run.candidates or [run]:
                fits += 1
                cfg = fit.config
                val_s = PTBXL_RECORDS["val"] * cfg.training.eval_windows / val_items_s
                for stage, plan in zip(cfg.recipe.stages, run_plans(cfg, PTBXL_RECORDS["train"])):
                    per_step = step_s if stage.trainable != "head" else batch / val_items_s
                    total += plan.max_steps * per_step + plan.epochs * val_s
                    steps += plan.max_steps
            total += PTBXL_RECORDS["test"] * run.config.training.eval_windows / test_items_s
    return {"cells": len(cells), "fits": fits, "optimiser_steps": steps, "seconds": total}


def markdown(r: dict) -> str:
    """The measurements and the extrapolation as a Markdown table."""
    g = r["grid"]
    rows = [
        ("device", r["device_name"]),
        ("model, batch", f"`{r['model']}`, {r['batch_size']} (loader workers: {r['num_workers']})"),
        ("synthetic PTB-XL written", f"{r['records']:,} records at 500 Hz in {r['generate_s']:.0f} s"),
        ("prepared", f"at {r['rate']} Hz in {r['prepare_s']:.0f} s"),
        (
            "training step (steady median)",
            f"{r['step_s'] * 1000:.1f} ms = {r['train_samples_s']:,.0f} samples/s",
        ),
        (
            "fold 9 scored",
            f"{r['val_items']:,} items in {r['val_s']:.1f} s = {r['val_items_s']:,.0f} items/s",
        ),
        ("fold 10 scored", f"{r['test_items']:,} items in {r['test_s']:.1f} s"),
        ("peak GPU memory", f"{r['peak_mem_gib']:.1f} GiB" if r.get("peak_mem_gib") is not None else "n/a"),
        ("this cell's wall time", f"{r['cell_wall_s']:.0f} s for {r['steps']} steps"),
        (
            f"whole {SPEC} grid (upper bound)",
            f"{g['cells']} cells, {g['fits']:,} fits, {g['optimiser_steps']:,} steps: "
            f"{g['seconds'] / 3600:,.1f} GPU-hours on one such device",
        ),
    ]
    return "\n".join(["| measured | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="folder for the dataset, its cache and the run")
    p.add_argument("--out", type=Path, required=True, help="write the numbers as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown here")
    p.add_argument("--records", type=int, default=21799)
    p.add_argument("--steps", type=int, default=60, help="optimiser steps the cell trains")
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes that write and prepare"
    )
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="spec edit")
    args = p.parse_args(argv)

    root, results = args.work / "ptbxl", args.work / "results"
    generate_s = generate(root, args.records, args.workers)
    spec = load_spec(SPEC, cell_sets(args.sets, args.steps, args.device))
    cell = expand_cells(spec, root, results)[0]
    cfg = cell.runs[0].config
    cfg.data.cache_dir = str(args.work / "cache")
    t0 = time.perf_counter()
    cache = load_or_prepare(
        root, cfg.data.rate, cache_dir=cfg.data.cache_dir, workers=args.workers, progress=False
    )
    prepare_s = time.perf_counter() - t0

    if torch.cuda.is_available() and args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    t0 = time.perf_counter()
    run = run_finetune(cfg, overwrite=True, callbacks=[timer], cache=cache)
    cell_wall_s = time.perf_counter() - t0
    final = json.loads((run / "final.json").read_text())
    val_items = final["n_records"]["val"] * cfg.training.eval_windows
    test_items = final["n_records"]["test"] * cfg.training.eval_windows
    val_s = timer.epoch_ends[0] - timer.steps[-1]  # the epoch's end: fold 9 scored, checkpoints written
    test_s = final["timings"]["test_eval_s"]
    step_s = timer.step_seconds()
    batch = cfg.training.batch_size
    result = {
        "device": final["device"],
        "device_name": torch.cuda.get_device_name(0) if final["device"].startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "model": cfg.model.name,
        "batch_size": batch,
        "num_workers": cfg.training.num_workers,
        "rate": cfg.data.rate,
        "records": args.records,
        "generate_s": generate_s,
        "prepare_s": prepare_s,
        "steps": len(timer.steps),
        "step_s": step_s,
        "train_samples_s": batch / step_s,
        "val_items": val_items,
        "val_s": val_s,
        "val_items_s": val_items / val_s,
        "test_items": test_items,
        "test_s": test_s,
        "cell_wall_s": cell_wall_s,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30
        if final["device"].startswith("cuda")
        else None,
        "sets": args.sets,
    }
    result["grid"] = grid_extrapolation(args.sets, step_s, batch, val_items / val_s, test_items / test_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    if args.markdown is not None:
        args.markdown.write_text(table + "\n")
    print(table)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
