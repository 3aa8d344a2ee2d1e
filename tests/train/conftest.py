"""Fixtures of the training tests: a prepared synthetic cache and tiny-model configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ecgadapt.train.config import FinetuneConfig, apply_overrides

TINY_VIT = {"width": 16, "depth": 2, "heads": 2, "patch_size": 50}
TINY_XRESNET = {"layers": [1, 1], "widths": [8, 8], "stem_widths": [8, 8, 8], "expansion": 2}
TINY = {"ecg_vit_tiny": TINY_VIT, "xresnet1d50": TINY_XRESNET}
"""Tiny overrides per model (the default ``kwargs`` of ``make_cfg``)."""


@pytest.fixture(scope="session")
def syn_cache_dir(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache folder holding the synthetic dataset prepared at 100 Hz."""
    from ecgadapt.data.cache import prepare_cache

    cache_dir = tmp_path_factory.mktemp("cache")
    prepare_cache(synthetic_root, 100, cache_dir=cache_dir, workers=1, progress=False)
    return cache_dir


def tiny_config(
    root: Path,
    cache_dir: Path,
    out: Path,
    recipe: str = "post_training",
    *overrides: str,
    model: str = "ecg_vit_tiny",
    kwargs: dict | None = None,
    epochs: int = 2,
) -> FinetuneConfig:
    """A test-sized config: tiny model, batches of 16, at most 2 batches per epoch, ``epochs`` per stage, no step floor."""
    cfg = FinetuneConfig.from_dict(
        {
            "data": {"root": str(root), "rate": 100, "cache_dir": str(cache_dir)},
            "model": {"name": model, "kwargs": dict(TINY.get(model, {}) if kwargs is None else kwargs)},
            "recipe": {"name": recipe},
            "training": {
                "batch_size": 16,
                "num_workers": 0,
                "progress": False,
                "max_train_batches": 2,
                "min_steps": 0,
            },
            "seed": 0,
            "out": str(out),
        }
    )
    cfg = apply_overrides(cfg, [f"recipe.stages.{i}.epochs={epochs}" for i in range(len(cfg.recipe.stages))])
    return apply_overrides(cfg, list(overrides))


@pytest.fixture
def make_cfg(synthetic_root: Path, syn_cache_dir: Path, tmp_path: Path) -> Callable[..., FinetuneConfig]:
    """``make_cfg(recipe, out_name, *overrides, model=..., kwargs=..., epochs=...)``: a test-sized config."""

    def make(recipe: str = "post_training", out: str = "run", *overrides: str, **kw) -> FinetuneConfig:
        return tiny_config(synthetic_root, syn_cache_dir, tmp_path / out, recipe, *overrides, **kw)

    return make


@pytest.fixture(scope="session")
def trained_run(synthetic_root: Path, syn_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished lp_ft run (one epoch per stage) on the synthetic dataset; treat as read-only."""
    import torch

    from ecgadapt.train.finetune import run_finetune

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("trained") / "run"
        return run_finetune(tiny_config(synthetic_root, syn_cache_dir, out, "lp_ft", epochs=1))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest (and without oversubscribing shared CPUs) on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
