"""Test-sized fine-tuning configs (tiny models, two batches per epoch) on a prepared synthetic cache."""

from __future__ import annotations

from pathlib import Path

from ecgadapt.pretrain.config import PretrainConfig
from ecgadapt.train.config import FinetuneConfig, apply_overrides

TINY_VIT = {"width": 16, "depth": 2, "heads": 2, "patch_size": 50}
TINY_XRESNET = {"layers": [1, 1], "widths": [8, 8], "stem_widths": [8, 8, 8], "expansion": 2}
TINY = {"ecg_vit_tiny": TINY_VIT, "xresnet1d50": TINY_XRESNET}
"""Tiny overrides per model (the default ``kwargs`` of ``make_cfg``)."""


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


TINY_PRETRAIN_VIT = {"seq_len": 200, "patch_size": 25, "width": 32, "depth": 2, "heads": 2}
"""The tiny ViT of the pretraining tests."""


def tiny_pretrain_config(root: Path, cache_dir: Path, **fields) -> PretrainConfig:
    """A test-sized pretraining config: tiny ViT and decoder, 3 epochs of 3 steps of 8 windows; ``fields`` override."""
    base = dict(
        model="ecg_vit_tiny",
        model_kwargs=dict(TINY_PRETRAIN_VIT),
        corpora=[str(root)],
        cache_dir=str(cache_dir),
        decoder_width=32,
        decoder_depth=1,
        decoder_heads=2,
        epochs=3,
        steps_per_epoch=3,
        batch_size=8,
        lr=2e-3,
        warmup_epochs=0.5,
        max_val_samples=16,
        progress=False,
    )
    return PretrainConfig(**{**base, **fields})
