"""Torch-free atomic writers shared by run directories (``runs``) and results (``eval.results``)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ecgadapt.errors import WriteError

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
"""Errors of the place written to (not of the data): reported as :class:`~ecgadapt.errors.WriteError`."""


def is_write_problem(err: BaseException) -> bool:
    """Whether ``err`` is an OSError of the place written to (full disk, read-only or forbidden folder)."""
    return isinstance(err, OSError) and err.errno in _WRITE_ERRNOS


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent); None when unknown."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def human_bytes(n: float) -> str:
    """``1.5 GB``-style size."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def write_error(path: str | os.PathLike, err: BaseException, fix: str = "") -> WriteError:
    """One clear message for a failed write of ``path``: what went wrong (full disk, read-only, ...) and ``fix``."""
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "No space left" in str(err):
        free = free_bytes(path)
        why = "the disk is full (no space left on device" + (
            f", {human_bytes(free)} free" if free is not None else ""
        )
        why += ")"
        fix = fix or "free some space on that disk, or write somewhere else"
    elif code == errno.EROFS:
        why = "the file system is read-only"
        fix = fix or "choose a writable folder"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied"
        fix = fix or "choose a folder you can write to"
    else:
        why = str(getattr(err, "strerror", None) or err)
    return WriteError(f"cannot write {path}: {why}; {fix}" if fix else f"cannot write {path}: {why}")


def temp_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new, empty temporary file in ``path``'s folder, created exclusively (``O_EXCL``): it never follows a
    symlink planted at a predictable temporary name. The caller writes it, then renames it over ``path``."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success rename it over ``path`` (which replaces a
    symlink at ``path`` instead of writing through it), on failure remove it. A full disk or a read-only folder
    is an OSError naming ``path`` (for :func:`write_error`'s one message)."""
    try:
        tmp = temp_beside(path, suffix)
    except OSError as err:
        name_failed_write(err, path)
        raise
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        name_failed_write(err, path)
        raise


def name_failed_write(err: BaseException, path: str | os.PathLike) -> None:
    """Name a full disk or read-only folder ``err`` after the file being written (a failed write of an open
    file names none, or the temporary one), so that its one message says which file and which disk."""
    if is_write_problem(err):
        err.filename = os.fspath(path)  # type: ignore[attr-defined]


def open_append(path: str | os.PathLike, newline: str | None = None) -> IO[str]:
    """Open a text file for appending without following a symlink (``O_NOFOLLOW``): a planted link is an
    error naming the file, never a write outside the run directory."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise WriteError(
                f"cannot write {path}: it is a symlink, and ecgadapt never writes through one; remove it "
                f"(rm {path}) and rerun"
            ) from None
        raise
    return os.fdopen(fd, "a", newline=newline)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a fresh temporary file and rename."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fresh temporary file and rename (a symlink at ``path`` is replaced)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON (NaN written as null)."""
    atomic_write_text(Path(path), json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")


def numpy_load_reason(err: BaseException) -> str:
    """Why ``np.load(..., allow_pickle=False)`` failed, in words; never relays numpy's advice to load unsafely."""
    text = str(err)
    if "allow_pickle" in text or "pickled" in text:
        return (
            "it holds pickled Python objects (an object array), which ecgadapt never loads: a file ecgadapt "
            "writes holds numbers and text only"
        )
    if isinstance(err, (EOFError, zipfile.BadZipFile)) or "truncated" in text.lower() or "EOF" in text:
        return f"it is truncated or not a numpy file ({type(err).__name__}: {text})"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def to_jsonable(obj: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def save_predictions(
    path: Path,
    ecg_ids: Sequence,
    class_names: Sequence[str],
    y_true: np.ndarray,
    y_score: np.ndarray,
    patient_ids: Sequence | None = None,
) -> None:
    """Write ``predictions_*.npz``: ecg_ids, class_names, y_true (0/1) and y_score (probabilities), and, when
    given, each record's ``patient_ids`` (-1: unknown) for a bootstrap over patients."""
    arrays = {} if patient_ids is None else {"patient_ids": np.asarray(patient_ids, dtype=np.int64)}
    with replacing(path, suffix=".tmp.npz") as tmp:
        np.savez(
            tmp,
            ecg_ids=np.asarray(ecg_ids),
            class_names=np.asarray(list(class_names), dtype=str),
            y_true=np.asarray(y_true, dtype=np.int8),
            y_score=np.asarray(y_score, dtype=np.float32),
            **arrays,
        )
