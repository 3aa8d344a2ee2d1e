"""Advisory locks on run directories: one writer at a time.

A process that writes a run directory holds ``RUN_DIR/.lock`` (``fcntl.flock``, the file holds its PID). A
second writer is refused with an error naming the directory and the holder's PID. The kernel drops the lock
when the holder dies, so a killed run never blocks its resume; the file is removed on release.

The lock file is opened with ``O_NOFOLLOW`` and never truncated before the lock is held: a ``.lock`` that is a
symlink (or a directory, or anything but a plain file) is refused with a message, so a planted link can never
make a run write its PID into a file outside the run directory.

Why not the ``filelock`` package: its locks do not record the holder's PID (our refusal names it, with the
command that stops it), and it has no way to ask whether a directory is locked without taking the lock
(:func:`check_unlocked`, used before a run directory is cleared or a result is read).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ecgadapt.errors import ConfigError

LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]


class RunLockedError(ConfigError):
    """The run directory is being written by another process."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _refuse(run_dir: Path, lock: Path) -> RunLockedError:
    return RunLockedError(
        f"run directory {run_dir} is being written by another ecgadapt process (PID {_holder(lock)}); wait for it "
        f"to finish or stop it (kill {_holder(lock)}), then rerun; two writers would corrupt the run"
    )


def _refuse_odd_lock(lock: Path) -> None:
    """Raise a :class:`~ecgadapt.errors.ConfigError` when ``lock`` exists but is not a plain file."""
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        kind = "a symlink" if lock.is_symlink() else "a directory" if lock.is_dir() else "not a plain file"
        raise ConfigError(
            f"lock path {lock} is {kind}, not a lock file ecgadapt wrote; ecgadapt never follows or replaces "
            f"it: remove it (rm {'-r ' if kind == 'a directory' else ''}{lock}) if no ecgadapt process uses "
            f"{lock.parent}, then rerun"
        )


def _open_lock(lock: Path, flags: int) -> int:
    """``os.open`` of a lock file that never follows a symlink (a race after the check is refused too)."""
    _refuse_odd_lock(lock)
    try:
        return os.open(lock, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            _refuse_odd_lock(lock)
        raise


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """The held lock of one run directory; :meth:`release` (or leaving its ``with`` block) frees it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        while True:
            fd = _open_lock(self.path, os.O_RDWR | os.O_CREAT)
            if not _try_lock(fd):
                os.close(fd)
                raise _refuse(self.run_dir, self.path)
            try:  # the file may have been removed (released) between our open and our lock: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as err:  # a full disk: the lock is given up, the error names the lock file
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
            err.filename = str(self.path)
            raise
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def check_unlocked(run_dir: str | os.PathLike) -> None:
    """Raise :class:`RunLockedError` when another process holds ``run_dir``'s lock (nothing is taken)."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not os.path.lexists(path):
        return
    try:
        fd = _open_lock(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if not _try_lock(fd):
            raise _refuse(Path(run_dir), path)
    finally:
        os.close(fd)  # closing drops a lock we took


@contextlib.contextmanager
def locked(run_dir: str | os.PathLike) -> Iterator[RunLock]:
    """Hold ``run_dir``'s lock for the block."""
    lock = RunLock(run_dir)
    try:
        yield lock
    finally:
        lock.release()


def entries(path: Path) -> list[Path]:
    """A folder's entries other than its lock file."""
    return [p for p in Path(path).iterdir() if p.name != LOCK_FILE]


def writes_run_dir(fn: Callable) -> Callable:
    """Decorator: hold the lock of the run directory passed as ``fn``'s first argument while ``fn`` runs (a
    missing directory is left to ``fn``'s own error)."""

    @functools.wraps(fn)
    def holding(run_dir, *args, **kwargs):
        if not Path(run_dir).is_dir():
            return fn(run_dir, *args, **kwargs)
        with locked(run_dir):
            return fn(run_dir, *args, **kwargs)

    return holding
