"""Process hygiene: worker processes that die with their parent, and clean stops on SIGINT/SIGTERM.

A worker of a process pool calls :func:`die_with_parent` from its initializer: on Linux the kernel sends it
SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``), and everywhere a watchdog thread ends it once its
parent is gone. So a killed ``benchmark`` or ``prepare`` never leaves workers that keep writing.

The command line turns SIGTERM into :class:`Interrupted` (a ``KeyboardInterrupt``), so ``finally`` blocks run
and the run stops the way Ctrl-C stops it. Inside :func:`shielded` (a checkpoint being written) the signal
waits until the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 1.0


def _set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc/prctl
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(interval)


def die_with_parent(parent_pid: int, interval: float = WATCH_INTERVAL_S) -> None:
    """Make this (worker) process end when ``parent_pid`` ends: parent-death signal plus a watchdog thread.

    Called first thing in a worker; a parent that already died before the call ends the worker at once.
    """
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid, interval), daemon=True, name="ecgadapt-parent-watch"
    ).start()


def init_worker(parent_pid: int) -> None:
    """Initializer of a pool worker: die with the parent, and leave Ctrl-C to the parent (which stops the pool)."""
    die_with_parent(parent_pid)
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_pool(pool) -> None:
    """Stop a ``ProcessPoolExecutor`` now: cancel queued work and kill its workers (SIGKILL), then reap them.

    SIGKILL, not SIGTERM: a pool's workers hold nothing to clean up and take SIGTERM's default action once their
    initializer ran, but a worker forked a moment ago still runs its parent's handler (:func:`stop_signals`'s),
    which would raise :class:`Interrupted` in it and print a traceback beside the real error.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.kill()
    deadline = time.monotonic() + 5.0
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.monotonic()))


class Interrupted(KeyboardInterrupt):
    """A stop requested by a signal (SIGINT or SIGTERM); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


_shield_depth = 0
_pending: list[int] = []


def _handler(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    if _shield_depth > 0:
        _pending.append(signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (deferred inside :func:`shielded`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in before:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        _pending.clear()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block a stop signal must not cut short (writing a checkpoint): the signal takes effect after it."""
    global _shield_depth
    _shield_depth += 1
    try:
        yield
    finally:
        _shield_depth -= 1
        if _shield_depth == 0 and _pending:
            signum = _pending[0]
            _pending.clear()
            raise Interrupted(signum)
