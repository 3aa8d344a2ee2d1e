"""Every recipe preset end to end on the real PTB-XL subset (superdiagnostic), in a test-sized config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ecgadapt.eval.compare import compare_runs, format_summary, summarise_runs
from ecgadapt.train.finetune import run_finetune
from ecgadapt.train.recipes import list_recipes

TINY_VIT = {"width": 16, "depth": 2, "heads": 2, "patch_size": 50}


@pytest.fixture(scope="module")
def real_cache_dir(ptbxl500: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ecgadapt.data.cache import prepare_cache

    cache_dir = tmp_path_factory.mktemp("ptbxl500-cache")
    prepare_cache(ptbxl500, 100, cache_dir=cache_dir, workers=2, progress=False)
    return cache_dir


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in 'pretrained' checkpoint of the tiny ViT (its own head of another size is ignored)."""
    from ecgadapt.models import create_model

    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "tiny_vit.pt"
    torch.save({"model": create_model("ecg_vit_tiny", num_classes=7, **TINY_VIT).state_dict()}, path)
    return path


def test_every_preset_runs_end_to_end_on_real_ptbxl(ptbxl500, real_cache_dir, pretrained, tmp_path):
    from ecgadapt.train.config import FinetuneConfig, apply_overrides

    runs = []
    for recipe in list_recipes():
        cfg = FinetuneConfig.from_dict(
            {
                "data": {
                    "root": str(ptbxl500),
                    "rate": 100,
                    "task": "superdiagnostic",
                    "cache_dir": str(real_cache_dir),
                },
                "model": {"name": "ecg_vit_tiny", "weights": str(pretrained), "kwargs": TINY_VIT},
                "recipe": {"name": recipe},
                "training": {
                    "batch_size": 16,
                    "num_workers": 0,
                    "progress": False,
                    "max_train_batches": 2,
                    "min_steps": 0,
                },
                "out": str(tmp_path / recipe),
            }
        )
        n = len(cfg.recipe.stages)
        cfg = apply_overrides(cfg, [f"recipe.stages.{i}.epochs=1" for i in range(n)])
        runs.append(run_finetune(cfg))
        final = json.loads((runs[-1] / "final.json").read_text())
        assert final["class_names"] == ["CD", "HYP", "MI", "NORM", "STTC"]
        assert 0.0 <= final["test"]["macro_auroc"] <= 1.0 and final["n_records"]["test"] > 0
        assert final["weights"] == (None if recipe == "scratch" else str(pretrained))
    table = summarise_runs(compare_runs(runs))
    assert table["recipe"].tolist() == list_recipes()
    assert "post_training" in format_summary(table)
