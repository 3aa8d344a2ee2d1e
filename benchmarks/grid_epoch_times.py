"""Wall time per training epoch in a finished benchmark results folder (README's performance section).

Reads every trained run's ``metrics.csv`` under ``RESULTS/runs`` (untuned cells and tuning candidates; a tuned
cell's own folder repeats its chosen candidate, and a cell that reused a candidate's training repeats that one:
both are skipped) and prints, per model, the median and quartiles
of its fine-tuning epochs (probe epochs and each run's first epoch left out: the first builds caches), and the
epochs each run trained before it stopped.

    python benchmarks/grid_epoch_times.py runs/evidence-2285/main
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path


def trained_runs(results: Path) -> list[Path]:
    """Run folders that trained: cells without candidates, and every candidate (not a cell that took a
    candidate's training, whose ``final.json`` has ``reused_training``)."""
    runs = []
    for cell in sorted((results / "runs").iterdir()):
        candidates = sorted((cell / "candidates").glob("*/metrics.csv"))
        if candidates:
            runs += [c.parent for c in candidates]
        elif (cell / "metrics.csv").is_file() and not _reused(cell):
            runs.append(cell)
    return runs


def _reused(run: Path) -> bool:
    final = run / "final.json"
    return final.is_file() and "reused_training" in json.loads(final.read_text())


def model_of(run: Path) -> str:
    """The model label of a run folder (``TASK__MODEL__RECIPE__FRACTION__SEED``, or a candidate of one)."""
    cell = run.parent.parent if run.parent.name == "candidates" else run
    return cell.name.split("__")[1]


def main() -> None:
    """Print the epoch-time table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an `ecgadapt benchmark` results folder")
    args = parser.parse_args()
    seconds, epochs = defaultdict(list), defaultdict(list)
    for run in trained_runs(args.results):
        with (run / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        model = model_of(run)
        epochs[model].append(len(rows))
        seconds[model] += [float(r["time_s"]) for r in rows if r["stage_name"] != "probe"][1:]
    print(
        "| model | runs | fine-tuning epochs timed | median s | quartiles s | epochs run: min / median / max |"
    )
    print("|---|---:|---:|---:|---|---|")
    for model in sorted(seconds):
        q1, _, q3 = statistics.quantiles(seconds[model], n=4)
        e = epochs[model]
        print(
            f"| {model} | {len(e)} | {len(seconds[model])} | {statistics.median(seconds[model]):.1f} "
            f"| {q1:.1f}-{q3:.1f} | {min(e)} / {statistics.median(e):g} / {max(e)} |"
        )


if __name__ == "__main__":
    main()
