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
from dataclasses import dataclass
from pathlib import Path

from ecgadapt.errors import ConfigError
from ecgadapt.eval.results import ROTATE
from ecgadapt.train.config import FinetuneConfig, set_in
from ecgadapt.train.finetune import resolve_config
from ecgadapt.train.recipes import override_stages
from ecgadapt.train.rundir import CONFIG, FINAL, changed_keys, flat_config
from ecgadapt.train.spec import REQUIRED, GridSpec, recipe_label

# Fields that may differ between a saved run and the spec: they do not change the result.
_FREE_FIELDS = frozenset(
    {"out", "notes", "data.cache_dir", "training.device", "training.num_workers", "training.progress",
     "training.eval_batch_size"}
)  # fmt: skip


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

