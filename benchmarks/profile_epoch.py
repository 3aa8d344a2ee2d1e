"""Where one fine-tuning epoch spends its time on ptbxl-2285 (issue 19, "Profile first").

Three runs of ``ecgadapt finetune``'s own code path (``run_finetune``; the fit loop is not copied, only timed):

- ``default_finetune``: the default encoder (``xresnet1d_tiny``, bundled weights), ``baseline_ft``: every
  parameter trains;
- ``default_probe``: the same encoder, ``linear_probe``: a frozen backbone (features under ``no_grad``), the head
  trains;
- ``xresnet1d101_scratch``: ``xresnet1d101`` from random weights, ``scratch``.

Each runs ``--epochs`` epochs (the first fills the remembered-preprocessing memo, later ones reuse it) with
``training.min_steps=0``, so the budget is exactly those epochs. Timers wrap the loop's phases from outside, by
patching the names the loop calls: batches drawn from the loader (loading + preprocessing + collation, per split),
``ECGDataset.__getitem__`` (the preprocessing share), the forward pass (the loop's ``autocast`` block),
``Tensor.backward``, gradient clipping and the optimiser step, fold-9 scoring (``predict_loader``: every
validation record x ``eval_windows`` windows, then ``score``), and checkpoint writes. What is left of an epoch is
"other". After the fit, ``run_finetune`` scores fold 10 and fits the temperature: reported as one "after fit"
number. Each case runs once per ``--workers`` value: with 0 loader workers the data loading runs in this process
and is attributed (data, of which preprocessing); with the default 2 workers "data" is only the time the loop
waits for a batch, and the preprocessing happens in the workers (new processes every epoch, each with an empty
memo).

Usage (one thread, as a run under ``--jobs 2`` on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --data ../shared/data/ptbxl-2285 \\
        --out runs/profile-epoch --markdown benchmarks/results/profile-epoch-ptbxl2285.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.data import dataloader

import ecgadapt.engine.loop as loop
import ecgadapt.train.finetune as finetune
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.train.config import build_config
from ecgadapt.train.finetune import run_finetune

CASES: dict[str, dict] = {
    "default_finetune": {"model__name": "xresnet1d_tiny", "recipe": "baseline_ft"},
    "default_probe": {"model__name": "xresnet1d_tiny", "recipe": "linear_probe"},
    "xresnet1d101_scratch": {"model__name": "xresnet1d101", "recipe": "scratch"},
}
PHASES = (
    "train_data",
    "train_preprocess",
    "forward",
    "backward",
    "clip_and_step",
    "val_scoring",
    "val_data",
    "val_preprocess",
    "val_metrics",
    "checkpoints",
)


class PhaseTimer:
    """Seconds per (epoch, phase), the epoch being the one the loop last seeded."""

    def __init__(self) -> None:
        self.epoch: tuple[int, int] | None = None  # (stage, epoch)
        self.seconds: dict[tuple[int, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.in_predict = False

    def add(self, phase: str, seconds: float, count: int = 1) -> None:
        """Add ``seconds`` to ``phase`` of the current epoch (ignored outside the fit, e.g. test scoring)."""
        if self.epoch is not None:
            self.seconds[self.epoch][phase] += seconds
            self.counts[self.epoch][phase] += count

    def timed(self, phase: str, fn: Callable) -> Callable:
        """``fn`` with its calls' time added to ``phase``."""

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - t0)

        return wrapper


@contextlib.contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    """``obj.name = value`` for the duration of the block."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def instrumented(timer: PhaseTimer) -> Iterator[None]:
    """Patch the names the fit loop calls so that each phase's time lands in ``timer``."""
    orig_next = dataloader._BaseDataLoaderIter.__next__
    orig_getitem = ECGDataset.__getitem__
    orig_seed_epoch = loop.seed_epoch
    orig_autocast = loop.autocast
    orig_predict = loop.predict_loader
    orig_backward = torch.Tensor.backward

    def split_of(dataset: object) -> str:
        return "val" if getattr(dataset, "split", "train") != "train" else "train"

    def next_batch(self):
        t0 = time.perf_counter()
        try:
            return orig_next(self)
        finally:
            timer.add(f"{split_of(self._dataset)}_data", time.perf_counter() - t0)

    def getitem(self, i):
        t0 = time.perf_counter()
        try:
            return orig_getitem(self, i)
        finally:
            timer.add(f"{split_of(self)}_preprocess", time.perf_counter() - t0)

    def seed_epoch(seed: int, stage: int, epoch: int, rank: int = 0) -> None:
        timer.epoch = (stage, epoch)
        orig_seed_epoch(seed, stage, epoch, rank)

    @contextlib.contextmanager
    def autocast(device, enabled=True):
        t0 = time.perf_counter()
        with orig_autocast(device, enabled):
            yield
        timer.add("forward", time.perf_counter() - t0)

    def backward(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return orig_backward(self, *args, **kwargs)
        finally:
            timer.add("backward", time.perf_counter() - t0)

    step_start: dict[int, float] = {}

    def before_step(optimizer, args, kwargs) -> None:
        step_start[id(optimizer)] = time.perf_counter()

    def after_step(optimizer, args, kwargs) -> None:
        timer.add("clip_and_step", time.perf_counter() - step_start.pop(id(optimizer)))

    pre = register_optimizer_step_pre_hook(before_step)
    post = register_optimizer_step_post_hook(after_step)
    with contextlib.ExitStack() as stack:
        stack.callback(pre.remove)
        stack.callback(post.remove)
        stack.enter_context(patched(dataloader._BaseDataLoaderIter, "__next__", next_batch))
        stack.enter_context(patched(ECGDataset, "__getitem__", getitem))
        stack.enter_context(patched(loop, "seed_epoch", seed_epoch))
        stack.enter_context(patched(loop, "autocast", autocast))
        stack.enter_context(patched(loop, "predict_loader", timer.timed("val_scoring", orig_predict)))
        stack.enter_context(patched(finetune, "score", timer.timed("val_metrics", finetune.score)))
        stack.enter_context(
            patched(loop, "save_checkpoint", timer.timed("checkpoints", loop.save_checkpoint))
        )
        stack.enter_context(
            patched(
                torch.nn.utils,
                "clip_grad_norm_",
                timer.timed("clip_and_step", torch.nn.utils.clip_grad_norm_),
            )
        )
        stack.enter_context(patched(torch.Tensor, "backward", backward))
        yield
    timer.epoch = None


def profile_case(name: str, args: argparse.Namespace, workers: int) -> dict:
    """Run one case under the timers; per-epoch phase seconds, epoch totals from metrics.csv, and the run's size."""
    import csv

    cfg = build_config(
        data__root=str(args.data),
        data__task=args.task,
        data__rate=100,
        out=str(args.out / f"{name}-workers{workers}"),
        seed=0,
        epochs=args.epochs,
        set_items=[
            "training.min_steps=0",
            f"training.num_workers={workers}",
            "training.progress=false",
            "training.device=cpu",
            f"training.batch_size={args.batch_size}",
            f"training.eval_windows={args.eval_windows}",
        ],
        **CASES[name],
    )
    timer = PhaseTimer()

    def end_of_epoch(event: str, info: dict) -> None:
        if event == "epoch_end":  # after the epoch's last checkpoint: what follows is not the epoch's
            timer.epoch = None

    t0 = time.perf_counter()
    with instrumented(timer):
        run = run_finetune(cfg, overwrite=True, callbacks=[end_of_epoch])
    total = time.perf_counter() - t0
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    final = json.loads((run / "final.json").read_text())
    epochs = []
    for row in rows:
        key = (int(row["stage"]), int(row["epoch"]))
        phases = {p: round(timer.seconds[key].get(p, 0.0), 3) for p in PHASES}
        epoch_s = float(row["time_s"])
        train_s = phases["train_data"] + phases["forward"] + phases["backward"] + phases["clip_and_step"]
        phases["other"] = round(epoch_s - train_s - phases["val_scoring"] - phases["checkpoints"], 3)
        epochs.append(
            {
                "stage": row["stage_name"],
                "epoch": key[1] + 1,
                "epoch_s": round(epoch_s, 3),
                "steps": timer.counts[key].get("backward", 0),
                **phases,
            }
        )
    return {
        "case": name,
        "model": cfg.model.name,
        "weights": cfg.model.weights,
        "recipe": cfg.recipe.name,
        "workers": workers,
        "n_train": final["n_records"]["train"],
        "n_val": final["n_records"]["val"],
        "eval_windows": final["eval_windows"],
        "epochs": epochs,
        "fit_s": round(sum(e["epoch_s"] for e in epochs), 3),
        "after_fit_s": round(total - sum(e["epoch_s"] for e in epochs), 3),
        "total_s": round(total, 3),
    }


def markdown(results: list[dict], args: argparse.Namespace, argv: list[str]) -> str:
    """The summary table and the exact command and settings."""
    lines = [
        "# One fine-tuning epoch on ptbxl-2285, phase by phase",
        "",
        f"Command: `{' '.join(argv)}` (with `OMP_NUM_THREADS=1`).",
        "",
        f"Settings: ptbxl-2285 at 100 Hz, task {args.task}, batch size {args.batch_size}, eval windows "
        f"{args.eval_windows} per validation record, torch threads {torch.get_num_threads()}, loader workers "
        f"{' and '.join(map(str, args.workers))} (with 0 the data loading runs in the main process and is timed; "
        "with 2, the default, *data* is the wait for the workers), `training.min_steps=0`, "
        f"{args.epochs} "
        f"epochs per run, seed 0, CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"shared with other jobs: load average {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after), "
        f"torch {torch.__version__}.",
        "",
        "Seconds per epoch. *data* is drawing batches from the loader (reading the memmap, preprocessing, "
        "collating); *of which preprocess* is `ECGDataset.__getitem__`. *val scoring* is fold 9 every epoch "
        "(records x windows through the model, then the metrics), *of which data*. *other* is the rest of the "
        "epoch (zero_grad, the loss, bookkeeping).",
        "",
        "| run | workers | epoch | epoch s | steps | train data | of which preprocess | forward | backward | clip + step "
        "| val scoring | of which data | metrics | checkpoints | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for e in r["epochs"]:
            lines.append(
                f"| {r['case']} ({r['recipe']}) | {r['workers']} | {e['stage']} {e['epoch']} | {e['epoch_s']:.1f} | {e['steps']} | "
                f"{e['train_data']:.1f} | {e['train_preprocess']:.1f} | {e['forward']:.1f} | {e['backward']:.1f} | "
                f"{e['clip_and_step']:.1f} | {e['val_scoring']:.1f} | {e['val_data']:.1f} | {e['val_metrics']:.2f} | "
                f"{e['checkpoints']:.2f} | {e['other']:.1f} |"
            )
    lines += [
        "",
        "| run | workers | train records | validation records | fit s | after the fit s (fold 10, calibration) "
        "| total s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['workers']} | {r['n_train']} | {r['n_val']} | {r['fit_s']:.1f} | {r['after_fit_s']:.1f} | "
            f"{r['total_s']:.1f} |"
        )
    lines += projection(results)
    return "\n".join(lines) + "\n"


def projection(results: list[dict]) -> list[str]:
    """Lines projecting 40-epoch runs from the last (memo-warm) epoch of each case, validation included."""
    warm = {(r["case"], r["workers"]): r["epochs"][-1]["epoch_s"] for r in results}
    lines = [
        "",
        "40 epochs at the last epoch's rate (the memo warm; fold-9 scoring every epoch, early stopping off), "
        "seconds (minutes):",
        "",
        "| workers | `baseline_ft` 40 | `linear_probe` 40 | `post_training` 10 probe + 30 fine-tune | "
        "`xresnet1d101` `scratch` 40 |",
        "|---|---|---|---|---|",
    ]
    for workers in sorted({r["workers"] for r in results}):
        ft, probe = warm.get(("default_finetune", workers)), warm.get(("default_probe", workers))
        scratch = warm.get(("xresnet1d101_scratch", workers))
        cells = [
            40 * ft if ft else None,
            40 * probe if probe else None,
            10 * probe + 30 * ft if ft and probe else None,
            40 * scratch if scratch else None,
        ]
        lines.append(
            f"| {workers} | "
            + " | ".join("-" if c is None else f"{c:.0f} ({c / 60:.1f})" for c in cells)
            + " |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ptbxl-2285"))
    p.add_argument("--out", type=Path, default=Path("runs/profile-epoch"))
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument("--task", default="superdiagnostic")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (the first fills the memo)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-windows", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 2],
        help="loader workers, one profile each (0: data timed in this process; 2: the default)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("--markdown", type=Path, default=None, help="write the summary here")
    args = p.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    results = []
    for workers in args.workers:
        for name in args.cases:
            results.append(profile_case(name, args, workers))
            print(json.dumps(results[-1]), flush=True)
    argv_text = ["python", "benchmarks/profile_epoch.py", *(sys.argv[1:] if argv is None else argv)]
    text = markdown(results, args, argv_text)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"argv": argv_text, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
