"""Run directories: creation rules, metrics log, atomic files, predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ecgadapt.engine.checkpoints import load_checkpoint, save_checkpoint
from ecgadapt.engine.environment import write_env
from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.fileio import save_predictions, write_json
from ecgadapt.runs.creation import prepare_run_dir
from ecgadapt.runs.hashing import changed_keys, check_resume_config, flat_config
from ecgadapt.runs.rundir import MetricsLog, load_predictions


def test_prepare_run_dir_never_silently_overwrites(tmp_path):
    run = prepare_run_dir(tmp_path / "r")
    (run / "config.yaml").write_text(
        "data: {task: rhythm}\nmodel: {name: ecg_vit_tiny}\nrecipe: {name: scratch}\n"
    )
    (run / "env.json").write_text("{}\n")  # a run's marker file: --overwrite clears only a recognisable run
    with pytest.raises(ConfigError, match="--resume"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, resume=True) == run and (run / "config.yaml").exists()
    prepare_run_dir(run, overwrite=True)
    assert not (run / "config.yaml").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="not an ecgadapt run directory"):
        prepare_run_dir(other, overwrite=True)
    assert (other / "thesis.tex").exists()
    with pytest.raises(ConfigError, match="cannot resume"):
        prepare_run_dir(tmp_path / "new", resume=True)


def test_metrics_log_appends_and_truncates(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv")
    for e in range(3):
        log.append({"stage": 0, "epoch": e, "train_loss": 0.5, "val_macro_auroc": math.nan})
    assert [r["epoch"] for r in log.rows()] == ["0", "1", "2"] and log.rows()[0]["val_macro_auroc"] == ""
    log.truncate(1)
    log.append({"stage": 1, "epoch": 0})
    assert [(r["stage"], r["epoch"]) for r in log.rows()] == [("0", "0"), ("1", "0")]


def test_json_nan_becomes_null_and_env_records_resumes(tmp_path):
    write_json(tmp_path / "f.json", {"a": math.nan, "b": np.float32(1.5)})
    assert json.loads((tmp_path / "f.json").read_text()) == {"a": None, "b": 1.5}
    write_env(tmp_path, "cpu")
    env = write_env(tmp_path, "cpu", resumed=True)
    assert env["device"] == "cpu" and len(env["resumes"]) == 1 and "torch" in env


def test_checkpoints_are_weights_only_and_errors_name_the_file(tmp_path):
    import torch

    save_checkpoint(tmp_path / "c" / "x.pt", {"w": torch.ones(2), "epoch": 3})
    assert load_checkpoint(tmp_path / "c" / "x.pt")["epoch"] == 3
    assert not list((tmp_path / "c").glob("*.tmp"))
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


def test_predictions_round_trip(tmp_path):
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.2], [0.1, 0.7]])
    save_predictions(tmp_path / "p.npz", [5, 7], ["A", "B"], y, p)
    d = load_predictions(tmp_path / "p.npz")
    assert d["ecg_ids"].tolist() == [5, 7] and d["class_names"].tolist() == ["A", "B"]
    assert np.array_equal(d["y_true"], y) and np.allclose(d["y_score"], p)


def test_flat_config_and_resume_check_name_the_changed_stage_field(tmp_path):
    saved = {"out": "a", "model": {"kwargs": {"x": 1}}, "recipe": {"stages": [{"lr": 1e-3}, {"lr": 1e-4}]}}
    now = {"out": "b", "model": {"kwargs": {"x": 1}}, "recipe": {"stages": [{"lr": 1e-3}, {"lr": 5e-4}]}}
    flat_saved, flat_now = flat_config(saved), flat_config(now)
    assert flat_saved == {
        "out": "a",
        "model.kwargs": {"x": 1},
        "recipe.stages.0.lr": 1e-3,
        "recipe.stages.1.lr": 1e-4,
    }
    assert changed_keys(flat_saved, flat_now, free={"out"}) == ["recipe.stages.1.lr"]
    check_resume_config(flat_saved, {**flat_now, "recipe.stages.1.lr": 1e-4}, {"out"}, tmp_path)
    with pytest.raises(ConfigError, match=r"recipe\.stages\.1\.lr: 0\.0001 in the run, 0\.0005 now"):
        check_resume_config(flat_saved, flat_now, {"out"}, tmp_path)


def test_config_hash_ignores_fields_at_their_default_so_older_runs_keep_theirs():
    import copy

    from ecgadapt.runs.hashing import config_sha256
    from ecgadapt.train.config import FinetuneConfig

    cfg = FinetuneConfig().to_dict()
    older = copy.deepcopy(cfg)
    del (
        older["data"]["source"],
        older["recipe"]["stages"][0]["head_lr_scale"],
    )  # written before these fields existed
    assert config_sha256(older) == config_sha256(cfg)
    cfg["recipe"]["stages"][0]["head_lr_scale"] = 10.0
    assert config_sha256(cfg) != config_sha256(older)  # a value that differs from the default still counts


def test_a_changed_default_model_keeps_the_hash_of_runs_saved_before_the_change():
    from ecgadapt.runs.hashing import config_sha256
    from ecgadapt.train.config import FinetuneConfig

    vit = FinetuneConfig().to_dict()
    vit["model"]["name"] = "ecg_vit_tiny"
    older = FinetuneConfig().to_dict()
    del older["model"]["name"]  # hashed when ecg_vit_tiny was the default: its name was left out
    assert config_sha256(vit) == config_sha256(older)
    cnn = FinetuneConfig().to_dict()
    assert cnn["model"]["name"] == "xresnet1d_small" and config_sha256(cnn) != config_sha256(vit)
