"""Run directories and results folders: every file name, the creation rules, and torch-free typed readers and writers.

A run directory (:class:`RunDir`) holds ``config.yaml`` (resolved config), ``inputs.json`` (config hash,
initial weights), ``env.json``, ``metrics.csv``, ``checkpoints/{last,best}.pt`` and
``checkpoints/best_stage{i}.pt``, ``predictions_{val,test}.npz``, ``calibration.json`` and ``final.json``; a
tuned run also ``tune.json`` and ``candidates/<id>/`` (each an ordinary run directory); a scored run
``external_<name>.json`` with ``predictions_external_<name>.npz``, a site's own temperature scaling
``calibration_<name>.json`` and ``robustness.{csv,png}`` (on an external set
``robustness_external_<name>.{csv,png}``); a logged run ``tensorboard/`` or ``mlflow.json``; a rotate-folds
cell ``cell.yaml`` beside its folds. A results folder (:class:`ResultsDir`) holds ``spec.yaml``,
``results.{csv,parquet}``, ``report/`` and the runs in ``runs/``. Every file is written atomically
(temporary file, then rename), so a killed run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import re
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
    write_error,
    write_json,
)
from ecgadapt.locks import LOCK_FILE, check_unlocked, entries

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


_RUN_FILES = frozenset(
    {
        RunDir.CONFIG,
        RunDir.ENV,
        RunDir.INPUTS,
        RunDir.METRICS,
        RunDir.FINAL,
        RunDir.CALIBRATION,
        RunDir.TUNE,
        RunDir.CELL,
        RunDir.ROBUSTNESS_CSV,
        RunDir.ROBUSTNESS_PNG,
        RunDir.LOCK,
        RunDir.ENCODER,
        RunDir.SEEN_IDS,
        *(f"predictions_{split}.npz" for split in SPLITS),
    }
)
"""The plain files a run writes at its top level (besides ``external_<name>.json`` and its predictions)."""
_EXTERNAL_FILE = re.compile(r"^(external_[A-Za-z0-9._-]+\.json|predictions_external_[A-Za-z0-9._-]+\.npz)$")
_CHECKPOINT_FILE = re.compile(r"^(last|best|best_stage\d+)\.pt$")
_TEMPORARY = re.compile(r"^(?P<base>.+?)(\.[A-Za-z0-9_]{8})?\.tmp(\.npz)?$")
"""A temporary file of an atomic write that a killed process left: ``<name>.<random>.tmp[.npz]`` (or, written
by older versions, ``<name>.tmp``)."""


def _is_run_file(name: str, pattern: re.Pattern | None = None) -> bool:
    """Whether a top-level file (or, with ``pattern``, a file of a run's subfolder) is one a run writes."""
    match = _TEMPORARY.match(name)
    for candidate in (name, match["base"] if match else None):
        if candidate is None:
            continue
        if pattern is not None:
            if pattern.match(candidate):
                return True
        elif candidate in _RUN_FILES or _EXTERNAL_FILE.match(candidate):
            return True
    return False


def foreign_entries(path: str | os.PathLike) -> list[Path]:
    """The entries of run directory ``path`` that no run writes (nested ones by their own path): what deleting
    the run's files would leave, and what ``--overwrite`` refuses to delete. A symlink is never followed."""
    path = Path(path)
    foreign: list[Path] = []
    for entry in sorted(path.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            if not _is_run_file(entry.name):
                foreign.append(entry)
        elif entry.name == RunDir.CHECKPOINTS:
            foreign += [
                f
                for f in sorted(entry.iterdir())
                if (f.is_dir() and not f.is_symlink()) or not _is_run_file(f.name, _CHECKPOINT_FILE)
            ]
        elif entry.name == RunDir.CANDIDATES:
            for candidate in sorted(entry.iterdir()):
                is_folder = candidate.is_dir() and not candidate.is_symlink()
                foreign += foreign_entries(candidate) if is_folder else [candidate]
        else:
            foreign.append(entry)
    return foreign


def _remove_run_files(path: Path) -> None:
    """Delete what a run wrote in ``path`` (checked first by :func:`foreign_entries`); symlinks are removed,
    never followed."""
    for entry in path.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            for inner in entry.iterdir():
                if inner.is_dir() and not inner.is_symlink():
                    _remove_run_files(inner)
                    inner.rmdir()
                else:
                    inner.unlink()
            entry.rmdir()


def run_dir_problem(path: str | os.PathLike) -> str | None:
    """Why the existing folder ``path`` is not recognisably an ecgadapt run (None when it is): its
    ``config.yaml`` must parse as a run's config and it must hold a run's marker files (``env.json`` or
    ``inputs.json``)."""
    files = RunDir(path)
    if not files.config.is_file():
        return f"it holds no {RunDir.CONFIG}"
    try:
        config = files.read_config()
    except (ConfigError, OSError, UnicodeDecodeError) as err:
        return f"its {RunDir.CONFIG} does not parse ({err})"
    finetune = isinstance(config.get("recipe"), (dict, str)) and isinstance(config.get("data"), dict)
    pretrain = isinstance(config.get("corpora"), list)
    if "model" not in config or not (finetune or pretrain):
        return f"its {RunDir.CONFIG} is not a run's config (no model with recipe and data, or corpora)"
    if not any((files.path / marker).is_file() for marker in RunDir.MARKERS):
        return f"it holds none of a run's marker files ({', '.join(RunDir.MARKERS)})"
    return None


def _shown(paths: Sequence[Path], root: Path, limit: int = 5) -> str:
    names = [str(p.relative_to(root)) + ("/" if p.is_dir() and not p.is_symlink() else "") for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_overwrite(path: str | os.PathLike) -> None:
    """Raise a ConfigError unless ``--overwrite`` may clear the existing, non-empty folder ``path``: it must be
    recognisably an ecgadapt run (:func:`run_dir_problem`) and hold nothing but a run's files
    (:func:`foreign_entries`); the error names what would be lost."""
    path = Path(path)
    problem = run_dir_problem(path)
    if problem is not None:
        raise ConfigError(
            f"refusing to overwrite {path}: it is not an ecgadapt run directory ({problem}); nothing was deleted: "
            "choose another --out, or delete the folder yourself"
        )
    foreign = foreign_entries(path)
    if foreign:
        raise ConfigError(
            f"refusing to overwrite {path}: besides a run's files it holds {_shown(foreign, path)}, which no "
            "ecgadapt run writes and --overwrite would delete; nothing was deleted: move them out of the folder "
            "(or choose another --out), then rerun"
        )


def check_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Check, writing nothing, that ``out`` can become (or be resumed as) a run directory; see :func:`prepare_run_dir`.

    A folder holding only a lock file left by a killed start counts as empty; a folder another process is
    writing (its lock is held) is refused.
    """
    if resume and overwrite:
        raise ConfigError(
            "--resume and --overwrite exclude each other: resume continues a run, overwrite deletes it"
        )
    path = Path(out)
    config = RunDir.CONFIG
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} exists and is not a folder; choose another --out")
    exists = path.is_dir() and any(entries(path))
    if path.is_dir():
        check_unlocked(path)
    if resume:
        if not (path / config).is_file():
            raise ConfigError(f"cannot resume: {path} holds no {config}; start the run without --resume")
        return path
    if exists:
        if not overwrite:
            raise ConfigError(
                f"run directory {path} already exists and is not empty; pass --resume to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
        check_overwrite(path)
    return path


def prepare_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Create run dir ``out``; an existing non-empty one is an error unless ``resume`` or ``overwrite``."""
    path = check_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        return path
    try:
        if path.is_dir() and any(entries(path)):  # overwrite (checked above): only the old run's own files
            _remove_run_files(path)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_write_problem(err):
            raise write_error(path, err, "choose a writable --out with free space") from None
        raise
    return path


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
