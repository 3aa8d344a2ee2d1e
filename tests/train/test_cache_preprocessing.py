"""``data.cache_preprocessing``: a run that reads its fixed preprocessing from the cache ends where one without ends."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.train.finetune import run_finetune
from tiny_runs import tiny_config


def test_a_run_with_stored_preprocessing_gives_the_same_weights_scores_and_config_hash(
    synthetic_root: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"  # its own cache: the variant is written into it
    runs = {
        on: run_finetune(
            tiny_config(
                synthetic_root,
                cache_dir,
                tmp_path / f"run-{on}",
                "baseline_ft",
                f"data.cache_preprocessing={on}",
                model="xresnet1d50",  # a random 2.5 s crop of every band-passed, standardised record
            )
        )
        for on in ("true", "false")
    }
    variants = list(cache_dir.glob("*/rate100/preprocessed/*/signals.npy"))
    assert len(variants) == 1, "training and scoring share one stored variant"
    final = {on: json.loads((run / "final.json").read_text()) for on, run in runs.items()}
    assert final["true"]["val"] == final["false"]["val"] and final["true"]["test"] == final["false"]["test"]
    inputs = {on: json.loads((run / "inputs.json").read_text()) for on, run in runs.items()}
    assert inputs["true"]["config_sha256"] == inputs["false"]["config_sha256"], "a result-free setting"
    weights = {on: load_checkpoint(run / "checkpoints/best.pt")["model"] for on, run in runs.items()}
    assert all(torch.equal(weights["true"][k], weights["false"][k]) for k in weights["false"])
