"""Executors of grid jobs: in this process, a local process pool, or Ray. A job is plain data (a config dict).

A job's ``kind`` names what it runs in a table of job kinds handed to the executor (the grid's
:data:`~ecgadapt.bench.grid.JOB_KINDS`: train a run, select a tuned run's candidate); the executors import no
training code. A job never raises: a failed run comes back as ``{"ok": False, "error": ...}`` so one bad cell
cannot stop the grid.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from ecgadapt.bench.cells import Run
from ecgadapt.errors import ConfigError
from ecgadapt.procs import init_worker, stop_pool

EXECUTORS = ("local", "ray")

JobKinds = Mapping[str, Callable[[dict, Any], None]]
"""Job kind -> ``fn(job, cache)`` that runs a job of that kind in this process (``cache``: an open data cache or
None)."""


def make_job(run: Run, resume: bool, cell_id: str, kind: str = "train") -> dict:
    """The job (plain data) of one run: train it (``resume`` a started one), or select its tune candidate."""
    return {
        "cell_id": cell_id,
        "run_dir": str(run.run_dir),
        "config": run.config.to_dict(),
        "resume": resume,
        "kind": kind,
    }


def run_job(job: dict, kinds: JobKinds, cache: Any = None) -> dict:
    """Run one job in this process with the function its kind names in ``kinds``; never raises (errors come
    back in the result)."""
    try:
        kinds[job.get("kind", "train")](job, cache)
        return {**_small(job), "ok": True}
    except Exception as err:  # noqa: BLE001 - one failed cell must not stop the grid
        return {
            **_small(job),
            "ok": False,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }


def _small(job: dict) -> dict:
    return {"cell_id": job["cell_id"], "run_dir": job["run_dir"]}


def _set_worker_threads(threads: int, parent_pid: int | None = None) -> None:
    """Process-pool initializer: die with the parent (no orphan keeps writing a run), torch threads per worker."""
    if parent_pid is not None:
        init_worker(parent_pid)
    import torch

    torch.set_num_threads(max(1, int(threads)))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def run_local(
    jobs: list[dict], kinds: JobKinds, n_workers: int, progress: Callable[[dict], None], cache: Any
) -> list[dict]:
    """Run ``jobs`` in this process (``n_workers`` 1, with the open ``cache``) or in a pool of spawned workers."""
    if n_workers <= 1:
        results = []
        for job in jobs:
            results.append(run_job(job, kinds, cache))
            progress(results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, _cpu_count() // n_workers)
    ctx = multiprocessing.get_context("spawn")
    results = []
    pool = ProcessPoolExecutor(
        n_workers, mp_context=ctx, initializer=_set_worker_threads, initargs=(threads, os.getpid())
    )
    try:
        futures = [pool.submit(run_job, job, kinds) for job in jobs]
        for fut in as_completed(futures):
            results.append(fut.result())
            progress(results[-1])
    except BaseException:  # interrupted (or a broken pool): stop the workers now, queued runs never start
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return results


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            'the ray executor needs Ray, which is not installed: pip install "ecgadapt[ray]" (or use --executor local)'
        ) from None
    return ray


def run_ray(
    jobs: list[dict],
    kinds: JobKinds,
    address: str | None,
    gpus_per_cell: float | None,
    cpus_per_cell: float,
    progress: Callable[[dict], None],
) -> list[dict]:
    """Run ``jobs`` as Ray tasks (``gpus_per_cell`` default: 1 when the cluster has GPUs, else 0)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        started = True
    try:
        if gpus_per_cell is None:
            gpus_per_cell = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        remote = ray.remote(num_gpus=gpus_per_cell, num_cpus=cpus_per_cell, max_retries=0)(run_job)
        pending = {remote.remote(job, kinds): job for job in jobs}
        results = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    results.append(ray.get(ref))
                except Exception as err:  # noqa: BLE001 - a worker that died
                    results.append({**_small(job), "ok": False, "error": f"{type(err).__name__}: {err}"})
                progress(results[-1])
        return results
    finally:
        if started:
            ray.shutdown()
