"""Experiment loggers: the fit loop's callbacks that copy each epoch's losses and metrics, and a run's final scores,
to TensorBoard or MLflow (``training.logger``, ``--logger``).

The run directory stays the source of truth: ``metrics.csv`` and ``final.json`` are written whatever the
logger, and ``csv`` (the default) adds nothing to them. A logger is a :data:`~ecgadapt.engine.loop.Callback`:

* ``"epoch_end"`` (a ``metrics.csv`` row): ``train/loss``, ``val/loss``, ``val/macro_auroc``,
  ``val/macro_auprc``, ``lr`` and ``time_s``, at the step ``optimizer_steps``;
* ``"run_end"`` (``{"final": final.json}``): every number of ``final.json``'s scores of the best checkpoint
  (``best_val/macro_auroc``, ``test/macro_auroc``, ``test/ece``...) at the last step, and the logger closes.

Neither backend is imported at module level: ``pip install "ecgadapt[loggers]"`` brings them.
- ``tensorboard``: event files in ``RUN/tensorboard`` (``tensorboard --logdir RESULTS/runs`` shows a grid).
- ``mlflow``: a run named after the run directory, in the experiment ``$MLFLOW_EXPERIMENT_NAME`` (default
  ``ecgadapt``) of the tracking store ``$MLFLOW_TRACKING_URI`` (MLflow's own default without it), with the
  flat config as parameters. Its id is kept in ``RUN/mlflow.json``, so a resumed run logs on to the same run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ecgadapt.errors import ConfigError
from ecgadapt.fileio import write_json
from ecgadapt.runs.rundir import RunDir, read_json

LOGGERS = ("csv", "tensorboard", "mlflow")
"""The values of ``training.logger``."""

EPOCH_METRICS = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "val_macro_auroc": "val/macro_auroc",
    "val_macro_auprc": "val/macro_auprc",
    "lr": "lr",
    "time_s": "time_s",
}
"""``metrics.csv`` column -> the logged metric name."""

_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def check_logger(name: str) -> None:
    """A ConfigError unless ``name`` is a known logger whose package is installed (checked before a run starts)."""
    if name not in LOGGERS:
        raise ConfigError(f"training.logger must be one of {', '.join(LOGGERS)}, got {name!r}")
    if name == "csv":
        return
    try:
        __import__(_PACKAGES[name])
    except ImportError:
        raise ConfigError(
            f'--logger {name} needs the {name} package: pip install "ecgadapt[loggers]" (or pip install {name})'
        ) from None
    if name == "mlflow":
        mlflow_client()


def mlflow_client() -> Any:
    """An ``MlflowClient`` of ``$MLFLOW_TRACKING_URI`` (no network yet); a ConfigError saying how to choose a
    store when MLflow cannot use it (e.g. its default ``sqlite:///mlflow.db`` without the full ``mlflow``)."""
    from mlflow import MlflowClient

    try:
        return MlflowClient()
    except Exception as err:  # noqa: BLE001 - MLflow raises several kinds for an unusable store
        raise ConfigError(
            f"MLflow cannot use the tracking store {os.environ.get('MLFLOW_TRACKING_URI') or '(its default)'}: "
            f"{str(err).strip().splitlines()[0][:200]}; set MLFLOW_TRACKING_URI to a server (http://HOST:5000), "
            "a local file store (file:PATH, with MLFLOW_ALLOW_FILE_STORE=true) or, with pip install mlflow, "
            "sqlite:///mlflow.db"
        ) from None


def final_metrics(final: dict) -> dict[str, float]:
    """Every finite number of ``final.json``'s scores of the best checkpoint: ``best_val/metric`` (validation
    fold; ``val/...`` are the epochs') and ``test/metric``."""
    out = {}
    for split, prefix in (("val", "best_val"), ("test", "test")):
        for key, value in (final.get(split) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{prefix}/{key}"] = float(value)
    return out


class ExperimentLogger:
    """A fit-loop callback that forwards epoch rows and final scores to a backend (subclasses write them)."""

    def __init__(self) -> None:
        self.step = 0
        self.closed = False

    def __call__(self, event: str, info: dict) -> None:
        if self.closed:
            return
        if event == "epoch_end":
            self.step = int(info.get("optimizer_steps", self.step + 1))
            values = {name: float(info[col]) for col, name in EPOCH_METRICS.items() if col in info}
            self.log_metrics({k: v for k, v in values.items() if math.isfinite(v)}, self.step)
        elif event == "run_end":
            self.log_metrics(final_metrics(info.get("final") or {}), self.step)
            self.close()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Write ``metrics`` at ``step``."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release the backend (idempotent)."""
        self.closed = True


class TensorBoardLogger(ExperimentLogger):
    """Scalars in TensorBoard event files under ``RUN/tensorboard``; the config as a text summary."""

    def __init__(self, run_dir: str | os.PathLike, params: dict[str, Any]) -> None:
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(RunDir(run_dir).tensorboard))
        if params:
            table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            self.writer.add_text("config", "| key | value |\n|---|---|\n" + table, 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        if not self.closed:
            self.writer.close()
        super().close()


class MLflowLogger(ExperimentLogger):
    """Metrics and parameters in an MLflow run (through ``MlflowClient``, leaving any active run alone)."""

    def __init__(self, run_dir: str | os.PathLike, params: dict[str, Any]) -> None:
        super().__init__()
        from mlflow.entities import Param

        self.client = mlflow_client()
        files = RunDir(run_dir)
        saved = read_json(files.mlflow) if files.mlflow.is_file() else {}
        if saved.get("run_id") and saved.get("tracking_uri") == self.client.tracking_uri:
            self.run_id = str(saved["run_id"])
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ecgadapt")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run = self.client.create_run(
            experiment_id,
            run_name=Path(run_dir).name,
            tags={"ecgadapt.run_dir": str(Path(run_dir).resolve())},
        )
        self.run_id = run.info.run_id
        write_json(files.mlflow, {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri})
        if params:
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
                self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = _millis()
        batch = [Metric(name.replace("/", "_"), value, now, step) for name, value in metrics.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def close(self) -> None:
        if not self.closed:
            self.client.set_terminated(self.run_id)
        super().close()


def _millis() -> int:
    import time

    return int(time.time() * 1000)


def open_logger(
    name: str, run_dir: str | os.PathLike, params: dict[str, Any] | None = None
) -> ExperimentLogger | None:
    """The logger ``name`` for ``run_dir`` (None for ``csv``: ``metrics.csv`` is written anyway)."""
    check_logger(name)
    if name == "csv":
        return None
    logger = (TensorBoardLogger if name == "tensorboard" else MLflowLogger)(run_dir, params or {})
    rows = RunDir(run_dir).metrics_log().rows() if RunDir(run_dir).metrics.is_file() else []
    logger.step = (
        int(float(rows[-1].get("optimizer_steps") or 0)) if rows else 0
    )  # a resumed run logs on from here
    return logger
