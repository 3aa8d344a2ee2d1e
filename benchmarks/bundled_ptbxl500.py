"""Is the bundled encoder a foundation model? Paired comparisons on the 500 real PTB-XL records.

Runs, on ``../shared/data/ptbxl-500`` (official split: folds 1-8 train, 9 validation, 10 test, scored once per
run), for the superdiagnostic and rhythm tasks and five seeds:

- ``ecg_vit_tiny`` from the bundled encoder: ``post_training``, ``baseline_ft``, ``linear_probe``;
- the same architecture with random weights: ``scratch`` and ``linear_probe``.

Then it prints and writes (``comparisons.md`` / ``.json`` in ``--out``) the paired comparisons the model card
quotes: differences of test macro AUROC / AUPRC, paired over seeds (mean, t-interval, p) and by a paired bootstrap
over the test records of the seed-averaged metric (95% interval, p).

    python benchmarks/bundled_ptbxl500.py --out runs/bundled-ptbxl500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ecgadapt.eval.bootstrap import paired_seed_difference, pooled_paired_bootstrap
from ecgadapt.eval.results import collect_results, load_predictions
from ecgadapt.paths import shared_dir
from ecgadapt.train.grid import run_benchmark

COMPARISONS = (  # (a, b): is a better than b?  Each side is (model label, recipe)
    (("bundled", "post_training"), ("bundled", "baseline_ft")),
    (("bundled", "post_training"), ("random", "scratch")),
    (("bundled", "linear_probe"), ("random", "linear_probe")),
    (("bundled", "linear_probe"), ("random", "scratch")),
    (("bundled", "baseline_ft"), ("random", "scratch")),
)


def spec(seeds: int, epochs: int, weights: str) -> dict:
    """The grid: bundled encoder (3 recipes) and random init (2 recipes) of ecg_vit_tiny."""
    return {
        "name": "bundled-ptbxl500",
        "description": "bundled ecg_vit_tiny encoder vs random init on the 500 real PTB-XL records",
        "protocol": "official",
        "models": [
            {"name": "ecg_vit_tiny", "weights": weights, "label": "bundled",
             "recipes": ["post_training", "baseline_ft", "linear_probe"]},
            {"name": "ecg_vit_tiny", "weights": None, "label": "random", "recipes": ["scratch", "linear_probe"]},
        ],  # fmt: skip
        "tasks": ["superdiagnostic", "rhythm"],
        "recipes": ["post_training", "baseline_ft", "linear_probe", "scratch"],
        "fractions": [1.0],
        "seeds": list(range(seeds)),
        "overrides": {"data.rate": 100, "training.num_workers": 0, "training.progress": False},
        "stage_overrides": {"epochs": epochs},
    }


def compare(table, task: str, a: tuple[str, str], b: tuple[str, str], metric: str, n_resamples: int) -> dict:
    """Paired difference a - b of one test metric over seeds, and by a paired bootstrap over records."""
    rows = {side: table[(table.task == task) & (table.model == side[0]) & (table.recipe == side[1])]
            for side in (a, b)}  # fmt: skip
    by_seed = {side: dict(zip(r.seed.astype(int), r[f"test_{metric}"])) for side, r in rows.items()}
    seeds = paired_seed_difference(by_seed[a], by_seed[b])
    preds = {side: [load_predictions(d) for d in r.sort_values("seed").run_dir] for side, r in rows.items()}
    y_true = preds[a][0]["y_true"]
    for p in preds[a] + preds[b]:
        if not np.array_equal(p["ecg_ids"], preds[a][0]["ecg_ids"]):
            raise SystemExit("runs were not scored on the same records: cannot pair them")
    boot = pooled_paired_bootstrap(
        y_true, [p["y_score"] for p in preds[a]], [p["y_score"] for p in preds[b]], metric=metric,
        n_resamples=n_resamples, seed=0,
    )  # fmt: skip
    return {
        "task": task, "a": "/".join(a), "b": "/".join(b), "metric": metric,
        "a_mean": float(np.mean(list(by_seed[a].values()))), "b_mean": float(np.mean(list(by_seed[b].values()))),
        "seed_diff": seeds["mean_diff"], "seed_low": seeds["ci_low"], "seed_high": seeds["ci_high"],
        "seed_p": seeds["p_value"], "n_seeds": seeds["n"],
        "boot_diff": boot["diff"], "boot_low": boot["low"], "boot_high": boot["high"], "boot_p": boot["p_value"],
    }  # fmt: skip


def to_markdown(results: list[dict]) -> str:
    """The comparison table as Markdown."""
    lines = [
        "| task | metric | a | b | a mean | b mean | a − b (seeds, 95% t-CI, p) | a − b (record bootstrap, 95% CI, p) |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['metric']} | {r['a']} | {r['b']} | {r['a_mean']:.3f} | {r['b_mean']:.3f} | "
            f"{r['seed_diff']:+.3f} [{r['seed_low']:+.3f}, {r['seed_high']:+.3f}], p={r['seed_p']:.3f} | "
            f"{r['boot_diff']:+.3f} [{r['boot_low']:+.3f}, {r['boot_high']:+.3f}], p={r['boot_p']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the grid (resuming finished cells) and print the comparisons."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(shared_dir() / "data" / "ptbxl-500"))
    parser.add_argument("--out", default="runs/bundled-ptbxl500")
    parser.add_argument("--weights", default="bundled", help="encoder checkpoint (default: the bundled one)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15, help="maximum epochs of every stage")
    parser.add_argument("--n-resamples", type=int, default=1000)
    args = parser.parse_args()

    run_benchmark(spec(args.seeds, args.epochs, args.weights), args.data, args.out)
    table = collect_results(args.out)
    results = [compare(table, task, a, b, metric, args.n_resamples)
               for task in ("superdiagnostic", "rhythm") for a, b in COMPARISONS
               for metric in ("macro_auroc", "macro_auprc")]  # fmt: skip
    text = to_markdown(results)
    print(text)
    out = Path(args.out)
    (out / "comparisons.md").write_text(text + "\n")
    (out / "comparisons.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
