"""The benchmark grid: run every unfinished cell of a spec, then collect ``results.csv``.

The pieces live in :mod:`~ecgadapt.bench.spec` (the YAML spec), :mod:`~ecgadapt.bench.cells` (cells, runs,
status) and :mod:`~ecgadapt.bench.executors` (local pool, Ray), which run the jobs of :data:`JOB_KINDS`:
training one run (a plain run or a tune candidate) and selecting a tuned run's candidate
(:mod:`~ecgadapt.bench.candidates`). Under ``rotate-folds`` a cell's ten runs are pooled and scored once per
record. A finished cell whose config matches is skipped, a partial one resumes,
and a cell whose saved config differs from the spec stops the grid before anything runs: nothing is ever
overwritten.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ecgadapt.bench import candidates, reuse
from ecgadapt.bench.cells import (
    Cell,
    Run,
    _base_dict,
    cell_id,
    early_stopping_by_recipe,
    expand_cells,
    run_status,
    spec_config_hashes,
    start_tuned_run,
)
from ecgadapt.bench.executors import EXECUTORS, JobKinds, make_job, run_local, run_ray
from ecgadapt.bench.spec import PROTOCOLS, GridSpec, ModelEntry, list_specs, load_spec, recipe_label
from ecgadapt.constants import VERSION
from ecgadapt.data.cache import load_or_prepare, prepare_cache
from ecgadapt.errors import ConfigError, ECGAdaptError
from ecgadapt.eval.pooling import ROTATE, pooled_is_current, write_pooled_cell
from ecgadapt.eval.results import collect_results, write_results
from ecgadapt.inference.external import check_external_sets, score_external_sets
from ecgadapt.runs.rundir import ResultsDir, RunDir, read_cell
from ecgadapt.train.config import FinetuneConfig
from ecgadapt.train.finetune import run_finetune

__all__ = [
    "PROTOCOLS",
    "Cell",
    "GridSpec",
    "ModelEntry",
    "Run",
    "cell_id",
    "expand_cells",
    "list_specs",
    "load_spec",
    "run_benchmark",
    "execute_runs",
    "run_grid",
    "run_status",
]


def train_job(job: dict, cache: Any = None) -> None:
    """Job kind ``train``: one fine-tuning run (a plain run or a tune candidate) of the job's config."""
    kwargs = {"cache": cache} if cache is not None else {}
    run_finetune(FinetuneConfig.from_dict(job["config"]), resume=job["resume"], **kwargs)


def reuse_job(job: dict, cache: Any = None) -> None:
    """Job kind ``reuse``: a plain run takes the training of the tune candidate that trains exactly like it."""
    kwargs = {"cache": cache} if cache is not None else {}
    cfg = FinetuneConfig.from_dict(job["config"])
    reuse.take_candidate_training(cfg, job["source"], device=cfg.training.device, **kwargs)


def select_job(job: dict, cache: Any = None) -> None:
    """Job kind ``select``: choose a tuned run's candidate on the validation fold and score it on the test fold."""
    kwargs = {"cache": cache} if cache is not None else {}
    candidates.finish_tuned_run(job["run_dir"], device=job["config"]["training"]["device"], **kwargs)


JOB_KINDS: JobKinds = {"train": train_job, "select": select_job, "reuse": reuse_job}
"""What each kind of grid job runs; handed to the executors."""


def _finish_cell(cell: Cell) -> bool:
    """Write ``cell.yaml`` (and pool the folds of a rotate-folds cell) once every run is done; True if done.

    A rotate-folds cell counts as done only when all its folds are, and its pooled score is rebuilt whenever
    a fold's ``final.json`` changed since it was pooled.
    """
    if not all(RunDir(r.run_dir).final.is_file() for r in cell.runs):
        return False
    cell.dir.mkdir(parents=True, exist_ok=True)
    meta = cell.meta()
    if read_cell(cell.dir) != meta:
        RunDir(cell.dir).write_cell(meta)
    if cell.protocol == ROTATE and not pooled_is_current(cell.dir, [r.run_dir for r in cell.runs]):
        write_pooled_cell(cell.dir, [r.run_dir for r in cell.runs])
    return True


@dataclass
class GridReport:
    """What :func:`run_grid` did."""

    cells: list[Cell]
    ran: list[str]  # run dirs trained (fresh or resumed), and tuned runs finished by selection
    skipped: list[str]  # run dirs already finished
    failed: dict[str, str]  # run dir -> error


def _pending_jobs(cell_id: str, run: Run) -> tuple[list[dict], list[str], bool]:
    """``(training jobs, finished run dirs, needs selection)`` of one run; a conflict raises.

    A tuned run trains as its candidates; once they are all finished it needs one selection job.
    """
    status = run_status(run)
    if status == "done":
        return [], [str(run.run_dir)], False
    if not run.tuned:
        return [make_job(run, status == "partial", cell_id)], [], False
    jobs, finished = [], []
    for cand in run.candidates:
        cand_status = run_status(cand)
        if cand_status == "done":
            finished.append(str(cand.run_dir))
        else:
            jobs.append(make_job(cand, cand_status == "partial", cell_id))
    return jobs, finished, True


def _training_sources(runs: Sequence[tuple[str, Run]]) -> dict[str, Run]:
    """``{training hash: tune candidate}`` of every candidate among ``runs`` (the first of equal ones)."""
    sources: dict[str, Run] = {}
    for _, run in runs:
        for cand in run.candidates:
            sources.setdefault(reuse.training_sha256(cand.config), cand)
    return sources


def _reuse_job(cell_id: str, run: Run, sources: dict[str, Run]) -> dict | None:
    """The ``reuse`` job of a plain run that has trained nothing yet and trains exactly like a candidate."""
    if run.tuned or not reuse.can_take_training(run.run_dir):
        return None
    source = sources.get(reuse.training_sha256(run.config))
    if source is None:
        return None
    return {**make_job(run, False, cell_id, kind="reuse"), "source": str(source.run_dir)}


def execute_runs(
    runs: Sequence[tuple[str, Run]],
    *,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    gpus_per_cell: float | None = None,
    cpus_per_cell: float = 1.0,
    progress: bool = True,
    desc: str = "runs",
    cache: Any = None,
    on_done: Any = None,
) -> tuple[list[str], list[str], dict[str, str]]:
    """Train every unfinished ``(cell id, run)``: the training jobs (plain runs and tune candidates), then one
    selection job per tuned run whose candidates have all finished; on the local pool seed by seed
    (:func:`_waves`). A plain run that trains exactly like a candidate is not trained: once the candidate
    has, it takes its training (:mod:`~ecgadapt.bench.reuse`). Every run is checked before anything runs, so a
    conflict stops the whole batch up front. Returns ``(ran, skipped, failed)``."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if int(jobs) < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    train: list[dict] = []
    skipped: list[str] = []
    tuned: list[tuple[str, Run]] = []
    reused: list[dict] = []
    sources = _training_sources(runs)
    for cid, run in runs:
        pending, finished, needs_selection = _pending_jobs(cid, run)
        taking = _reuse_job(cid, run, sources) if pending else None
        if taking is not None:
            reused.append(taking)
        else:
            train += pending
        skipped += finished
        if needs_selection:
            tuned.append((cid, run))
    for _, run in tuned:
        start_tuned_run(run)

    total = len(train) + len(tuned) + len(reused)
    bar = tqdm(total=total, desc=desc, unit="run", disable=not progress or not total)

    def on_result(result: dict) -> None:
        bar.update(1)
        if not result["ok"]:
            bar.write(f"FAILED {result['run_dir']}: {result['error']}")
        elif on_done is not None:
            on_done(result)

    first = (train or reused or [_select_job(cid, run) for cid, run in tuned[:1]] or [None])[0]
    if first is not None and cache is None and executor == "local":
        cache = _prepare_cache(first["config"], open_it=int(jobs) <= 1)

    def run_batch(batch: list[dict]) -> list[dict]:
        if not batch:
            return []
        if executor == "ray":
            return run_ray(batch, JOB_KINDS, address, gpus_per_cell, cpus_per_cell, on_result)
        return run_local(batch, JOB_KINDS, int(jobs), on_result, cache)

    results: list[dict] = []
    try:
        for wave_train, wave_tuned, wave_reused in _waves(train, tuned, reused, by_seed=executor == "local"):
            results += run_batch(wave_train)
            ready = [
                (c, r) for c, r in wave_tuned if all(RunDir(x.run_dir).final.is_file() for x in r.candidates)
            ]
            takers = [j for j in wave_reused if RunDir(j["source"]).final.is_file()]  # its source trained
            bar.total -= len(wave_tuned) - len(ready) + len(wave_reused) - len(takers)
            bar.refresh()
            results += run_batch(takers + [_select_job(cid, run) for cid, run in ready])
    finally:
        bar.close()
    failed = {r["run_dir"]: r["error"] for r in results if not r["ok"]}
    return [r["run_dir"] for r in results if r["ok"]], skipped, failed


def _waves(
    train: list[dict], tuned: list[tuple[str, Run]], reused: list[dict], by_seed: bool
) -> list[tuple[list[dict], list, list[dict]]]:
    """The order of work: per seed (``by_seed``, the local pool), its training jobs and then its selections and
    reuses, so an interrupted grid keeps whole seeds, tuned runs included; else one wave (Ray spreads everything
    at once)."""
    if not by_seed:
        return [(train, tuned, reused)]
    seeds = sorted({j["config"]["seed"] for j in train + reused} | {r.config.seed for _, r in tuned})
    return [
        (
            [j for j in train if j["config"]["seed"] == s],
            [(c, r) for c, r in tuned if r.config.seed == s],
            [j for j in reused if j["config"]["seed"] == s],
        )
        for s in seeds
    ]


def _select_job(cell_id: str, run: Run) -> dict:
    return make_job(run, False, cell_id, kind="select")


def run_grid(
    spec: GridSpec,
    data: str | Path,
    out: str | Path,
    *,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    gpus_per_cell: float | None = None,
    cpus_per_cell: float = 1.0,
    progress: bool = True,
) -> GridReport:
    """Run every unfinished cell of ``spec`` on the data folder ``data``; results go to ``out``."""
    out = Path(out).expanduser().resolve()
    cells = expand_cells(spec, data, out)
    for cell in cells:  # check every cell before running anything: a conflict stops the grid up front
        for r in cell.runs:
            run_status(r)
    check_external_sets(spec.external)  # a missing external folder stops the grid before it trains
    out.mkdir(parents=True, exist_ok=True)
    ResultsDir(out).write_spec(_spec_record(spec, data, out, cells, executor, jobs))
    by_cell = {c.cell_id: c for c in cells}
    ran, skipped, failed = execute_runs(
        [(c.cell_id, r) for c in cells for r in c.runs],
        jobs=jobs,
        executor=executor,
        address=address,
        gpus_per_cell=gpus_per_cell,
        cpus_per_cell=cpus_per_cell,
        progress=progress,
        desc=f"benchmark {spec.name}",
        on_done=lambda result: _finish_cell(by_cell[result["cell_id"]]),
    )
    for cell in cells:
        _finish_cell(cell)
    if spec.external:  # a failed score is reported with the failed runs, after results.csv is written
        runs = [r.run_dir for c in cells for r in c.runs]
        score_external_sets(spec.external, runs, progress=progress, failed=failed)
    return GridReport(cells, ran, skipped, failed)


def _prepare_cache(config: dict, open_it: bool) -> Any:
    """Prepare the shared data cache once before the runs (and open it for in-process runs)."""
    d = config["data"]
    source, labels = d.get("source", "ptbxl"), d.get("labels")
    if open_it or source != "ptbxl":  # a source other than PTB-XL is prepared by opening it
        cache = load_or_prepare(
            d["root"], d["rate"], cache_dir=d.get("cache_dir"), progress=False, source=source, labels=labels
        )
        return cache if open_it else None
    prepare_cache(d["root"], d["rate"], cache_dir=d.get("cache_dir"), progress=False)
    return None


def _spec_record(
    spec: GridSpec, data: str | Path, out: Path, cells: list[Cell], executor: str, jobs: int
) -> dict:
    return {
        "spec": spec.to_dict(),
        "resolved": {
            "source": spec.source,
            "data": str(Path(data).expanduser().resolve()),
            "results_dir": str(out),
            "protocol": spec.protocol,
            "executor": executor,
            "jobs": int(jobs),
            "ecgadapt": VERSION,
            "command_line": list(sys.argv),
            "n_cells": len(cells),
            "n_runs": sum(len(c.runs) for c in cells),
            "cells": [c.cell_id for c in cells],
            "cell_config_sha256": spec_config_hashes(cells),
            "base_configs": {recipe_label(r): _base_dict(spec, r) for r in spec.recipes},
            "early_stopping": early_stopping_by_recipe(spec),
        },
    }


def run_benchmark(
    spec: str | Path | dict,
    data: str | Path,
    out: str | Path,
    sets: Sequence[str] = (),
    *,
    weights: str | None = None,
    protocol: str | None = None,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    gpus_per_cell: float | None = None,
    cpus_per_cell: float = 1.0,
    progress: bool = True,
):
    """``ecgadapt benchmark``: load the spec, run the grid, write ``results.csv``/``.parquet``; return the table.

    Failed runs are reported after the others finish, as one :class:`ECGAdaptError` (their cells rerun,
    resuming, on the next invocation).
    """
    grid_spec = load_spec(spec, sets, weights=weights, protocol=protocol)
    report = run_grid(
        grid_spec,
        data,
        out,
        jobs=jobs,
        executor=executor,
        address=address,
        gpus_per_cell=gpus_per_cell,
        cpus_per_cell=cpus_per_cell,
        progress=progress,
    )
    table = collect_results(out)
    with warnings.catch_warnings():  # parquet is optional: the summary says whether it was written
        warnings.simplefilter("ignore", UserWarning)
        written = write_results(table, out)
    parquet = "" if len(written) > 1 else "; results.parquet needs pyarrow: pip install 'ecgadapt[parquet]'"
    n_cells = len(report.cells)
    print(
        f"benchmark {grid_spec.name}: {n_cells} cells, {len(report.ran)} runs trained, {len(report.skipped)} already "
        f"done, {len(report.failed)} failed -> {ResultsDir(out).results_csv} ({len(table)} rows{parquet})"
    )
    if report.failed:
        lines = "; ".join(
            f"{Path(k).name}: {v.splitlines()[0] if v else v}" for k, v in list(report.failed.items())[:5]
        )
        raise ECGAdaptError(
            f"{len(report.failed)} of {len(report.ran) + len(report.failed)} runs failed ({lines}); fix the cause and "
            "rerun the same command: finished cells are skipped and the failed ones resume"
        )
    return table
