"""Advisory locks on run directories: one writer at a time.

A process that writes a run directory holds ``RUN_DIR/.lock`` (``fcntl.flock``, the file holds its PID). A
second writer is refused with an error naming the directory and the holder's PID. The kernel drops the lock
when the holder dies, so a killed run never blocks its resume; the file is removed on release.
"""

from __future__ import annotations

import contextlib
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
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
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
    if fcntl is None or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
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
