"""Run directories: creation rules, environment record, per-epoch metrics, checkpoints and predictions.

Layout: ``config.yaml`` (resolved config), ``env.json``, ``metrics.csv``, ``checkpoints/{last,best}.pt`` and
``checkpoints/best_stage{i}.pt``, ``predictions_{val,test}.npz``, ``final.json``. Every file is written
atomically (temporary file, then rename), so a killed run never leaves a half-written checkpoint.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.fileio import atomic_write_text as atomic_write_text
from ecgadapt.fileio import is_write_problem, write_error, write_json
from ecgadapt.fileio import save_predictions as save_predictions
from ecgadapt.locks import check_unlocked, entries

CONFIG = "config.yaml"
ENV = "env.json"
METRICS = "metrics.csv"
FINAL = "final.json"
CHECKPOINTS = "checkpoints"
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


INPUTS = "inputs.json"
RESULT_FREE_FIELDS = frozenset(
    {
        "out",
        "notes",
        "data.cache_dir",
        "training.device",
        "training.num_workers",
        "training.progress",
        "training.eval_batch_size",
        "training.calibration",
    }
)
"""Config fields that cannot change a run's result (where it goes, how fast it runs): left out of its hash."""


def _default_value(key: str) -> Any:
    """The library default of a flat config key (a stage field's dataclass default for ``recipe.stages.N.*``)."""
    import dataclasses

    from ecgadapt.train.config import FinetuneConfig
    from ecgadapt.train.recipes import Stage

    parts = key.split(".")
    if len(parts) == 4 and parts[:2] == ["recipe", "stages"]:
        field = {f.name: f for f in dataclasses.fields(Stage)}.get(parts[3])
        return _MISSING if field is None or field.default is dataclasses.MISSING else field.default
    if key in HASH_DEFAULTS:
        return HASH_DEFAULTS[key]
    if key not in _DEFAULTS:
        _DEFAULTS.update(
            {k: v for k, v in flat_config(FinetuneConfig().to_dict()).items() if not k.startswith("recipe.")}
        )
    return _DEFAULTS.get(key, _MISSING)


_MISSING = object()
HASH_DEFAULTS: dict[str, Any] = {"model.name": "ecg_vit_tiny"}
"""Defaults that changed after run hashes were first written, at their old value: a saved config keeps its hash
(the default model became ``xresnet1d_tiny`` on 2026-12-02; every ``ecg_vit_tiny`` run hashed without its name)."""
_DEFAULTS: dict[str, Any] = {}


def config_sha256(config: dict) -> str:
    """SHA-256 of a config's result-relevant fields (all but :data:`RESULT_FREE_FIELDS`), canonical JSON.

    Fields at their library default are left out, so a field that a newer ecgadapt adds (at a default that
    keeps the old behaviour) does not change the hash of configs written before it existed."""
    flat = {
        k: v
        for k, v in flat_config(config).items()
        if k not in RESULT_FREE_FIELDS and not _same(v, _default_value(k))
    }
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def saved_config_sha256(run_dir: str | Path) -> str | None:
    """The hash of the config saved in ``run_dir/config.yaml`` by this version's rule (None when unreadable)."""
    from ecgadapt.train.config import FinetuneConfig

    try:
        return config_sha256(FinetuneConfig.from_saved(Path(run_dir) / CONFIG).to_dict())
    except (OSError, ConfigError):
        return None


def _same(value: Any, default: Any) -> bool:
    if default is _MISSING:
        return False
    try:
        return bool(value == default) and type(value) is not bool or value is default
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (remembered per path, size and modification time within this process)."""
    path = Path(path).expanduser().resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def run_inputs(config: dict, weights: Path | None) -> dict:
    """What identifies a run's inputs: the config hash and the initial weights file with its SHA-256."""
    return {
        "config_sha256": config_sha256(config),
        "weights": None if weights is None else str(weights),
        "weights_sha256": None if weights is None else file_sha256(weights),
    }


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
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} exists and is not a folder; choose another --out")
    exists = path.is_dir() and any(entries(path))
    if path.is_dir():
        check_unlocked(path)
    if resume:
        if not (path / CONFIG).is_file():
            raise ConfigError(f"cannot resume: {path} holds no {CONFIG}; start the run without --resume")
        return path
    if exists:
        if not overwrite:
            raise ConfigError(
                f"run directory {path} already exists and is not empty; pass --resume to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
        if not (path / CONFIG).is_file():
            raise ConfigError(
                f"refusing to overwrite {path}: it is not an ecgadapt run directory (no {CONFIG}); delete it yourself"
            )
    return path


def prepare_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Create run dir ``out``; an existing non-empty one is an error unless ``resume`` or ``overwrite``."""
    path = check_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        return path
    try:
        if path.is_dir() and any(entries(path)):  # overwrite (checked above)
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_write_problem(err):
            raise write_error(path, err, "choose a writable --out with free space") from None
        raise
    return path


def flat_config(d: dict, prefix: str = "") -> dict:
    """Nested config dict to dotted keys (lists of dicts by index, ``kwargs`` dicts kept whole)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "kwargs":
            out.update(flat_config(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flat_config(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def changed_keys(saved: dict, now: dict, free: Collection[str] = ()) -> list[str]:
    """Sorted keys, other than ``free`` ones, whose values differ between two (flat) config dicts."""
    return sorted(k for k in set(saved) | set(now) if k not in free and saved.get(k) != now.get(k))


def check_resume_config(saved: dict, now: dict, free: Collection[str], run_dir: Path) -> None:
    """Raise a ConfigError naming the first differing keys unless ``saved`` and ``now`` agree outside ``free``."""
    diff = changed_keys(saved, now, free)
    if diff:
        details = "; ".join(f"{k}: {saved.get(k)!r} in the run, {now.get(k)!r} now" for k in diff[:5])
        raise ConfigError(
            f"cannot resume {run_dir}: the config differs from the run's {CONFIG} ({details}); "
            "resume with the same settings, or start a new run with another --out"
        )


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it on failure."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def git_commit(start: Path | None = None) -> str | None:
    """The git commit of the ecgadapt checkout (None when not a git checkout or git is missing)."""
    start = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(start), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit + ("-dirty" if dirty.stdout.strip() else "") if commit else None


def environment(device: torch.device | str) -> dict:
    """Versions, device, git commit, host, time and command line of this process."""
    import ecgadapt

    dev = torch.device(device)
    env = {
        "ecgadapt": ecgadapt.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_line": list(sys.argv),
    }
    return env


def write_env(run_dir: Path, device: torch.device | str, resumed: bool = False) -> dict:
    """Write ``env.json``; a resume keeps the first record and appends one under ``resumes``."""
    path = Path(run_dir) / ENV
    env = environment(device)
    if resumed and path.is_file():
        first = read_json(path)
        first.setdefault("resumes", []).append(env)
        env = first
    write_json(path, env)
    return env


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
        new = not self.path.is_file()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})

    def truncate(self, n_rows: int) -> None:
        """Keep only the first ``n_rows`` rows."""
        rows = self.rows()[:n_rows]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.6g}"
    return "" if value is None else value


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomically ``torch.save`` ``state`` to ``path``."""
    from ecgadapt.procs import shielded

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with shielded():  # a stop signal waits until the checkpoint is complete
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, tmp)
            os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError of its zip writer
        tmp.unlink(missing_ok=True)
        msg = str(err).lower()
        if isinstance(err, RuntimeError):
            if "write" not in msg and "space" not in msg:
                raise
            err = OSError(errno.ENOSPC if "space" in msg or _disk_full(path) else errno.EIO, str(err))
        elif not is_write_problem(err):
            raise
        fix = f"free space on that disk (or move the run), then continue with --resume --out {path.parent.parent}"
        raise write_error(path, err, fix) from None


def _disk_full(path: Path) -> bool:
    from ecgadapt.fileio import free_bytes

    free = free_bytes(path)
    return free is not None and free < (1 << 20)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; was the run finished (or started)?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        from ecgadapt.models.checkpoint import load_failure_reason

        raise CheckpointError(f"cannot load checkpoint {path}: {load_failure_reason(path, err)}") from None


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """Read a ``predictions_*.npz`` file into a dict of arrays."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
