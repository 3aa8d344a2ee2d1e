"""--logger tensorboard|mlflow|csv: each epoch's losses and metrics and the final scores reach the backend, offline;
the run directory stays the source of truth."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from ecgadapt.cli import main
from ecgadapt.engine.loggers import check_logger, final_metrics
from ecgadapt.errors import ConfigError
from ecgadapt.runs.rundir import RunDir, read_json
from ecgadapt.train.finetune import run_finetune


def _epochs(run_dir) -> pd.DataFrame:
    return pd.read_csv(RunDir(run_dir).metrics)


def test_csv_is_the_default_and_adds_nothing(make_cfg):
    cfg = make_cfg("linear_probe", "plain", epochs=1)
    assert cfg.training.logger == "csv"
    run_dir = run_finetune(cfg)
    assert not RunDir(run_dir).tensorboard.exists() and not RunDir(run_dir).mlflow.exists()
    assert len(_epochs(run_dir)) == 1


def test_unknown_logger_and_missing_package_are_clear_errors(make_cfg, monkeypatch):
    with pytest.raises(ConfigError, match="training.logger must be one of csv, tensorboard, mlflow"):
        make_cfg("linear_probe", "bad", "training.logger=wandb")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail
    with pytest.raises(ConfigError, match=r'pip install "ecgadapt\[loggers\]"'):
        check_logger("mlflow")
    cfg = make_cfg("linear_probe", "nomlflow", "training.logger=mlflow", epochs=1)
    with pytest.raises(ConfigError, match="needs the mlflow package"):
        run_finetune(cfg)
    assert not (cfg.out and RunDir(cfg.out).path.exists())  # a failed start writes nothing


def test_final_metrics_keeps_the_finite_numbers_of_val_and_test():
    final = {"val": {"macro_auroc": 0.7, "per_class": {"A": 1}}, "test": {"ece": 0.1, "loss": float("nan")}}
    assert final_metrics(final) == {"best_val/macro_auroc": 0.7, "test/ece": 0.1}


def test_tensorboard_gets_every_epoch_and_the_final_scores(make_cfg):
    pytest.importorskip("tensorboard", reason='--logger tensorboard needs pip install "ecgadapt[loggers]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run_finetune(make_cfg("lp_ft", "tb", "training.logger=tensorboard", epochs=2))
    events = EventAccumulator(str(RunDir(run_dir).tensorboard))
    events.Reload()
    epochs, final = _epochs(run_dir), RunDir(run_dir).read_final()
    for column, tag in (("val_macro_auroc", "val/macro_auroc"), ("train_loss", "train/loss")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == epochs["optimizer_steps"].tolist()
        assert [s.value for s in scalars] == pytest.approx(epochs[column].tolist(), rel=1e-6)
    (test_auroc,) = events.Scalars("test/macro_auroc")
    assert test_auroc.value == pytest.approx(final["test"]["macro_auroc"], rel=1e-6)
    assert test_auroc.step == epochs["optimizer_steps"].iloc[-1]


def test_mlflow_gets_params_every_epoch_and_the_final_scores(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason='--logger mlflow needs pip install "ecgadapt[loggers]"')
    from mlflow import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store for offline use
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ecgadapt-test")
    run_dir = run_finetune(make_cfg("lp_ft", "mlf", "training.logger=mlflow", epochs=2))
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ecgadapt-test").experiment_id])
    assert run.info.run_name == "mlf" and run.info.status == "FINISHED"
    assert read_json(RunDir(run_dir).mlflow)["run_id"] == run.info.run_id  # a resumed run logs on to it
    assert run.data.params["recipe.name"] == "lp_ft" and run.data.params["training.logger"] == "mlflow"
    epochs, final = _epochs(run_dir), RunDir(run_dir).read_final()
    history = client.get_metric_history(run.info.run_id, "val_macro_auroc")
    assert [m.step for m in history] == epochs["optimizer_steps"].tolist()
    assert [m.value for m in history] == pytest.approx(
        epochs["val_macro_auroc"].tolist(), rel=1e-5
    )  # the CSV keeps 6 digits
    assert run.data.metrics["test_macro_auroc"] == pytest.approx(final["test"]["macro_auroc"])
    assert run.data.metrics["test_loss"] == pytest.approx(final["test"]["loss"])


def test_benchmark_passes_the_logger_to_every_cell(monkeypatch, tmp_path):
    seen = {}

    def fake_run_benchmark(spec, data, out, sets, **kwargs):
        seen["sets"] = list(sets)

    monkeypatch.setattr("ecgadapt.bench.grid.run_benchmark", fake_run_benchmark)
    argv = ["benchmark", "--spec", "paper-main", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main([*argv, "--logger", "tensorboard"]) == 0
    assert "training.logger=tensorboard" in seen["sets"]
    from ecgadapt.bench.cells import expand_cells
    from ecgadapt.bench.spec import load_spec

    spec = {
        "name": "logged",
        "models": [{"name": "xresnet1d_tiny", "weights": "bundled"}],
        "tasks": ["superdiagnostic"],
        "recipes": ["baseline_ft", "post_training"],
        "seeds": [0, 1],
    }
    spec = load_spec(spec, ["training.logger=tensorboard"])
    cells = expand_cells(spec, tmp_path, tmp_path / "r")
    assert {r.config.training.logger for c in cells for r in c.runs} == {"tensorboard"}


def test_an_unusable_mlflow_store_is_refused_before_the_run_starts(make_cfg, monkeypatch):
    pytest.importorskip("mlflow", reason='--logger mlflow needs pip install "ecgadapt[loggers]"')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://x")
    cfg = make_cfg("linear_probe", "badstore", "training.logger=mlflow", epochs=1)
    with pytest.raises(ConfigError, match="MLflow cannot use the tracking store nosuchscheme://x"):
        run_finetune(cfg)
    assert not RunDir(cfg.out).path.exists()
