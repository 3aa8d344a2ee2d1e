"""Grid cells: a spec expanded into (model, task, recipe, fraction, seed) cells, their runs, and run status.

Each cell is one :func:`~ecgadapt.train.finetune.run_finetune` run in ``RESULTS/runs/<cell-id>`` (official
protocol), or, under ``rotate-folds``, ten runs ``RESULTS/runs/<cell-id>/foldNN`` (fold k tests, fold
k % 10 + 1 validates, the other eight train). A finished run whose config matches is ``done``, a started one
is ``partial`` (resume), and a run whose saved config differs from the spec is a conflict (an error).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ecgadapt.bench.candidates import candidate_configs
from ecgadapt.bench.spec import (
    EARLY_STOPPING,
    REQUIRED,
    GridSpec,
    apply_early_stopping,
    own_early_stopping,
    recipe_label,
)
from ecgadapt.data.splits import FOLDS, rotate_folds
from ecgadapt.errors import ConfigError
from ecgadapt.eval.pooling import ROTATE
from ecgadapt.locks import entries
from ecgadapt.runs.hashing import (
    RESULT_FREE_FIELDS,
    changed_keys,
    config_sha256,
    flat_config,
    run_inputs,
    saved_config_sha256,
)
from ecgadapt.runs.rundir import ResultsDir, RunDir, read_json
from ecgadapt.train.config import FinetuneConfig, set_in
from ecgadapt.train.finetune import resolve_config, weights_to_load
from ecgadapt.train.recipes import override_stages, with_budget

# Fields that may differ between a saved run and the spec: they do not change the result.
_FREE_FIELDS = RESULT_FREE_FIELDS


@dataclass
class Run:
    """One fine-tuning run of a cell (the cell itself, or one fold of a rotate-folds cell).

    A run whose config has ``tune`` is trained as its ``candidates`` (ordinary runs in ``candidates/<id>``,
    validation only); the run itself is finished by selecting one of them (:mod:`~ecgadapt.bench.candidates`).
    """

    run_dir: Path
    config: FinetuneConfig
    test_fold: int
    val_fold: int
    candidates: list[Run] = field(default_factory=list)

    @property
    def tuned(self) -> bool:
        return bool(self.config.tune)

    def inputs(self) -> dict:
        """The config hash and the initial weights (path, SHA-256) this run starts from."""
        return run_inputs(self.config.to_dict(), weights_to_load(self.config))


def make_run(run_dir: Path, config: FinetuneConfig) -> Run:
    """A :class:`Run` of ``config`` in ``run_dir``, with its tune candidates when the config has ``tune``."""
    candidates = (
        [Run(Path(c.out), c, c.data.test_fold, c.data.val_fold) for c in candidate_configs(config).values()]
        if config.tune
        else []
    )
    return Run(Path(run_dir), config, config.data.test_fold, config.data.val_fold, candidates)


def start_tuned_run(run: Run) -> None:
    """Write a tuned run's ``config.yaml`` and ``inputs.json`` (its candidates write their own when they start)."""
    files = RunDir(run.run_dir)
    files.path.mkdir(parents=True, exist_ok=True)
    run.config.to_yaml(files.config)
    files.write_inputs(run.inputs())


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


def cell_id(
    task: str, model: str, recipe: str, fraction: float, seed: int, protocol: str = "official"
) -> str:
    """``<task>__<model>__<recipe>__frac<fraction>__seed<seed>`` (plus ``__rotate-folds``)."""
    parts = [_safe(task), _safe(model), _safe(recipe), f"frac{fraction:g}", f"seed{seed}"]
    if protocol == ROTATE:
        parts.append(ROTATE)
    return "__".join(parts)


def _base_dict(spec: GridSpec, recipe: str | dict) -> dict:
    """Default config with the recipe resolved and the spec's budget, early stopping, stage_overrides and
    overrides applied."""
    entry = dict(recipe) if isinstance(recipe, dict) else recipe
    tune = {}
    if isinstance(entry, dict):
        entry.pop("label", None)
        tune = entry.pop("tune", None) or {}
        for key in EARLY_STOPPING:
            entry.pop(key, None)
    cfg = FinetuneConfig.from_dict({"recipe": entry, "training": {"progress": False}, "tune": tune})
    if spec.budget_epochs is not None:
        cfg.recipe = with_budget(cfg.recipe, spec.budget_epochs)
    cfg.recipe = apply_early_stopping(cfg.recipe, recipe, spec.patience, spec.min_delta)
    if spec.stage_overrides:
        cfg.recipe = override_stages(cfg.recipe, **spec.stage_overrides)
    d = cfg.to_dict()
    for key, value in spec.overrides.items():
        set_in(d, key.split("."), value)
    return d


def early_stopping_by_recipe(spec: GridSpec) -> dict[str, dict]:
    """Per recipe label: each stage's patience and min_delta as the grid runs them, and who set them (``spec``:
    the shared setting; ``recipe``: the recipe entry's own, on purpose) -- what ``spec.yaml`` records."""
    out = {}
    for recipe in spec.recipes:
        stages = FinetuneConfig.from_dict(_base_dict(spec, recipe)).recipe.stages
        own = [own_early_stopping(recipe, i) for i in range(len(stages))]
        out[recipe_label(recipe)] = {
            "set_by": "recipe" if any(own) else "spec",
            "stages": [{"name": s.name, "patience": s.patience, "min_delta": s.min_delta} for s in stages],
        }
    return out


def expand_cells(spec: GridSpec, data_root: str | Path, results_dir: str | Path) -> list[Cell]:
    """Every cell of ``spec`` (seed-major order, so an interrupted grid has whole seeds), with validated configs."""
    results_dir = Path(results_dir).expanduser().resolve()
    root = str(Path(data_root).expanduser().resolve())
    try:
        bases = {recipe_label(r): _base_dict(spec, r) for r in spec.recipes}
    except ConfigError as err:  # e.g. a recipe name's typo: say which spec file holds it
        raise ConfigError(f"spec {spec.source}: {err}") from None
    cells = []
    for seed, m, task, fraction, rlabel in itertools.product(
        spec.seeds, spec.models, spec.tasks, spec.fractions, list(bases)
    ):
        if m.recipes is not None and rlabel not in m.recipes:
            continue
        cid = cell_id(task, m.display, rlabel, fraction, seed, spec.protocol)
        cdir = ResultsDir(results_dir).run(cid).path
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
            runs = []
            for k in FOLDS:
                test_fold, val_fold = rotate_folds(k)
                fd = json.loads(json.dumps(d))
                fd["data"].update(test_fold=test_fold, val_fold=val_fold)
                fd["out"] = str(cdir / f"fold{k:02d}")
                runs.append(make_run(cdir / f"fold{k:02d}", FinetuneConfig.from_dict(fd)))
        else:
            runs = [make_run(cdir, base)]
        for run in runs:
            try:
                for r in [run, *run.candidates]:
                    resolve_config(r.config)
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
    d, files = run.run_dir, RunDir(run.run_dir)
    if not d.exists() or (d.is_dir() and not any(entries(d))):  # a lock file alone is not a run
        return "new"
    if not files.config.is_file():
        raise ConfigError(
            f"{d} exists but holds no {RunDir.CONFIG}: it is not a run of this grid; move or delete it, or choose "
            "another --out"
        )
    try:
        saved = FinetuneConfig.from_saved(files.config)
    except ConfigError as err:
        raise ConfigError(f"cannot read {files.config}: {err}; delete {d} to rerun the cell") from None
    diff = config_differences(saved, run.config)
    if diff:
        raise ConfigError(
            f"{d} was run with a different config than the spec asks for ({'; '.join(diff[:4])}"
            f"{'; ...' if len(diff) > 4 else ''}); the grid never overwrites a run: use another --out, or delete "
            f"{d} to rerun it with the spec's settings"
        )
    _check_inputs(run)
    return "done" if files.final.is_file() else "partial"


def _check_inputs(run: Run) -> None:
    """A run whose recorded config hash or initial weights file differs from what it would start from now is a
    conflict (the weights file may have been replaced under the same name)."""
    d, files = run.run_dir, RunDir(run.run_dir)
    wanted = run.inputs()
    recorded = [read_json(p) for p in (files.inputs, files.final) if p.is_file()]
    # The saved config, hashed by this version's rule, decides; the recorded hashes only where it is unreadable
    # (a hash recorded by another ecgadapt version may differ for fields it did not know).
    saved_sha = saved_config_sha256(d) if recorded else None
    shas = [saved_sha] if saved_sha is not None else [rec.get("config_sha256") for rec in recorded]
    for sha in shas:
        if sha not in (None, wanted["config_sha256"]):
            raise ConfigError(
                f"{d} was run with a config whose hash ({str(sha)[:12]}) differs from the spec's "
                f"({wanted['config_sha256'][:12]}); the grid never reuses it silently: delete {d} or use another --out"
            )
    for rec in recorded:
        if "weights_sha256" in rec and rec["weights_sha256"] != wanted["weights_sha256"]:
            raise ConfigError(
                f"{d} started from weights {rec.get('weights')!r} (SHA-256 {str(rec['weights_sha256'])[:12]}), but "
                f"{wanted['weights']!r} now has SHA-256 {str(wanted['weights_sha256'])[:12]}: the weights file changed; "
                f"the grid never reuses the run silently: delete {d} to rerun it, or use another --out"
            )


def spec_config_hashes(cells: list[Cell]) -> dict[str, str]:
    """``{cell id: config hash}`` of every official-protocol cell (what the report checks finished runs against)."""
    return {c.cell_id: config_sha256(c.runs[0].config.to_dict()) for c in cells if c.protocol != ROTATE}
