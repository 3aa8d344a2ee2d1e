"""Config hashes of saved runs never change; ``ecgadapt.runs`` reads runs without importing torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from ecgadapt.engine.stages import Stage
from ecgadapt.runs.hashing import (
    CHANGED_DEFAULTS,
    HASH_DEFAULTS,
    STAGE_HASH_DEFAULTS,
    config_sha256,
    flat_config,
    saved_config_sha256,
)
from ecgadapt.train.config import FinetuneConfig


def _stage(
    name: str, trainable: str, epochs: int, lr: float, weight_decay: float, warmup: float, **kw
) -> dict:
    stage = {
        "name": name,
        "trainable": trainable,
        "epochs": epochs,
        "max_steps": None,
        "lr": lr,
        "head_lr_scale": 1.0,
        "weight_decay": weight_decay,
        "warmup_epochs": warmup,
        "drop_rate": 0.0,
        "drop_path_rate": 0.0,
        "patience": 5,
        "min_delta": 0.001,
        "layer_decay": None,
        "min_lr_ratio": 0.0,
    }
    return {**stage, **kw}


TRAINING = {
    "batch_size": 64,
    "eval_batch_size": None,
    "num_workers": 2,
    "device": "auto",
    "amp": True,
    "grad_clip": 1.0,
    "select_metric": "macro_auroc",
    "eval_windows": 1,
    "ema": None,
    "pos_weight": False,
    "max_train_batches": None,
    "min_steps": 200,
    "min_test_positives": 1,
    "exclude_untrained_classes": True,
    "score_test": True,
    "calibration": "global",
    "head_bias_init": "prior",
    "progress": True,
}
DATA = {
    "root": "/data/ptbxl",
    "rate": 100,
    "task": "superdiagnostic",
    "fraction": 1.0,
    "seed": None,
    "cache_dir": None,
    "test_fold": 10,
    "val_fold": 9,
    "source": "ptbxl",
    "labels": None,
}

TUNED_VIT = {
    "data": {**DATA, "task": "rhythm", "fraction": 0.5, "cache_dir": "/tmp/c"},
    "model": {"name": "ecg_vit_tiny", "weights": "bundled", "kwargs": {"width": 32}},
    "recipe": {
        "name": "post_training",
        "stages": [
            _stage("probe", "head", 10, 0.001, 0.0, 0.0),
            _stage("finetune", "all", 30, 0.0001, 0.05, 2.0, drop_rate=0.1, drop_path_rate=0.2),
        ],
        "pretrained": True,
    },
    "training": {**TRAINING, "batch_size": 32, "num_workers": 0, "device": "cpu", "ema": 0.999},
    "tune": {"lr": [0.0001, 0.0003]},
    "seed": 3,
    "out": "/runs/x",
    "notes": ["a note"],
}
"""A saved config: ecg_vit_tiny (hashed without its name), result-free fields set, a tune search."""

CNN_BASELINE = {
    "data": {**DATA, "rate": 500},
    "model": {"name": "xresnet1d_tiny", "weights": "bundled", "kwargs": {}},
    "recipe": {
        "name": "baseline_ft",
        "stages": [_stage("finetune", "all", 40, 0.0003, 0.05, 2.0, layer_decay=0.75)],
        "pretrained": True,
    },
    "training": {**TRAINING, "pos_weight": True, "calibration": "none", "head_bias_init": "zero"},
    "tune": {},
    "seed": 1,
    "out": "/runs/y",
    "notes": [],
}
"""A saved config: the default model, stage fields and training fields off their defaults."""


def test_saved_configs_keep_their_hashes():
    # The hashes today's code gave before ecgadapt.runs existed (train/rundir.py at commit 5eb0f94): a change
    # here would make the grid treat every saved run as a conflict.
    assert config_sha256(TUNED_VIT) == "f4d9cc3df6234087cf8f896c9168749ee2d8a52c5430669a7ef4ff2f63a328b8"
    assert config_sha256(CNN_BASELINE) == "2d15f7e49d3e07f3324ffa4ae14a6859969f14886832f3d78b00840c769f7a17"
    # the default config of that time: xresnet1d_tiny was the default model until 2026-12-04
    then = FinetuneConfig().to_dict()
    then["model"]["name"] = "xresnet1d_tiny"
    assert config_sha256(then) == "c4db667b862e3905b5af8b6f8084c1920c41cc3bb8e5c2771a8baed099308d6c"


def test_hashed_defaults_are_the_config_defaults_except_the_ones_that_changed_on_purpose():
    live = {k: v for k, v in flat_config(FinetuneConfig().to_dict()).items() if not k.startswith("recipe.")}
    assert HASH_DEFAULTS == {**live, **CHANGED_DEFAULTS}, (
        "a config field was added or its default changed: add it to runs.hashing.HASH_DEFAULTS at the value "
        "older runs were trained with (CHANGED_DEFAULTS when it differs from today's default)"
    )
    stage = {f.name: f.default for f in dataclasses.fields(Stage) if f.default is not dataclasses.MISSING}
    assert STAGE_HASH_DEFAULTS == stage


def test_the_saved_config_hash_reads_config_yaml_with_the_legacy_values(tmp_path):
    import yaml

    saved = {**CNN_BASELINE, "training": {k: v for k, v in CNN_BASELINE["training"].items()}}
    del saved["training"]["head_bias_init"]  # written before the field existed: trained with a zero head bias
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert saved_config_sha256(tmp_path) == config_sha256(CNN_BASELINE)
    assert saved_config_sha256(tmp_path / "missing") is None


def test_reading_runs_never_imports_torch():
    code = (
        "import sys, ecgadapt.runs, ecgadapt.eval.results, ecgadapt.eval.temperature; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
