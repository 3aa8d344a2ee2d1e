"""The benchmark grid: a YAML spec (models x tasks x recipes x fractions x seeds) run as fine-tuning cells.

A spec is plain data (see ``src/ecgadapt/specs/*.yaml``)::

    name: paper-main
    protocol: official            # or rotate-folds
    models:                       # name, weights ("required": must be given), kwargs, label, recipes (subset)
      - {name: st_mem_vit_b75, weights: required}
    tasks: [superdiagnostic, rhythm]
    recipes: [baseline_ft, post_training]   # preset names, or mappings {name, stages, pretrained, label}
    fractions: [1.0]
    seeds: [0, 1, 2, 3, 4]
    overrides: {training.batch_size: 64}    # any FinetuneConfig field by dotted path, for every cell
    stage_overrides: {}                     # Stage fields set on every stage of every recipe (e.g. epochs)

Each cell is one :func:`~ecgadapt.train.finetune.run_finetune` run in ``RESULTS/runs/<cell-id>`` (official
protocol), or, under ``rotate-folds``, ten runs ``RESULTS/runs/<cell-id>/foldNN`` (fold k tests, fold
k % 10 + 1 validates, the other eight train) whose test predictions are pooled and scored once per record.
A finished cell whose config matches is skipped, a partial one resumes, and a cell whose saved config
differs from the spec stops the grid before anything runs: nothing is ever overwritten.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import itertools
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecgadapt.errors import ConfigError, ECGAdaptError
from ecgadapt.eval.results import CELL, ROTATE, collect_results, read_cell, write_pooled_cell, write_results
from ecgadapt.train.config import TASKS, FinetuneConfig, load_yaml, parse_override, set_in
from ecgadapt.train.finetune import resolve_config, run_finetune
from ecgadapt.train.recipes import Stage, override_stages
from ecgadapt.train.rundir import CONFIG, FINAL, changed_keys, flat_config

__all__ = [
    "PROTOCOLS",
    "Cell",
    "GridSpec",
    "ModelEntry",
    "Run",
    "expand_cells",
    "list_specs",
    "load_spec",
    "run_benchmark",
    "run_grid",
    "run_status",
]

PROTOCOLS = ("official", ROTATE)
EXECUTORS = ("local", "ray")
REQUIRED = "required"  # placeholder weights: must be given with --weights or --set models.N.weights=...
SPEC_KEYS = (
    "name", "description", "protocol", "models", "tasks", "recipes", "fractions", "seeds", "overrides",
    "stage_overrides",
)  # fmt: skip
CONFIG_SECTIONS = ("data", "model", "recipe", "training", "seed", "out", "notes")
# Config fields set by the grid's axes or by the command line, never by ``overrides``.
_AXIS_FIELDS = {
    "data.task": "tasks",
    "data.fraction": "fractions",
    "data.root": "--data",
    "seed": "seeds",
    "out": "--out",
    "notes": "(set by run_finetune)",
}
_AXIS_PREFIXES = {"model": "models (name, weights, kwargs of each entry)", "recipe": "recipes or stage_overrides"}
# Fields that may differ between a saved run and the spec: they do not change the result.
_FREE_FIELDS = frozenset(
    {"out", "notes", "data.cache_dir", "training.device", "training.num_workers", "training.progress",
     "training.eval_batch_size"}
)  # fmt: skip


# --- the spec ----------------------------------------------------------------------------------------------


@dataclass
class ModelEntry:
    """One model of the grid: registry name, initial weights, factory kwargs, display label, recipe subset."""

    name: str
    weights: str | None = None
    kwargs: dict = field(default_factory=dict)
    label: str | None = None
    recipes: list[str] | None = None  # recipe labels this model runs (None: all)

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass
class GridSpec:
    """A benchmark grid: the product models x tasks x recipes x fractions x seeds, with shared overrides."""

    name: str
    models: list[ModelEntry]
    tasks: list[str]
    recipes: list[str | dict]
    fractions: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    protocol: str = "official"
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    stage_overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<dict>"

    def to_dict(self) -> dict:
        """Plain-data form (what ``spec.yaml`` holds)."""
        d = dataclasses.asdict(self)
        d.pop("source")
        d["models"] = [{k: v for k, v in m.items() if k in ("name", "weights") or v not in (None, {})} for m in d["models"]]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> GridSpec:
        """Validate plain data (e.g. a parsed YAML spec) into a spec; errors name ``source`` and the key."""
        if not isinstance(d, dict):
            raise ConfigError(f"spec {source}: expected a mapping of {', '.join(SPEC_KEYS)}, got {type(d).__name__}")
        unknown = set(d) - set(SPEC_KEYS)
        if unknown:
            raise ConfigError(f"spec {source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(SPEC_KEYS)}")
        for key in ("models", "tasks", "recipes"):
            if not d.get(key):
                raise ConfigError(f"spec {source}: '{key}' must be a non-empty list")
        spec = cls(
            name=str(d.get("name") or Path(source).stem),
            models=[_model_entry(m, i, source) for i, m in enumerate(_as_list(d["models"], "models", source))],
            tasks=[str(t) for t in _as_list(d["tasks"], "tasks", source)],
            recipes=list(_as_list(d["recipes"], "recipes", source)),
            fractions=[_number(f, float, "fractions", source) for f in _as_list(d.get("fractions", [1.0]), "fractions", source)],
            seeds=[_number(s, int, "seeds", source) for s in _as_list(d.get("seeds", [0, 1, 2, 3, 4]), "seeds", source)],
            protocol=str(d.get("protocol") or "official"),
            description=str(d.get("description") or ""),
            overrides=_flat_overrides(d.get("overrides") or {}, source),
            stage_overrides=dict(d.get("stage_overrides") or {}),
            source=source,
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the spec and the bad key."""
        where = f"spec {self.source}"
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        for t in self.tasks:
            if t not in TASKS:
                raise ConfigError(f"{where}: unknown task {t!r}; choose from {', '.join(TASKS)}")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"{where}: fractions must lie in (0, 1], got {f!r}")
        for key in ("tasks", "fractions", "seeds"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ConfigError(f"{where}: '{key}' lists a value twice: {values}")
        labels = [recipe_label(r) for r in self.recipes]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: two recipes share a label in {labels}; give mappings a distinct 'label'")
        models = [m.display for m in self.models]
        if len(set(models)) != len(models):
            raise ConfigError(f"{where}: two models share a label in {models}; give them distinct 'label's")
        for i, m in enumerate(self.models):
            for r in m.recipes or []:
                if r not in labels:
                    raise ConfigError(f"{where}: models.{i}.recipes names {r!r}, which is not in recipes {labels}")
        unknown = set(self.stage_overrides) - {f.name for f in dataclasses.fields(Stage)} | (
            {"name"} & set(self.stage_overrides)
        )
        if unknown:
            raise ConfigError(
                f"{where}: stage_overrides has unknown or fixed field(s) {', '.join(sorted(unknown))}; allowed: "
                + ", ".join(f.name for f in dataclasses.fields(Stage) if f.name != "name")
            )
        for key in self.overrides:
            head = key.split(".")[0]
            if head not in CONFIG_SECTIONS:
                raise ConfigError(
                    f"{where}: override {key!r} is not a FinetuneConfig field; sections: {', '.join(CONFIG_SECTIONS)}"
                )
            for axis, instead in _AXIS_FIELDS.items():
                if key == axis or key.startswith(axis + "."):
                    raise ConfigError(f"{where}: {key} is set by the grid; use {instead} instead of an override")
            if head in _AXIS_PREFIXES:
                raise ConfigError(f"{where}: {key} differs per cell; set it through {_AXIS_PREFIXES[head]}")
            if self.protocol == ROTATE and key in ("data.test_fold", "data.val_fold"):
                raise ConfigError(f"{where}: {key} is set per fold by the rotate-folds protocol; drop the override")


def _as_list(value: Any, key: str, source: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"spec {source}: '{key}' must be a list, got {value!r}")
    return list(value)


def _number(value: Any, tp: type, key: str, source: str) -> Any:
    try:
        out = tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"spec {source}: '{key}' must hold numbers, got {value!r}") from None
    if isinstance(value, bool) or (tp is int and out != float(value)):
        raise ConfigError(f"spec {source}: '{key}' must hold integers, got {value!r}")
    return out


def _model_entry(m: Any, i: int, source: str) -> ModelEntry:
    if isinstance(m, str):
        m = {"name": m}
    if not isinstance(m, dict) or "name" not in m:
        raise ConfigError(f"spec {source}: models.{i} must be a name or a mapping with 'name', got {m!r}")
    allowed = {f.name for f in dataclasses.fields(ModelEntry)}
    unknown = set(m) - allowed
    if unknown:
        raise ConfigError(f"spec {source}: models.{i} has unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    kwargs = m.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"spec {source}: models.{i}.kwargs must be a mapping, got {kwargs!r}")
    recipes = m.get("recipes")
    return ModelEntry(
        name=str(m["name"]),
        weights=None if m.get("weights") is None else str(m["weights"]),
        kwargs=dict(kwargs),
        label=None if m.get("label") is None else str(m["label"]),
        recipes=None if recipes is None else [str(r) for r in _as_list(recipes, f"models.{i}.recipes", source)],
    )


def _flat_overrides(d: Any, source: str, prefix: str = "") -> dict[str, Any]:
    """``{training: {batch_size: 8}}`` or ``{training.batch_size: 8}`` -> ``{"training.batch_size": 8}``."""
    if not isinstance(d, dict):
        raise ConfigError(f"spec {source}: 'overrides' must be a mapping of config fields, got {d!r}")
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not name.endswith("kwargs"):
            out.update(_flat_overrides(value, source, name + "."))
        else:
            out[name] = value
    return out


def recipe_label(recipe: str | dict) -> str:
    """The display label of a recipe entry (its ``label``, else its ``name``)."""
    if isinstance(recipe, str):
        return recipe
    if isinstance(recipe, dict) and "name" in recipe:
        return str(recipe.get("label") or recipe["name"])
    raise ConfigError(f"a recipe entry must be a preset name or a mapping with 'name', got {recipe!r}")


def _specs_folder():
    return importlib.resources.files("ecgadapt") / "specs"


def list_specs() -> list[str]:
    """Names of the built-in specs (``src/ecgadapt/specs/*.yaml``)."""
    return sorted(p.name[: -len(".yaml")] for p in _specs_folder().iterdir() if p.name.endswith(".yaml"))


def apply_spec_overrides(d: dict, sets: Sequence[str]) -> dict:
    """Apply ``--set key=value`` items to a spec dict: spec keys (``seeds=[0,1]``, ``models.0.weights=P``,
    ``stage_overrides.epochs=1``) edit the spec; config paths (``training.batch_size=8``) become overrides."""
    d = json.loads(json.dumps(d))  # deep copy of plain data
    if isinstance(d.get("models"), list):  # "name" shorthand -> mapping, so models.N.field can be set
        d["models"] = [{"name": m} if isinstance(m, str) else m for m in d["models"]]
    for item in sets:
        path, value = parse_override(item)
        head = path[0]
        if head == "overrides":
            if len(path) < 2:
                raise ConfigError(f"--set {item}: give a field, e.g. overrides.training.batch_size=8")
            d.setdefault("overrides", {})
            d["overrides"] = {**_flat_overrides(d["overrides"], "--set"), ".".join(path[1:]): value}
        elif head in SPEC_KEYS:
            if head not in d and len(path) > 1:
                d[head] = {} if head == "stage_overrides" else d.get(head)
            set_in(d, path, value)
        elif head in CONFIG_SECTIONS:
            d["overrides"] = {**_flat_overrides(d.get("overrides") or {}, "--set"), ".".join(path): value}
        else:
            raise ConfigError(
                f"--set {item}: {head!r} is neither a spec key ({', '.join(SPEC_KEYS)}) nor a config section "
                f"({', '.join(CONFIG_SECTIONS)})"
            )
    return d


def load_spec(
    spec: str | Path | dict,
    sets: Sequence[str] = (),
    weights: str | None = None,
    protocol: str | None = None,
) -> GridSpec:
    """A spec from a built-in name, a YAML file or a dict, with ``--set`` items, ``--weights`` and ``--protocol``.

    ``weights`` replaces every model's ``weights: required`` placeholder.
    """
    if isinstance(spec, dict):
        data, source = spec, "<dict>"
    else:
        text = str(spec)
        if text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file():
            path = Path(text).expanduser()
            if not path.is_file():
                raise ConfigError(f"spec file {path} does not exist; give a YAML file or one of: {', '.join(list_specs())}")
            data, source = load_yaml(path), str(path)
        else:
            if text not in list_specs():
                raise ConfigError(f"unknown spec {text!r}; built-in specs: {', '.join(list_specs())} (or give a YAML file)")
            data, source = yaml.safe_load((_specs_folder() / f"{text}.yaml").read_text()), text
    data = apply_spec_overrides(data, sets)
    if protocol is not None:
        data["protocol"] = protocol
    if weights is not None:
        for m in data.get("models") or []:
            if isinstance(m, dict) and m.get("weights") == REQUIRED:
                m["weights"] = str(weights)
    return GridSpec.from_dict(data, source)


# --- cells and runs ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One fine-tuning run of a cell (the cell itself, or one fold of a rotate-folds cell)."""

    run_dir: Path
    config: FinetuneConfig
    test_fold: int
    val_fold: int


@dataclass
class Cell:
    """One grid cell: a (model, task, recipe, fraction, seed) and its run(s)."""

    cell_id: str
    dir: Path
    task: str
    model_label: str
    recipe_label: str
    fraction: float
    seed: int
    protocol: str
    config: FinetuneConfig  # the base config (official folds)
    runs: list[Run]

    def meta(self) -> dict:
        """What ``cell.yaml`` records."""
        meta = {
            "cell_id": self.cell_id,
            "protocol": self.protocol,
            "task": self.task,
            "model_label": self.model_label,
            "recipe_label": self.recipe_label,
            "fraction": self.fraction,
            "seed": self.seed,
        }
        if self.protocol == ROTATE:
            meta["folds"] = [
                {"run": r.run_dir.name, "test_fold": r.test_fold, "val_fold": r.val_fold} for r in self.runs
            ]
            meta["config"] = self.config.to_dict()
        return meta


_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def _safe(text: str) -> str:
    return _SAFE.sub("-", text).strip("-") or "x"


def cell_id(task: str, model: str, recipe: str, fraction: float, seed: int, protocol: str = "official") -> str:
    """``<task>__<model>__<recipe>__frac<fraction>__seed<seed>`` (plus ``__rotate-folds``)."""
    parts = [_safe(task), _safe(model), _safe(recipe), f"frac{fraction:g}", f"seed{seed}"]
    if protocol == ROTATE:
        parts.append(ROTATE)
    return "__".join(parts)


def _base_dict(spec: GridSpec, recipe: str | dict) -> dict:
    """Default config with the recipe resolved and the spec's stage_overrides and overrides applied."""
    entry = dict(recipe) if isinstance(recipe, dict) else recipe
    if isinstance(entry, dict):
        entry.pop("label", None)
    cfg = FinetuneConfig.from_dict({"recipe": entry, "training": {"progress": False}})
    if spec.stage_overrides:
        cfg.recipe = override_stages(cfg.recipe, **spec.stage_overrides)
    d = cfg.to_dict()
    for key, value in spec.overrides.items():
        set_in(d, key.split("."), value)
    return d


def expand_cells(spec: GridSpec, data_root: str | Path, results_dir: str | Path) -> list[Cell]:
    """Every cell of ``spec`` (seed-major order, so an interrupted grid has whole seeds), with validated configs."""
    results_dir = Path(results_dir).expanduser().resolve()
    root = str(Path(data_root).expanduser().resolve())
    bases = {recipe_label(r): _base_dict(spec, r) for r in spec.recipes}
    cells = []
    for seed, m, task, fraction, rlabel in itertools.product(
        spec.seeds, spec.models, spec.tasks, spec.fractions, list(bases)
    ):
        if m.recipes is not None and rlabel not in m.recipes:
            continue
        cid = cell_id(task, m.display, rlabel, fraction, seed, spec.protocol)
        cdir = results_dir / "runs" / cid
        d = json.loads(json.dumps(bases[rlabel]))
        d["data"].update(root=root, task=task, fraction=fraction)
        d["model"].update(name=m.name, weights=m.weights, kwargs=dict(m.kwargs))
        d["seed"] = seed
        d["out"] = str(cdir)
        try:
            base = FinetuneConfig.from_dict(d)
        except ConfigError as err:
            raise ConfigError(f"spec {spec.source}, cell {cid}: {err}") from None
        if m.weights == REQUIRED and not base.recipe.pretrained:  # from random init: no weights needed
            d["model"]["weights"] = None
            base = FinetuneConfig.from_dict(d)
        elif m.weights == REQUIRED:
            i = spec.models.index(m)
            raise ConfigError(
                f"spec {spec.source}: model {m.display!r} needs pretrained weights: pass --weights PATH, or "
                f"--set models.{i}.weights=PATH ('bundled' for a bundled checkpoint, null for random init)"
            )
        if spec.protocol == ROTATE:
            from ecgadapt.data.splits import FOLDS, rotate_folds

            runs = []
            for k in FOLDS:
                test_fold, val_fold = rotate_folds(k)
                fd = json.loads(json.dumps(d))
                fd["data"].update(test_fold=test_fold, val_fold=val_fold)
                fd["out"] = str(cdir / f"fold{k:02d}")
                runs.append(Run(cdir / f"fold{k:02d}", FinetuneConfig.from_dict(fd), test_fold, val_fold))
        else:
            runs = [Run(cdir, base, base.data.test_fold, base.data.val_fold)]
        for run in runs:
            try:
                resolve_config(run.config)
            except ConfigError as err:
                raise ConfigError(f"spec {spec.source}, cell {cid}: {err}") from None
        cells.append(Cell(cid, cdir, task, m.display, rlabel, fraction, seed, spec.protocol, base, runs))
    return cells


def config_differences(saved: FinetuneConfig, wanted: FinetuneConfig) -> list[str]:
    """The fields (beyond those that cannot change a result) in which two configs differ, as messages."""
    a, b = flat_config(saved.to_dict()), flat_config(wanted.to_dict())
    keys = changed_keys(a, b, _FREE_FIELDS)
    return [f"{k}: {a.get(k, '(absent)')!r} saved, {b.get(k, '(absent)')!r} in the spec" for k in keys]


def run_status(run: Run) -> str:
    """``"done"`` (final.json, config matches), ``"partial"`` (resume), or ``"new"``; a conflict is an error."""
    d = run.run_dir
    if not d.exists() or (d.is_dir() and not any(d.iterdir())):
        return "new"
    if not (d / CONFIG).is_file():
        raise ConfigError(
            f"{d} exists but holds no {CONFIG}: it is not a run of this grid; move or delete it, or choose another --out"
        )
    try:
        saved = FinetuneConfig.from_yaml(d / CONFIG)
    except ConfigError as err:
        raise ConfigError(f"cannot read {d / CONFIG}: {err}; delete {d} to rerun the cell") from None
    diff = config_differences(saved, run.config)
    if diff:
        raise ConfigError(
            f"{d} was run with a different config than the spec asks for ({'; '.join(diff[:4])}"
            f"{'; ...' if len(diff) > 4 else ''}); the grid never overwrites a run: use another --out, or delete "
            f"{d} to rerun it with the spec's settings"
        )
    return "done" if (d / FINAL).is_file() else "partial"


# --- execution ---------------------------------------------------------------------------------------------


def _job(run: Run, resume: bool, cell_id: str) -> dict:
    return {"cell_id": cell_id, "run_dir": str(run.run_dir), "config": run.config.to_dict(), "resume": resume}


def _run_job(job: dict, cache: Any = None) -> dict:
    """Run one job in this process; never raises (errors come back in the result)."""
    try:
        cfg = FinetuneConfig.from_dict(job["config"])
        kwargs = {"cache": cache} if cache is not None else {}
        run_finetune(cfg, resume=job["resume"], **kwargs)
        return {**_small(job), "ok": True}
    except Exception as err:  # noqa: BLE001 - one failed cell must not stop the grid
        return {**_small(job), "ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def _small(job: dict) -> dict:
    return {"cell_id": job["cell_id"], "run_dir": job["run_dir"]}


def _set_worker_threads(threads: int) -> None:
    """Process-pool initializer: torch threads per worker."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _run_local(jobs: list[dict], n_workers: int, progress: Callable[[dict], None], cache: Any) -> list[dict]:
    if n_workers <= 1:
        results = []
        for job in jobs:
            results.append(_run_job(job, cache))
            progress(results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, _cpu_count() // n_workers)
    ctx = multiprocessing.get_context("spawn")
    results = []
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_set_worker_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(_run_job, job) for job in jobs]
        for fut in as_completed(futures):
            results.append(fut.result())
            progress(results[-1])
    return results


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray, which is not installed: pip install \"ecgadapt[ray]\" (or use --executor local)"
        ) from None
    return ray


def _run_ray(
    jobs: list[dict],
    address: str | None,
    gpus_per_cell: float | None,
    cpus_per_cell: float,
    progress: Callable[[dict], None],
) -> list[dict]:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        started = True
    try:
        if gpus_per_cell is None:
            gpus_per_cell = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        remote = ray.remote(num_gpus=gpus_per_cell, num_cpus=cpus_per_cell, max_retries=0)(_run_job)
        pending = {remote.remote(job): job for job in jobs}
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
