"""The benchmark grid: run every unfinished cell of a spec, then collect ``results.csv``.

The pieces live in :mod:`~ecgadapt.train.spec` (the YAML spec), :mod:`~ecgadapt.train.cells` (cells, runs,
status) and :mod:`~ecgadapt.train.executors` (local pool, Ray). Under ``rotate-folds`` a cell's ten runs are
pooled and scored once per record. A finished cell whose config matches is skipped, a partial one resumes,
and a cell whose saved config differs from the spec stops the grid before anything runs: nothing is ever
overwritten.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecgadapt.errors import ConfigError, ECGAdaptError
from ecgadapt.eval.results import CELL, ROTATE, collect_results, read_cell, write_pooled_cell, write_results
from ecgadapt.train.cells import Cell, Run, _base_dict, cell_id, expand_cells, run_status
from ecgadapt.train.executors import EXECUTORS, _job, _run_local, _run_ray
from ecgadapt.train.rundir import FINAL
from ecgadapt.train.spec import PROTOCOLS, GridSpec, ModelEntry, list_specs, load_spec, recipe_label

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
    "run_grid",
    "run_status",
]


def _write_yaml(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def _finish_cell(cell: Cell) -> bool:
    """Write ``cell.yaml`` (and pool the folds of a rotate-folds cell) once every run is done; True if done."""
    if not all((r.run_dir / FINAL).is_file() for r in cell.runs):
        return False
    cell.dir.mkdir(parents=True, exist_ok=True)
    meta = cell.meta()
    if read_cell(cell.dir) != meta:
        _write_yaml(cell.dir / CELL, meta)
    if cell.protocol == ROTATE and not (cell.dir / FINAL).is_file():
        write_pooled_cell(cell.dir, [r.run_dir for r in cell.runs])
    return True


@dataclass
class GridReport:
    """What :func:`run_grid` did."""

    cells: list[Cell]
    ran: list[str]  # run dirs trained (fresh or resumed)
    skipped: list[str]  # run dirs already finished
    failed: dict[str, str]  # run dir -> error


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
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if int(jobs) < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out).expanduser().resolve()
    cells = expand_cells(spec, data, out)
    todo: list[dict] = []
    skipped: list[str] = []
    for cell in cells:  # check every cell before running anything: a conflict stops the grid up front
        if cell.protocol == ROTATE and (cell.dir / FINAL).is_file():
            for r in cell.runs:
                run_status(r)
            skipped += [str(r.run_dir) for r in cell.runs]
            continue
        for r in cell.runs:
            status = run_status(r)
            if status == "done":
                skipped.append(str(r.run_dir))
            else:
                todo.append(_job(r, status == "partial", cell.cell_id))
    out.mkdir(parents=True, exist_ok=True)
    _write_yaml(out / "spec.yaml", _spec_record(spec, data, out, cells, executor, jobs))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"benchmark {spec.name}", unit="run", disable=not progress or not todo)
    by_cell = {c.cell_id: c for c in cells}

    def on_result(result: dict) -> None:
        bar.update(1)
        if result["ok"]:
            _finish_cell(by_cell[result["cell_id"]])
        else:
            bar.write(f"FAILED {result['run_dir']}: {result['error']}")

    cache = None
    if todo and executor == "local":
        cache = _prepare_cache(todo[0]["config"], open_it=int(jobs) <= 1)
    try:
        if executor == "ray":
            results = _run_ray(todo, address, gpus_per_cell, cpus_per_cell, on_result) if todo else []
        else:
            results = _run_local(todo, int(jobs), on_result, cache)
    finally:
        bar.close()
    for cell in cells:
        _finish_cell(cell)
    failed = {r["run_dir"]: r["error"] for r in results if not r["ok"]}
    return GridReport(cells, [r["run_dir"] for r in results if r["ok"]], skipped, failed)


def _prepare_cache(config: dict, open_it: bool) -> Any:
    """Prepare the shared data cache once before the runs (and open it for in-process runs)."""
    from ecgadapt.data.cache import load_or_prepare, prepare_cache

    d = config["data"]
    if open_it:
        return load_or_prepare(d["root"], d["rate"], cache_dir=d.get("cache_dir"), progress=False)
    prepare_cache(d["root"], d["rate"], cache_dir=d.get("cache_dir"), progress=False)
    return None


def _spec_record(spec: GridSpec, data: str | Path, out: Path, cells: list[Cell], executor: str, jobs: int) -> dict:
    import ecgadapt

    return {
        "spec": spec.to_dict(),
        "resolved": {
            "source": spec.source,
            "data": str(Path(data).expanduser().resolve()),
            "results_dir": str(out),
            "protocol": spec.protocol,
            "executor": executor,
            "jobs": int(jobs),
            "ecgadapt": ecgadapt.__version__,
            "command_line": list(sys.argv),
            "n_cells": len(cells),
            "n_runs": sum(len(c.runs) for c in cells),
            "cells": [c.cell_id for c in cells],
            "base_configs": {recipe_label(r): _base_dict(spec, r) for r in spec.recipes},
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
        grid_spec, data, out, jobs=jobs, executor=executor, address=address, gpus_per_cell=gpus_per_cell,
        cpus_per_cell=cpus_per_cell, progress=progress,
    )  # fmt: skip
    table = collect_results(out)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_results(table, out)
    for w in caught:
        print(f"ecgadapt: warning: {w.message}", file=sys.stderr)
    n_cells = len(report.cells)
    print(
        f"benchmark {grid_spec.name}: {n_cells} cells, {len(report.ran)} runs trained, {len(report.skipped)} already "
        f"done, {len(report.failed)} failed -> {Path(out) / 'results.csv'} ({len(table)} rows)"
    )
    if report.failed:
        lines = "; ".join(f"{Path(k).name}: {v.splitlines()[0] if v else v}" for k, v in list(report.failed.items())[:5])
        raise ECGAdaptError(
            f"{len(report.failed)} of {len(report.ran) + len(report.failed)} runs failed ({lines}); fix the cause and "
            "rerun the same command: finished cells are skipped and the failed ones resume"
        )
    return table
