"""``ecgadapt demo``: the whole story end to end on the embedded synthetic dataset, on a laptop CPU.

1. write a synthetic dataset in PTB-XL layout, prepare its cache and print the task statistics;
2. get a pretrained small encoder: the bundled checkpoint where it exists, else a short masked-ECG
   pretraining on a separate synthetic corpus (other records, other seed: no test record is seen);
3. compare, with the fair protocol of ``ecgadapt benchmark`` (equal budgets, fold-9 tuning), the literal
   ``baseline_ft``, a tuned ``baseline_ft`` and a tuned ``post_training`` from that encoder over two seeds;
4. write the benchmark report (``report.html``) and print its path;
5. print the comparison table (mean ± std over seeds, paired differences against both baselines).

Every step reuses what an earlier run of the demo finished, so a rerun (or a killed demo) is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.stats import split_stats
from ecgadapt.data.synthetic import write_synthetic_ptbxl
from ecgadapt.data.tasks import TASKS
from ecgadapt.errors import ConfigError
from ecgadapt.runs.rundir import RunDir
from ecgadapt.weights import DEFAULT_MODEL

DEMO_MODEL = DEFAULT_MODEL
DEMO_TASK = "superdiagnostic"
DEMO_SEEDS = (0, 1)
DEMO_RATE = 100


def task_overview(root: Path) -> str:
    """One line per task: classes and records per split, from the CSVs alone."""
    lines = [f"{'task':<16} {'classes':>7} {'train':>6} {'val':>5} {'test':>5}"]
    for task in TASKS:
        stats = split_stats(root, task)
        n_classes = stats["num_classes"]
        counts = [stats["splits"][s]["records"] for s in ("train", "val", "test")]
        lines.append(f"{task:<16} {n_classes:>7} {counts[0]:>6} {counts[1]:>5} {counts[2]:>5}")
    return "\n".join(lines)


def class_positives(root: Path, task: str) -> str:
    """Positives per class and split for one task."""
    stats = split_stats(root, task)
    lines = [f"{'class':<8} {'train':>6} {'val':>5} {'test':>5}"]
    for name in stats["classes"]:
        pos = [stats["splits"][s]["positives"][name] for s in ("train", "val", "test")]
        lines.append(f"{name:<8} {pos[0]:>6} {pos[1]:>5} {pos[2]:>5}")
    return "\n".join(lines)


def pretrained_encoder(out: Path, cache_dir: Path, *, n_corpus: int, epochs: int) -> tuple[Path, str]:
    """The bundled encoder when ecgadapt ships one, else a short masked-ECG pretraining on a separate corpus."""
    from ecgadapt.train.finetune import bundled_weights

    try:
        return bundled_weights(DEMO_MODEL), "bundled checkpoint"
    except ConfigError:
        pass
    from ecgadapt.pretrain.config import PretrainConfig
    from ecgadapt.pretrain.pretrain import run_pretrain

    run_dir = out / "pretrain"
    encoder = run_dir / "encoder.safetensors"
    if encoder.is_file():
        return encoder, f"masked-ECG pretraining from an earlier demo run ({run_dir})"
    corpus = write_synthetic_ptbxl(out / "corpus", n_records=n_corpus, seed=1, rates=(DEMO_RATE,))
    cfg = PretrainConfig(
        model=DEMO_MODEL,
        corpora=[str(corpus)],
        cache_dir=str(cache_dir),
        epochs=epochs,
        batch_size=64,
        lr=1e-3,
        warmup_epochs=1.0,
        seed=0,
        num_workers=0,
    )
    run_pretrain(cfg, run_dir, resume=RunDir(run_dir).config.is_file())
    return encoder, f"short masked-ECG pretraining on {n_corpus} other synthetic ECGs (seed 1)"


DEMO_SEARCH = {"lr": [1e-4, 1e-3]}
"""The demo's fold-9 search, the same for the tuned baseline and for post-training."""


def demo_spec(weights: Path, seeds: Sequence[int], budget_epochs: int) -> dict:
    """The demo's benchmark grid: the literal baseline, the tuned baseline and tuned post-training, equal budgets."""
    return {
        "name": "demo",
        "description": "literal and tuned baseline_ft against tuned post_training (demo-sized)",
        "protocol": "official",
        "models": [{"name": DEMO_MODEL, "weights": str(weights)}],
        "tasks": [DEMO_TASK],
        "recipes": [
            "baseline_ft",
            {"name": "baseline_ft", "label": "baseline_ft_tuned", "tune": DEMO_SEARCH},
            {"name": "post_training", "tune": DEMO_SEARCH},
        ],
        "fractions": [1.0],
        "seeds": [int(s) for s in seeds],
        "overrides": {
            "data.rate": DEMO_RATE,
            "training.num_workers": 0,
            "training.progress": False,
            "training.min_steps": 0,
        },
        "stage_overrides": {"patience": 3},
        "budget_epochs": budget_epochs,
    }


def paired_lines(table, treatment: str, baselines: Sequence[str]) -> list[str]:
    """``treatment - baseline``, paired by seed, for each baseline: mean and per-seed differences."""
    lines = []
    post = table[table.recipe == treatment].set_index("seed")
    for baseline in baselines:
        base = table[table.recipe == baseline].set_index("seed")
        parts = []
        for metric, name in (("macro_auroc", "macro AUROC"), ("macro_auprc", "macro AUPRC")):
            diff = (post[f"test_{metric}"] - base[f"test_{metric}"]).dropna()
            parts.append(f"{name} {diff.mean():+.3f} (per seed {', '.join(f'{d:+.3f}' for d in diff)})")
        lines.append(f"{treatment} - {baseline}, paired by seed: {'; '.join(parts)}")
    return lines


def run_demo(
    out_dir: str | Path = "ecgadapt_demo",
    seeds: Sequence[int] | None = None,
    *,
    n_records: int = 800,
    n_corpus: int = 2000,
    pretrain_epochs: int = 12,
    budget_epochs: int = 5,
    n_resamples: int = 200,
) -> str:
    """Run the demo end to end in ``out_dir``, write its report and return (and print) the comparison table."""
    from ecgadapt.bench.grid import run_benchmark
    from ecgadapt.eval.compare import format_summary, summarise_runs
    from ecgadapt.eval.report import build_report

    t0 = time.perf_counter()
    seeds = tuple(seeds) if seeds else DEMO_SEEDS
    out = Path(out_dir)
    cache_dir = out / "cache"
    print(f"[1/5] synthetic PTB-XL-layout dataset ({n_records} records) in {out / 'data'}")
    root = write_synthetic_ptbxl(out / "data", n_records=n_records, seed=0)
    cache = load_or_prepare(root, DEMO_RATE, cache_dir=cache_dir)
    print(
        f"      cache: {cache.signals.shape[0]} records x 12 leads x {cache.signals.shape[2]} samples at {cache.rate} Hz"
    )
    print(task_overview(root))
    print(f"\n      {DEMO_TASK} positives per split:")
    print(class_positives(root, DEMO_TASK))

    print(f"\n[2/5] pretrained encoder for {DEMO_MODEL}")
    weights, origin = pretrained_encoder(out, cache_dir, n_corpus=n_corpus, epochs=pretrain_epochs)
    print(f"      {origin}: {weights}")

    search = ", ".join(f"{k} in {v}" for k, v in DEMO_SEARCH.items())
    print(
        f"\n[3/5] fine-tuning on {DEMO_TASK}, seeds {list(seeds)}, the same budget for every recipe "
        f"({budget_epochs} epochs in all): baseline_ft as the paper describes it (literal), and baseline_ft and "
        f"post_training each with its {search} chosen on validation fold 9 (only the chosen run sees test fold 10)"
    )
    spec = demo_spec(weights, seeds, budget_epochs)
    table = run_benchmark(spec, root, out / "results", [f"data.cache_dir={cache_dir}"], progress=False)

    print("\n[4/5] report")
    report = build_report(out / "results", n_resamples=n_resamples, title="ecgadapt demo report")

    summary = format_summary(summarise_runs(table, by=("recipe",)))
    chosen = table[table.tuned.fillna("") != ""].groupby("recipe")["tuned"].agg(lambda v: "; ".join(v))
    lines = [
        f"\n[5/5] test fold 10, {DEMO_TASK}, {DEMO_MODEL}, mean ± std over {len(seeds)} seed(s):",
        summary,
        *[f"chosen on fold 9, {recipe}: {values}" for recipe, values in chosen.items()],
        *paired_lines(table, "post_training", ("baseline_ft", "baseline_ft_tuned")),
        f"report: {report.html.resolve()}",
        f"runs: {out / 'results' / 'runs'}   total time {time.perf_counter() - t0:.0f} s",
    ]
    text = "\n".join(lines)
    print(text)
    return text
