"""FLOPs per sample of every registered model, and the projected GPU cost of one ``paper-main`` cell (issue 23).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/gpu_projection.py [--loader full-size.json] [--mfu 0.3]
        [--models NAME ...] [--flops-json flops.json] [--markdown projection.md]

**FLOPs.** Each model is built at its native input (batch 2, training mode) and run under
:class:`torch.utils.flop_counter.FlopCounterMode`: once forward only, once forward and backward of a summed
output. Attention runs on PyTorch's math backend while counting, because the counter does not see the fused CPU
kernel, and a convolution's backward is counted as two forward passes (PyTorch's formula ignores ``groups``).
The counter counts matrix products and convolutions (the work a GPU's tensor cores do); norms,
activations and the optimiser step are left out, as in the usual MFU definition.

**Projection.** The GPU's training speed is ``peak x MFU / (training FLOPs per sample)``; evaluation and a
frozen backbone's probe run at ``peak x MFU / (forward FLOPs per sample)``. ``--loader`` reads the data-path
throughput that ``benchmarks/full_size.py`` measured (items/s with 0, 1 and 2 loader workers, today's path and
the stored preprocessing): the loader becomes the bottleneck once the GPU trains faster than that, and the
workers a GPU needs are its training speed over one worker's throughput (one core per worker). A cell's time
is the sum over its fits (a tuned recipe trains every candidate on the validation fold, then scores the chosen
one on the test fold) of every stage's epochs at its full budget, without early stopping: an upper bound. Each
epoch costs ``max(GPU time, loader time)`` for its training items and for fold 9's validation items.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import (  # noqa: E402  (a sibling script, not a package)
    H200_BF16_DENSE_PEAK_TFLOPS,
    count_flops,
    example_input,
)
from ecgadapt.models import create_model, list_models  # noqa: E402

DEFAULT_MFU = 0.30
"""Model FLOPs utilisation assumed for the projection: a plausible figure for a ViT-B-sized encoder trained in bf16
at batch 64 with fused attention, not a measurement (``benchmarks/gpu_check.sh`` measures it on a GPU)."""

PAPER_MAIN_RECORDS = {"train": 17418, "val": 2183, "test": 2198}
"""PTB-XL 1.0.3's records in folds 1-8, 9 and 10 (``ecgadapt.data.synthetic.PTBXL_FOLD_SIZES``); a task drops the
records without a label in it, so these are upper bounds (``all`` and ``superdiagnostic`` keep nearly all)."""


def model_flops(name: str, batch: int = 2) -> dict:
    """FLOPs per sample (forward, backward, training) of the registered model ``name`` at its native input."""
    row: dict = {"model": name}
    try:
        torch.manual_seed(0)
        model = create_model(name, num_classes=5).train()
        x = example_input(model, batch, torch.device("cpu"))
        forward, total = count_flops(model, x)
    except Exception as exc:  # report and go on with the next model
        row["note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row
    row.update(
        params=sum(p.numel() for p in model.parameters()),
        input_shape=list(x.shape[1:]),
        forward=forward / batch,
        backward=(total - forward) / batch,
        train=total / batch,
    )
    return row


def flops_table(rows: list[dict]) -> str:
    """FLOPs per sample as a Markdown table."""
    lines = [
        "| model | params (M) | input | forward GFLOPs | forward + backward GFLOPs | "
        f"H200 training samples/s at 100% / {DEFAULT_MFU:.0%} MFU |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if "train" not in r:
            lines.append(f"| `{r['model']}` | | | | | {r.get('note', '')} |")
            continue
        peak = H200_BF16_DENSE_PEAK_TFLOPS * 1e12 / r["train"]
        lines.append(
            f"| `{r['model']}` | {r['params'] / 1e6:.2f} | {'x'.join(map(str, r['input_shape']))} | "
            f"{r['forward'] / 1e9:.2f} | {r['train'] / 1e9:.2f} | {peak:,.0f} / {peak * DEFAULT_MFU:,.0f} |"
        )
    return "\n".join(lines)


def loader_rates(loader: dict) -> dict[tuple[str, int], float]:
    """Steady-state items/s per (path, workers) from ``full_size.py``'s JSON: the last epoch of each run at the
    default memo limit (the memo's later epochs are what a long run sees)."""
    rates: dict[tuple[str, int], float] = {}
    for run in loader["runs"]:
        if run["path"] == "computed" and run["memo"] != "default":
            continue
        rates[(run["path"], run["workers"])] = run["epochs"][-1]["items_per_s"]
    return rates


def fit_stages(cfg, n_train: int) -> list[tuple[str, int]]:
    """``(trainable, epochs)`` of every stage of the fit ``cfg`` at its full budget for ``n_train`` records."""
    from ecgadapt.train.finetune import run_plans

    return [(s.trainable, p.epochs) for s, p in zip(cfg.recipe.stages, run_plans(cfg, n_train))]


def paper_main_fits() -> dict[str, dict]:
    """Per recipe label of ``paper-main``: how many fits one cell trains, the stages of each, and its cell count."""
    from ecgadapt.bench.cells import expand_cells
    from ecgadapt.bench.spec import load_spec

    spec = load_spec("paper-main", sets=["models.0.weights=null"])  # weights are not read here
    out: dict[str, dict] = {}
    for cell in expand_cells(spec, "/nonexistent-data", "/nonexistent-results"):
        run = cell.runs[0]
        fits = run.candidates or [run]
        entry = out.setdefault(
            cell.recipe_label,
            {
                "fits": len(fits),
                "stages": fit_stages(fits[0].config, PAPER_MAIN_RECORDS["train"]),
                "eval_windows": fits[0].config.training.eval_windows,
                "model": fits[0].config.model.name,
                "cells": 0,
            },
        )
        entry["cells"] += 1
    return out


def fit_seconds(
    stages: list[tuple[str, int]],
    eval_windows: int,
    gpu_train: float,
    gpu_forward: float,
    loader: float | None = None,
    workers: int = 1,
) -> float:
    """Seconds of one fit at full budget: every epoch's training items and fold 9's validation items.

    With loader workers (``workers`` >= 1) loading overlaps the GPU, so each part takes ``max(GPU, loader)``;
    without (0 workers) the main process loads every batch before the GPU runs it, so the times add up."""
    n_train, n_val = PAPER_MAIN_RECORDS["train"], PAPER_MAIN_RECORDS["val"]

    def at(items: float, gpu_rate: float) -> float:
        if not loader:
            return items / gpu_rate
        if workers == 0:
            return items / gpu_rate + items / loader
        return max(items / gpu_rate, items / loader)

    total = 0.0
    for trainable, epochs in stages:
        gpu = gpu_forward if trainable == "head" else gpu_train  # a probe's backbone runs forward only
        total += epochs * (at(n_train, gpu) + at(n_val * eval_windows, gpu_forward))
    return total


def cell_seconds(
    recipe: dict, gpu_train: float, gpu_forward: float, loader: float | None, workers: int
) -> float:
    """Seconds of one cell of ``recipe``: every fit, then the chosen one scored on fold 10."""
    fit = fit_seconds(recipe["stages"], recipe["eval_windows"], gpu_train, gpu_forward, loader, workers)
    return recipe["fits"] * fit + PAPER_MAIN_RECORDS["test"] / gpu_forward


def projection(flops: dict, loader: dict | None, mfu: float) -> tuple[str, dict]:
    """The paper-main cell's projection as Markdown, and its numbers."""
    peak = H200_BF16_DENSE_PEAK_TFLOPS * 1e12
    gpu_train = peak * mfu / flops["train"]
    gpu_forward = peak * mfu / flops["forward"]
    recipes = paper_main_fits()
    n_cells = sum(r["cells"] for r in recipes.values())

    def grid_hours(rate: float | None, workers: int) -> float:
        return (
            sum(r["cells"] * cell_seconds(r, gpu_train, gpu_forward, rate, workers) for r in recipes.values())
            / 3600
        )

    numbers: dict = {"gpu_train_samples_s": gpu_train, "gpu_forward_samples_s": gpu_forward, "recipes": {}}
    lines = [
        f"H200 bf16 dense peak {H200_BF16_DENSE_PEAK_TFLOPS:g} TFLOPS at {mfu:.0%} MFU: `{flops['model']}` "
        f"({flops['train'] / 1e9:.0f} GFLOPs per training sample, {flops['forward'] / 1e9:.0f} forward) trains at "
        f"{gpu_train:,.0f} samples/s and scores (forward only) at {gpu_forward:,.0f} samples/s. Budgets in full "
        "(no early stopping): upper bounds.",
        "",
        "| recipe | fits per cell | stages (trainable x epochs) | GPU-bound hours per cell | cells |",
        "|---|---:|---|---:|---:|",
    ]
    for label, r in recipes.items():
        seconds = cell_seconds(r, gpu_train, gpu_forward, None, 1)
        numbers["recipes"][label] = {"fits": r["fits"], "gpu_seconds": seconds, "cells": r["cells"]}
        stages = ", ".join(f"{t} x {e}" for t, e in r["stages"])
        lines.append(f"| {label} | {r['fits']} | {stages} | {seconds / 3600:.2f} | {r['cells']} |")
    numbers["grid_gpu_hours"] = grid_hours(None, 1)
    lines += ["", f"The whole grid, {n_cells} cells, GPU-bound: {numbers['grid_gpu_hours']:,.0f} H200-hours."]
    if loader:
        rates = loader_rates(loader)
        lines += [
            "",
            "| data path | loader workers | loader items/s (this CPU) | the loader is the bottleneck above | "
            "workers this GPU needs (1 core each) | whole grid, hours |",
            "|---|---:|---:|---|---:|---:|",
        ]
        numbers["loader"] = {}
        for (path, workers), rate in sorted(rates.items()):
            per_worker = rates.get((path, 1), rate)
            need = max(1, math.ceil(gpu_train / per_worker))
            limit = "always (no overlap)" if workers == 0 else f"{rate:,.0f} samples/s"
            hours = grid_hours(rate, workers)
            numbers["loader"][f"{path}/{workers}"] = {
                "items_s": rate,
                "workers_needed": need,
                "grid_hours": hours,
            }
            lines.append(f"| {path} | {workers} | {rate:,.0f} | {limit} | {need} | {hours:,.0f} |")
    return "\n".join(lines), numbers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="+", default=None, help="models to count (default: every registered one)"
    )
    p.add_argument("--projected", default="st_mem_vit_b75", help="the paper-main model to project")
    p.add_argument("--loader", type=Path, default=None, help="benchmarks/full_size.py's JSON output")
    p.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="model FLOPs utilisation assumed")
    p.add_argument(
        "--flops-json", type=Path, default=None, help="write (or, with --reuse, read) the FLOPs here"
    )
    p.add_argument("--reuse", action="store_true", help="read --flops-json instead of counting again")
    p.add_argument("--markdown", type=Path, default=None, help="write both tables here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    if args.reuse and args.flops_json and args.flops_json.is_file():
        rows = json.loads(args.flops_json.read_text())["models"]
    else:
        rows = []
        for name in args.models or list_models():
            t0 = time.perf_counter()
            rows.append(model_flops(name))
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.flops_json:
            args.flops_json.parent.mkdir(parents=True, exist_ok=True)
            args.flops_json.write_text(json.dumps({"models": rows}, indent=2) + "\n")
    text = "**FLOPs per sample** (FlopCounterMode, batch 2, native input)\n\n" + flops_table(rows)
    chosen = next((r for r in rows if r["model"] == args.projected and "train" in r), None)
    if chosen is not None:
        loader = json.loads(args.loader.read_text())["loader"] if args.loader else None
        table, _ = projection(chosen, loader, args.mfu)
        text += f"\n\n**Projected cost of one `paper-main` cell** (`{args.projected}`)\n\n" + table
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
