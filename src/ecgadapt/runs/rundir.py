"""Run directories and results folders: every file name, and torch-free typed readers and writers.

A run directory (:class:`RunDir`) holds ``config.yaml`` (resolved config), ``inputs.json`` (config hash,
initial weights), ``env.json``, ``metrics.csv``, ``checkpoints/{last,best}.pt`` and
``checkpoints/best_stage{i}.pt``, ``predictions_{val,test}.npz``, ``calibration.json`` and ``final.json``; a
tuned run also ``tune.json`` and ``candidates/<id>/`` (each an ordinary run directory); a scored run
``external_<name>.json`` with ``predictions_external_<name>.npz``, a site's own temperature scaling
``calibration_<name>.json`` and ``robustness.{csv,png}`` (on an external set
``robustness_external_<name>.{csv,png}``); a logged run ``tensorboard/`` or ``mlflow.json``; a rotate-folds
cell ``cell.yaml`` beside its folds. A results folder (:class:`ResultsDir`) holds ``spec.yaml``,
``results.{csv,parquet}``, ``report/`` and the runs in ``runs/``. Every file is written atomically
(temporary file, then rename), so a killed run never leaves a half-written file. When a folder may become a run
directory (resume, overwrite) is :mod:`ecgadapt.runs.creation`'s to say.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ecgadapt.errors import CheckpointError, ConfigError, DataError
from ecgadapt.fileio import (
    atomic_write_text,
    is_write_problem,
    name_failed_write,
    numpy_load_reason,
    open_append,
    replacing,
    save_predictions,
    write_json,
)
from ecgadapt.locks import LOCK_FILE

SPLITS = ("val", "test")
"""The splits a run saves predictions of."""

METRIC_COLUMNS = (
    "stage",
    "stage_name",
    "epoch",
    "train_loss",
    "val_loss",
    "val_macro_auroc",
    "val_macro_auprc",
    "lr",
    "time_s",
    "best",
    "optimizer_steps",
)
"""The columns of a fine-tuning run's ``metrics.csv`` (``lr``: the epoch's peak learning rate)."""

PREDICTION_KEYS = ("ecg_ids", "class_names", "y_true", "y_score")
"""The arrays of a ``predictions_*.npz`` file."""


class RunDir:
    """One run directory: the path of each of its files, and typed readers and writers of them."""

    CONFIG = "config.yaml"
    ENV = "env.json"
    INPUTS = "inputs.json"
    METRICS = "metrics.csv"
    FINAL = "final.json"
    CHECKPOINTS = "checkpoints"
    CALIBRATION = "calibration.json"
    TUNE = "tune.json"
    CANDIDATES = "candidates"
    CELL = "cell.yaml"
    ROBUSTNESS_CSV = "robustness.csv"
    ROBUSTNESS_PNG = "robustness.png"
    TENSORBOARD = "tensorboard"
    MLFLOW = "mlflow.json"
    LOCK = LOCK_FILE
    ENCODER = "encoder.safetensors"  # a pretraining run's encoder
    SEEN_IDS = "seen_ptbxl_ids.txt"  # a pretraining run's PTB-XL ecg_ids
    MARKERS = (ENV, INPUTS)
    """Files every run writes right after its ``config.yaml`` (fine-tuning, tuned and pretraining runs alike)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- file names ---
    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def env(self) -> Path:
        return self.path / self.ENV

    @property
    def inputs(self) -> Path:
        return self.path / self.INPUTS

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def final(self) -> Path:
        return self.path / self.FINAL

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    def stage_best_checkpoint(self, stage: int) -> Path:
        """The best checkpoint of stage ``stage`` (0-based)."""
        return self.checkpoints / f"best_stage{stage}.pt"

    def predictions(self, split: str) -> Path:
        """``predictions_<split>.npz`` (``val``, ``test``, or ``external_<name>``)."""
        return self.path / f"predictions_{split}.npz"

    @property
    def calibration(self) -> Path:
        return self.path / self.CALIBRATION

    @property
    def tune(self) -> Path:
        return self.path / self.TUNE

    @property
    def candidates(self) -> Path:
        return self.path / self.CANDIDATES

    def candidate(self, candidate_id: str) -> RunDir:
        """The run directory of one tune candidate."""
        return RunDir(self.candidates / candidate_id)

    def external(self, name: str) -> Path:
        """The scores on external set ``name`` (``external_<name>.json``)."""
        return self.path / f"external_{name}.json"

    def external_predictions(self, name: str) -> Path:
        """The predictions on external set ``name``."""
        return self.predictions(f"external_{name}")

    @property
    def cell(self) -> Path:
        return self.path / self.CELL

    @property
    def robustness_csv(self) -> Path:
        return self.path / self.ROBUSTNESS_CSV

    @property
    def robustness_png(self) -> Path:
        return self.path / self.ROBUSTNESS_PNG

    def external_robustness(self, name: str, suffix: str = "csv") -> Path:
        """The robustness table (``csv``) or figure (``png``) on external set ``name``."""
        return self.path / f"robustness_external_{name}.{suffix}"

    @property
    def tensorboard(self) -> Path:
        """The TensorBoard event files of ``--logger tensorboard``."""
        return self.path / self.TENSORBOARD

    @property
    def mlflow(self) -> Path:
        """The MLflow run id and tracking URI of ``--logger mlflow``."""
        return self.path / self.MLFLOW

    @property
    def lock(self) -> Path:
        return self.path / self.LOCK

    # --- readers and writers ---
    def read_config(self) -> dict:
        """The saved ``config.yaml`` as plain data, as written (see :func:`~ecgadapt.runs.hashing.with_legacy_values`)."""
        if not self.config.is_file():
            raise ConfigError(f"{self.path} is not an ecgadapt run directory: {self.CONFIG} is missing")
        try:
            data = yaml.safe_load(self.config.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config {self.config}: invalid YAML ({err})") from err
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"config {self.config}: expected a mapping of sections, got {type(data).__name__}"
            )
        return data

    def read_final(self) -> dict:
        """``final.json`` of a finished run or pooled cell (a clear error when missing or unreadable)."""
        if not self.final.is_file():
            raise DataError(
                f"{self.path} holds no {self.FINAL}: the run has not finished (resume it, or leave it out)"
            )
        try:
            return json.loads(self.final.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"cannot read {self.final}: {err}; rerun the cell to rewrite it") from err

    def write_final(self, final: dict) -> None:
        """Write ``final.json``."""
        write_json(self.final, final)

    def read_inputs(self) -> dict:
        """``inputs.json``: the config hash and the initial weights (path, SHA-256) the run started from."""
        return read_json(self.inputs)

    def write_inputs(self, inputs: dict) -> None:
        """Write ``inputs.json``."""
        write_json(self.inputs, inputs)

    def read_predictions(self, split: str = "test") -> dict[str, np.ndarray]:
        """``predictions_{split}.npz`` of a run or pooled cell: ecg_ids, class_names, y_true, y_score."""
        if split not in SPLITS:
            raise ConfigError(f"predictions exist for the splits {SPLITS}, not {split!r}")
        path = self.predictions(split)
        if not path.is_file():
            raise DataError(f"{path} does not exist: the run in {self.path} has not finished")
        return _read_npz(path)

    def write_predictions(
        self,
        split: str,
        ecg_ids: Sequence,
        class_names: Sequence[str],
        y_true: np.ndarray,
        y_score: np.ndarray,
        patient_ids: Sequence | None = None,
    ) -> None:
        """Write ``predictions_{split}.npz`` (``split`` may be ``external_<name>``), with each record's
        ``patient_ids`` when given."""
        save_predictions(self.predictions(split), ecg_ids, class_names, y_true, y_score, patient_ids)

    def site_calibration(self, name: str) -> Path:
        """Temperature scaling fitted on part of external set ``name`` (``calibration_<name>.json``)."""
        return self.path / f"calibration_{name}.json"

    def read_calibration(self, site: str | None = None) -> dict | None:
        """``calibration.json`` (or, given ``site``, ``calibration_<site>.json``) as written; None when the run has
        none. Checked by ``eval.temperature``."""
        path = self.calibration if site is None else self.site_calibration(site)
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def write_calibration(self, record: dict, site: str | None = None) -> None:
        """Write ``calibration.json`` (or, given ``site``, ``calibration_<site>.json``)."""
        write_json(self.calibration if site is None else self.site_calibration(site), record)

    def read_external(self, name: str) -> dict:
        """The scores on external set ``name``."""
        return read_json(self.external(name))

    def write_external(self, name: str, result: dict) -> None:
        """Write ``external_<name>.json``."""
        write_json(self.external(name), result)

    def read_tune(self) -> dict:
        """``tune.json``: the tune search's choice and every candidate's validation scores."""
        return read_json(self.tune)

    def write_tune(self, record: dict) -> None:
        """Write ``tune.json``."""
        write_json(self.tune, record)

    def read_cell(self) -> dict | None:
        """A rotate-folds cell's ``cell.yaml`` (protocol, folds, config), or None for a plain run."""
        if not self.cell.is_file():
            return None
        return yaml.safe_load(self.cell.read_text()) or {}

    def write_cell(self, meta: dict) -> None:
        """Write ``cell.yaml``."""
        write_yaml(self.cell, meta)

    def metrics_log(self) -> MetricsLog:
        """The per-epoch ``metrics.csv`` of a fine-tuning run."""
        return MetricsLog(self.metrics)


class ResultsDir:
    """A benchmark's results folder: ``spec.yaml``, ``results.{csv,parquet}``, ``report/`` and ``runs/<cell>``."""

    SPEC = "spec.yaml"
    RESULTS_CSV = "results.csv"
    RESULTS_PARQUET = "results.parquet"
    REPORT = "report"
    RUNS = "runs"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    @property
    def spec(self) -> Path:
        return self.path / self.SPEC

    @property
    def results_csv(self) -> Path:
        return self.path / self.RESULTS_CSV

    @property
    def results_parquet(self) -> Path:
        return self.path / self.RESULTS_PARQUET

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def runs(self) -> Path:
        return self.path / self.RUNS

    def run(self, cell_id: str) -> RunDir:
        """The run (or rotate-folds cell) directory of one grid cell."""
        return RunDir(self.runs / cell_id)

    def read_spec(self) -> dict:
        """``spec.yaml`` as plain data (the spec and its resolved grid); empty when the folder has none."""
        if not self.spec.is_file():
            return {}
        return yaml.safe_load(self.spec.read_text()) or {}

    def write_spec(self, record: dict) -> None:
        """Write ``spec.yaml``."""
        write_yaml(self.spec, record)


def write_yaml(path: Path, data: Any) -> None:
    """Atomically write ``data`` as YAML (keys in the order given)."""
    atomic_write_text(Path(path), yaml.safe_dump(data, sort_keys=False))


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it on failure."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if is_write_problem(err) or isinstance(err, FileNotFoundError):
            raise
        raise DataError(
            f"cannot read {path}: {numpy_load_reason(err)}; the file is damaged or was not written by ecgadapt "
            "(a run writes it when it finishes: rerun the run to rewrite it)"
        ) from None
    missing = set(PREDICTION_KEYS) - set(out)
    if missing:
        raise DataError(f"{path} lacks {sorted(missing)}: it was not written by ecgadapt")
    return out


def load_predictions(source: str | os.PathLike, split: str = "test") -> dict[str, np.ndarray]:
    """The predictions of a run or pooled cell (its ``predictions_{split}.npz``), or of the ``.npz`` file
    ``source`` itself (e.g. ``predictions_external_<name>.npz``): ecg_ids, class_names, y_true, y_score."""
    path = Path(source)
    if path.suffix == ".npz":
        return _read_npz(path)
    return RunDir(path).read_predictions(split)


def read_final(run_dir: str | os.PathLike) -> dict:
    """``final.json`` of a finished run or pooled cell (see :meth:`RunDir.read_final`)."""
    return RunDir(run_dir).read_final()


def read_cell(run_dir: str | os.PathLike) -> dict | None:
    """A rotate-folds cell's ``cell.yaml``, or None for a plain run (see :meth:`RunDir.read_cell`)."""
    return RunDir(run_dir).read_cell()


def read_config(run_dir: str | Path) -> dict:
    """The run's config as plain data: ``config.yaml``, or a rotate-folds cell's ``cell.yaml`` config."""
    run_dir = RunDir(run_dir)
    for name in (RunDir.CONFIG, RunDir.CELL):
        path = run_dir.path / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise DataError(f"cannot parse {path}: {err}") from err
            return dict(data.get("config", {})) if name == RunDir.CELL else dict(data)
    raise DataError(
        f"{run_dir.path} holds neither {RunDir.CONFIG} nor {RunDir.CELL}: it is not an ecgadapt run directory"
    )


class MetricsLog:
    """``metrics.csv``: one row per epoch; on resume, rows after the checkpointed epoch are dropped."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict]:
        """All rows as dicts of strings."""
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def append(self, row: dict) -> None:
        """Append one epoch's row (writing the header first if the file is new)."""
        try:
            with open_append(self.path, newline="") as fh:  # never through a symlink planted at metrics.csv
                writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
                if fh.tell() == 0:
                    writer.writeheader()
                writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
        except OSError as err:
            name_failed_write(err, self.path)
            raise

    def truncate(self, n_rows: int) -> None:
        """Keep only the first ``n_rows`` rows (rewritten through a fresh temporary file, then renamed)."""
        rows = self.rows()[:n_rows]
        with replacing(self.path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.6g}"
    return "" if value is None else value
