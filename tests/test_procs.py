"""Worker processes die with their parent; stop signals become Interrupted (deferred while shielded)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ecgadapt.procs import Interrupted, shielded, stop_signals

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


def children(pid: int) -> set[int]:
    """PIDs of the direct children of ``pid`` (from /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def kill_parent_and_check_workers(script: str, n_workers: int, tmp_path: Path) -> None:
    """Run ``script`` (which starts a pool of busy workers), kill -9 it, and require its workers to exit."""
    path = tmp_path / "parent.py"
    path.write_text(textwrap.dedent(script))
    parent = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path)
    started = lambda: {int(p.name.split("-")[1]) for p in tmp_path.glob("busy-*")}  # noqa: E731
    try:
        assert wait_for(lambda: len(started()) >= n_workers, 120), "the pool never started its workers"
        workers = started()
        assert workers <= children(parent.pid) and all(alive(w) for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_for(lambda: not any(alive(w) for w in workers), 5), "workers outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in children(parent.pid):
            os.kill(w, signal.SIGKILL)


def test_benchmark_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    """The local executor's spawn pool (as ``benchmark --jobs 2`` uses it): workers busy in a job die with the parent."""
    kill_parent_and_check_workers(
        """
        import multiprocessing, os, time
        from concurrent.futures import ProcessPoolExecutor
        from ecgadapt.bench.executors import _set_worker_threads

        def busy(seconds):
            open(f"busy-{os.getpid()}", "w").close()
            time.sleep(seconds)

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=_set_worker_threads, initargs=(1, os.getpid()))
            futures = [pool.submit(busy, 120) for _ in range(4)]
            time.sleep(600)
        """,
        2,
        tmp_path,
    )


def test_prepare_workers_exit_when_the_parent_is_killed(tmp_path):
    """``prepare --workers 2``: the readers filling the memmap die with a killed prepare."""
    kill_parent_and_check_workers(
        """
        import os, time
        from ecgadapt.data import cache

        def slow_fill(signals_path, items, rate, reader=None):
            open(f"busy-{os.getpid()}", "w").close()
            time.sleep(120)
            return len(items)

        if __name__ == "__main__":
            cache._fill = slow_fill
            cache._read_all("unused.npy", [[(i, "x")] for i in range(4)], 100, 2, False, "test")
        """,
        2,
        tmp_path,
    )


def test_sigterm_raises_interrupted_and_waits_for_a_shielded_block():
    order = []
    with stop_signals():
        with pytest.raises(Interrupted) as info:
            with shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                order.append("block finished")
        order.append("raised")
    assert order == ["block finished", "raised"]
    assert info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_stopping_a_pool_whose_worker_is_still_starting_prints_nothing(tmp_path):
    """A forked worker runs its parent's stop handler until its initializer ends; stop_pool in that window
    (a reader's sibling failing first, as ``prepare`` sees it on a loaded machine) must not make it print."""
    path = tmp_path / "parent.py"
    path.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os, time
            from concurrent.futures import ProcessPoolExecutor
            from ecgadapt.procs import stop_pool, stop_signals

            def slow_start():
                open(f"starting-{os.getpid()}", "w").close()
                time.sleep(30)

            if __name__ == "__main__":
                with stop_signals():
                    ctx = multiprocessing.get_context("fork")
                    pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=slow_start)
                    pool.submit(int)
                    while len([p for p in os.listdir() if p.startswith("starting-")]) < 2:
                        time.sleep(0.05)
                    stop_pool(pool)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
