"""Creating a run directory: when a folder may become, be resumed as, or be overwritten by a run.

``--overwrite`` clears only what a run writes: a folder that is not recognisably an ecgadapt run, or that holds
anything no run writes, is refused, naming what would be lost. Symlinks are never followed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ecgadapt.errors import ConfigError
from ecgadapt.fileio import is_write_problem, write_error
from ecgadapt.locks import check_unlocked, entries
from ecgadapt.runs.rundir import SPLITS, RunDir

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
