"""``ecgadapt demo``: the whole story end to end on the embedded synthetic dataset, on a laptop CPU.

1. write a synthetic dataset in PTB-XL layout, prepare its cache and print the task statistics;
2. get a pretrained small encoder: the bundled checkpoint where it exists, else a short masked-ECG
   pretraining on a separate synthetic corpus (other records, other seed: no test record is seen);
3. fine-tune ``baseline_ft`` and ``post_training`` from that encoder over two seeds (same seeds, same records);
4. print the comparison table (mean ± std over seeds, paired difference).

Every step reuses what an earlier run of the demo finished, so a rerun (or a killed demo) is cheap.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ecgadapt.data.cache import load_or_prepare
from ecgadapt.data.stats import split_stats
from ecgadapt.data.synthetic import write_synthetic_ptbxl
from ecgadapt.data.tasks import TASKS
from ecgadapt.errors import ConfigError

if TYPE_CHECKING:
    from ecgadapt.train.config import FinetuneConfig

DEMO_MODEL = "ecg_vit_tiny"
DEMO_TASK = "superdiagnostic"
DEMO_RECIPES = ("baseline_ft", "post_training")
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
    from ecgadapt.pretrain.pretrain import PretrainConfig, run_pretrain

    run_dir = out / "pretrain"
    encoder = run_dir / "encoder.safetensors"
    if encoder.is_file():
        return encoder, f"masked-ECG pretraining from an earlier demo run ({run_dir})"
    corpus = write_synthetic_ptbxl(out / "corpus", n_records=n_corpus, seed=1, rates=(DEMO_RATE,))
    cfg = PretrainConfig(
        model=DEMO_MODEL, corpora=[str(corpus)], cache_dir=str(cache_dir), epochs=epochs, batch_size=64,
        lr=1e-3, warmup_epochs=1.0, seed=0, num_workers=0,
    )  # fmt: skip
    run_pretrain(cfg, run_dir, resume=(run_dir / "config.yaml").is_file())
    return encoder, f"short masked-ECG pretraining on {n_corpus} other synthetic ECGs (seed 1)"


def finetune_config(
    root: Path, cache_dir: Path, weights: Path, recipe: str, seed: int, out: Path, epochs: int
) -> FinetuneConfig:
    """The demo's fine-tuning config: the preset recipe with demo-sized epochs and patience."""
    from ecgadapt.train.config import FinetuneConfig
    from ecgadapt.train.recipes import get_recipe, override_stages

    cfg = FinetuneConfig()
    cfg.data.root, cfg.data.rate, cfg.data.task, cfg.data.cache_dir = str(root), DEMO_RATE, DEMO_TASK, str(cache_dir)
    cfg.model.name, cfg.model.weights = DEMO_MODEL, str(weights)
    cfg.recipe = override_stages(get_recipe(recipe), epochs=epochs, patience=3)
    cfg.training.num_workers = 0
    cfg.training.progress = False
    cfg.seed = seed
    cfg.out = str(out / "runs" / f"{recipe}__seed{seed}")
    return cfg


def run_demo(
    out_dir: str | Path = "ecgadapt_demo",
    seeds: Sequence[int] | None = None,
    *,
    n_records: int = 1000,
    n_corpus: int = 2000,
    pretrain_epochs: int = 12,
    finetune_epochs: int = 10,
) -> str:
    """Run the demo end to end in ``out_dir`` and return (and print) the comparison table."""
    from ecgadapt.train.compare import compare_runs, format_summary, summarise_runs
    from ecgadapt.train.finetune import run_finetune

    t0 = time.perf_counter()
    seeds = tuple(seeds) if seeds else DEMO_SEEDS
    out = Path(out_dir)
    cache_dir = out / "cache"
    print(f"[1/4] synthetic PTB-XL-layout dataset ({n_records} records) in {out / 'data'}")
    root = write_synthetic_ptbxl(out / "data", n_records=n_records, seed=0)
    cache = load_or_prepare(root, DEMO_RATE, cache_dir=cache_dir)
    print(f"      cache: {cache.signals.shape[0]} records x 12 leads x {cache.signals.shape[2]} samples at {cache.rate} Hz")
    print(task_overview(root))
    print(f"\n      {DEMO_TASK} positives per split:")
    print(class_positives(root, DEMO_TASK))

    print(f"\n[2/4] pretrained encoder for {DEMO_MODEL}")
    weights, origin = pretrained_encoder(out, cache_dir, n_corpus=n_corpus, epochs=pretrain_epochs)
    print(f"      {origin}: {weights}")

    print(f"\n[3/4] fine-tuning {' vs '.join(DEMO_RECIPES)} on {DEMO_TASK}, seeds {list(seeds)}")
    run_dirs = []
    for seed in seeds:
        for recipe in DEMO_RECIPES:
            cfg = finetune_config(root, cache_dir, weights, recipe, seed, out, finetune_epochs)
            run_dir = Path(cfg.out)
            if (run_dir / "final.json").is_file():
                print(f"      {recipe} seed {seed}: finished earlier, reused ({run_dir})")
            else:
                run_finetune(cfg, resume=(run_dir / "config.yaml").is_file(), cache=cache)
            run_dirs.append(run_dir)

    runs = compare_runs(run_dirs)
    table = format_summary(summarise_runs(runs, by=("recipe",)))
    base = runs[runs.recipe == "baseline_ft"].set_index("seed")
    post = runs[runs.recipe == "post_training"].set_index("seed")
    diff_auroc = (post.test_macro_auroc - base.test_macro_auroc).dropna()
    diff_auprc = (post.test_macro_auprc - base.test_macro_auprc).dropna()
    lines = [
        f"\n[4/4] test fold 10, {DEMO_TASK}, {DEMO_MODEL}, mean ± std over {len(seeds)} seeds:",
        table,
        f"post_training - baseline_ft, paired by seed: macro AUROC {diff_auroc.mean():+.3f} "
        f"(per seed {', '.join(f'{d:+.3f}' for d in diff_auroc)}), "
        f"macro AUPRC {diff_auprc.mean():+.3f} (per seed {', '.join(f'{d:+.3f}' for d in diff_auprc)})",
        f"runs: {out / 'runs'}   total time {time.perf_counter() - t0:.0f} s",
    ]
    text = "\n".join(lines)
    print(text)
    return text
