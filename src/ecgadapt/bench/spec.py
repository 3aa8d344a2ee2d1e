"""Benchmark specs: the YAML grid (models x tasks x recipes x fractions x seeds) as a validated :class:`GridSpec`.

A spec is plain data (see ``src/ecgadapt/specs/*.yaml``)::

    name: paper-main
    protocol: official            # or rotate-folds
    models:                       # name, weights ("required": must be given), kwargs, label, recipes (subset)
      - {name: st_mem_vit_b75, weights: required}
    tasks: [superdiagnostic, rhythm]
    recipes: [baseline_ft, post_training]   # preset names, or mappings {name, stages, pretrained, label, tune}
                                            # tune: {lr: [1e-4, 3e-4], head_lr_scale: [1, 10]} searched on fold 9
    fractions: [1.0]
    seeds: [0, 1, 2, 3, 4]
    overrides: {training.batch_size: 64}    # any FinetuneConfig field by dotted path, for every cell
    stage_overrides: {}                     # Stage fields set on every stage of every recipe (e.g. lr)
    budget_epochs: 40                       # every recipe's total epochs, shared by its stages in proportion
    patience: 5                             # early stopping shared by every stage of every recipe (null: off)
    min_delta: 0.001                        # ... and the improvement an epoch must beat to count

A recipe entry may set its own ``patience`` / ``min_delta`` (or a stage's, in its ``stages``) on purpose: it then
keeps them, and ``spec.yaml`` records which recipes did (:func:`early_stopping_by_recipe`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecgadapt.bench.candidates import check_candidates
from ecgadapt.engine.stages import Recipe, Stage
from ecgadapt.errors import ConfigError
from ecgadapt.eval.pooling import ROTATE
from ecgadapt.eval.report.roles import RecipeRoles
from ecgadapt.inference.external import external_name
from ecgadapt.train.config import TASKS, FinetuneConfig, load_yaml, parse_override, set_in

PROTOCOLS = ("official", ROTATE)
REQUIRED = "required"  # placeholder weights: must be given with --weights or --set models.N.weights=...
SPEC_KEYS = (
    "name",
    "description",
    "protocol",
    "models",
    "tasks",
    "recipes",
    "fractions",
    "seeds",
    "overrides",
    "stage_overrides",
    "budget_epochs",
    "patience",
    "min_delta",
    "external",
    "roles",
)
EARLY_STOPPING = ("patience", "min_delta")
"""The early-stopping fields a spec shares between its recipes (as ``budget_epochs`` shares the budget)."""
DEFAULT_PATIENCE = 5
DEFAULT_MIN_DELTA = 1e-3
EXTERNAL_KEYS = ("name", "data", "source", "labels")
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
_AXIS_PREFIXES = {
    "model": "models (name, weights, kwargs of each entry)",
    "recipe": "recipes or stage_overrides",
}


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
    budget_epochs: int | None = None  # every recipe's total epochs (recipes.with_budget); None: the presets'
    patience: int | None = DEFAULT_PATIENCE  # every stage's early-stopping patience (None: never stop early)
    min_delta: float = DEFAULT_MIN_DELTA  # every stage's early-stopping min_delta
    external: list[dict] = field(
        default_factory=list
    )  # external sets {name, data, source, labels} (inference.external)
    roles: dict[str, Any] = field(default_factory=dict)  # the report's recipe roles (eval.report.RecipeRoles)
    source: str = "<dict>"

    def to_dict(self) -> dict:
        """Plain-data form (what ``spec.yaml`` holds)."""
        d = dataclasses.asdict(self)
        d.pop("source")
        for key in ("external", "roles"):  # absent unless used: specs without them keep their recorded form
            if not d[key]:
                d.pop(key)
        d["models"] = [
            {k: v for k, v in m.items() if k in ("name", "weights") or v not in (None, {})}
            for m in d["models"]
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> GridSpec:
        """Validate plain data (e.g. a parsed YAML spec) into a spec; errors name ``source`` and the key."""
        if not isinstance(d, dict):
            raise ConfigError(
                f"spec {source}: expected a mapping of {', '.join(SPEC_KEYS)}, got {type(d).__name__}"
            )
        unknown = set(d) - set(SPEC_KEYS)
        if unknown:
            raise ConfigError(
                f"spec {source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(SPEC_KEYS)}"
            )
        for key in ("models", "tasks", "recipes"):
            if not d.get(key):
                raise ConfigError(f"spec {source}: '{key}' must be a non-empty list")
        spec = cls(
            name=str(d.get("name") or Path(source).stem),
            models=[
                _model_entry(m, i, source) for i, m in enumerate(_as_list(d["models"], "models", source))
            ],
            tasks=[str(t) for t in _as_list(d["tasks"], "tasks", source)],
            recipes=list(_as_list(d["recipes"], "recipes", source)),
            fractions=[
                _number(f, float, "fractions", source)
                for f in _as_list(d.get("fractions", [1.0]), "fractions", source)
            ],
            seeds=[
                _number(s, int, "seeds", source)
                for s in _as_list(d.get("seeds", [0, 1, 2, 3, 4]), "seeds", source)
            ],
            protocol=str(d.get("protocol") or "official"),
            description=str(d.get("description") or ""),
            overrides=_flat_overrides(d.get("overrides") or {}, source),
            stage_overrides={
                k: v for k, v in dict(d.get("stage_overrides") or {}).items() if k not in EARLY_STOPPING
            },
            budget_epochs=None
            if d.get("budget_epochs") is None
            else _number(d["budget_epochs"], int, "budget_epochs", source),
            **_early_stopping(d, source),
            external=[
                _external_entry(e, i, source)
                for i, e in enumerate(_as_list(d.get("external") or [], "external", source))
            ],
            roles=_roles(d.get("roles"), source),
            source=source,
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the spec and the bad key."""
        where = f"spec {self.source}"
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}"
            )
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
            raise ConfigError(
                f"{where}: two recipes share a label in {labels}; give mappings a distinct 'label'"
            )
        for recipe in self.recipes:
            _check_recipe_entry(recipe, where)
        names = [external_name(e["data"], e["name"]) for e in self.external]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"{where}: two external sets are named {repeated[0]!r} (each writes external_<name>.json into a "
                "run, so one would never be scored); give every external set its own name"
            )
        models = [m.display for m in self.models]
        if len(set(models)) != len(models):
            raise ConfigError(f"{where}: two models share a label in {models}; give them distinct 'label's")
        for i, m in enumerate(self.models):
            for r in m.recipes or []:
                if r not in labels:
                    raise ConfigError(
                        f"{where}: models.{i}.recipes names {r!r}, which is not in recipes {labels}"
                    )
        if self.roles:
            try:
                roles = RecipeRoles.from_dict(self.roles)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            _check_roles(roles, labels, where)
        unknown = set(self.stage_overrides) - {f.name for f in dataclasses.fields(Stage)} | (
            {"name"} & set(self.stage_overrides)
        )
        if unknown:
            raise ConfigError(
                f"{where}: stage_overrides has unknown or fixed field(s) {', '.join(sorted(unknown))}; allowed: "
                + ", ".join(f.name for f in dataclasses.fields(Stage) if f.name != "name")
            )
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{where}: patience must be a positive integer or null, got {self.patience!r}")
        if not self.min_delta >= 0:
            raise ConfigError(f"{where}: min_delta must be >= 0, got {self.min_delta!r}")
        if self.budget_epochs is not None:
            if self.budget_epochs < 1:
                raise ConfigError(f"{where}: budget_epochs must be >= 1, got {self.budget_epochs!r}")
            if "epochs" in self.stage_overrides:
                raise ConfigError(
                    f"{where}: give either budget_epochs (every recipe's total, shared by its stages) or "
                    "stage_overrides.epochs (every stage's), not both"
                )
        for key in self.overrides:
            head = key.split(".")[0]
            if head not in CONFIG_SECTIONS:
                raise ConfigError(
                    f"{where}: override {key!r} is not a FinetuneConfig field; sections: {', '.join(CONFIG_SECTIONS)}"
                )
            for axis, instead in _AXIS_FIELDS.items():
                if key == axis or key.startswith(axis + "."):
                    raise ConfigError(
                        f"{where}: {key} is set by the grid; use {instead} instead of an override"
                    )
            if head in _AXIS_PREFIXES:
                raise ConfigError(f"{where}: {key} differs per cell; set it through {_AXIS_PREFIXES[head]}")
            if self.protocol == ROTATE and key in ("data.test_fold", "data.val_fold"):
                raise ConfigError(
                    f"{where}: {key} is set per fold by the rotate-folds protocol; drop the override"
                )


def _early_stopping(d: dict, source: str) -> dict[str, Any]:
    """The spec's shared ``patience`` and ``min_delta``: its own keys, else ``stage_overrides``' (moved out of
    them, so they are the one shared setting), else the defaults; giving both is an error."""
    stage_overrides = d.get("stage_overrides") or {}
    out: dict[str, Any] = {"patience": DEFAULT_PATIENCE, "min_delta": DEFAULT_MIN_DELTA}
    for key in EARLY_STOPPING:
        if key in d and isinstance(stage_overrides, dict) and key in stage_overrides:
            raise ConfigError(
                f"spec {source}: give either {key} (shared by every recipe's stages) or stage_overrides.{key}, "
                "not both"
            )
        if key in d:
            out[key] = d[key]
        elif isinstance(stage_overrides, dict) and key in stage_overrides:
            out[key] = stage_overrides[key]
    if out["patience"] is not None:
        out["patience"] = _number(out["patience"], int, "patience", source)
    out["min_delta"] = _number(out["min_delta"], float, "min_delta", source)
    return out


def _check_recipe_entry(recipe: str | dict, where: str) -> None:
    """Raise :class:`ConfigError` unless a recipe entry resolves to a recipe and its ``tune`` search is valid."""
    if not isinstance(recipe, dict):
        return
    entry = {k: v for k, v in recipe.items() if k not in ("label", "tune", *EARLY_STOPPING)}
    tune = recipe.get("tune") or {}
    label = recipe_label(recipe)
    if not isinstance(tune, dict):
        raise ConfigError(
            f"{where}: recipe {label!r}: 'tune' must map stage fields to lists of values, got {tune!r}"
        )
    try:
        cfg = FinetuneConfig.from_dict({"recipe": entry, "tune": tune})
        cfg.recipe = apply_early_stopping(cfg.recipe, recipe, DEFAULT_PATIENCE, DEFAULT_MIN_DELTA)
        cfg.recipe.validate()
        check_candidates(cfg)
    except ConfigError as err:
        raise ConfigError(f"{where}: recipe {label!r}: {err}") from None


def own_early_stopping(entry: str | dict, stage: int) -> dict[str, Any]:
    """The early-stopping fields recipe ``entry`` sets itself for stage number ``stage`` (its own ``patience`` /
    ``min_delta``, or that stage's in its ``stages``); {} when it leaves them to the spec."""
    if not isinstance(entry, dict):
        return {}
    own = {k: entry[k] for k in EARLY_STOPPING if k in entry}
    stages = entry.get("stages")
    if isinstance(stages, list) and stage < len(stages) and isinstance(stages[stage], dict):
        own.update({k: stages[stage][k] for k in EARLY_STOPPING if k in stages[stage]})
    return own


def apply_early_stopping(recipe: Recipe, entry: str | dict, patience: int | None, min_delta: float) -> Recipe:
    """``recipe`` (resolved from spec entry ``entry``) with the spec's shared ``patience`` and ``min_delta`` on
    every stage, except where the entry sets its own (:func:`own_early_stopping`)."""
    shared = {"patience": patience, "min_delta": min_delta}
    return dataclasses.replace(
        recipe,
        stages=[
            dataclasses.replace(stage, **{**shared, **own_early_stopping(entry, i)})
            for i, stage in enumerate(recipe.stages)
        ],
    )


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
        raise ConfigError(
            f"spec {source}: models.{i} has unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    kwargs = m.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"spec {source}: models.{i}.kwargs must be a mapping, got {kwargs!r}")
    recipes = m.get("recipes")
    return ModelEntry(
        name=str(m["name"]),
        weights=None if m.get("weights") is None else str(m["weights"]),
        kwargs=dict(kwargs),
        label=None if m.get("label") is None else str(m["label"]),
        recipes=None
        if recipes is None
        else [str(r) for r in _as_list(recipes, f"models.{i}.recipes", source)],
    )


def _roles(value: Any, source: str) -> dict[str, Any]:
    """A spec's ``roles:`` as plain data, its label tuples as lists, or ``{}`` (checked in ``validate``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"spec {source}: roles must be a mapping (treatment, baselines, ...), got {value!r}"
        )
    return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}


def _check_roles(roles: RecipeRoles, labels: list[str], where: str) -> None:
    """Every label a role names must be one of the spec's recipe labels, or the start of one (a variant)."""
    named = [roles.treatment, *roles.baselines, *roles.ablations, *roles.references, *roles.order]
    for name in named:
        if not any(label.startswith(name) for label in labels):
            raise ConfigError(
                f"{where}: roles names {name!r}, which is no recipe label of the spec ({labels})"
            )


def _external_entry(e: Any, i: int, source: str) -> dict:
    """One external set of the spec: ``{name, data, source (cinc|folder, default folder), labels (optional)}``."""
    if not isinstance(e, dict) or not e.get("name") or not e.get("data"):
        raise ConfigError(
            f"spec {source}: external.{i} must be a mapping with at least 'name' and 'data', got {e!r}"
        )
    unknown = set(e) - set(EXTERNAL_KEYS)
    if unknown:
        raise ConfigError(
            f"spec {source}: external.{i} has unknown key(s) {sorted(unknown)}; allowed: {list(EXTERNAL_KEYS)}"
        )
    kind = str(e.get("source") or "folder")
    if kind not in ("cinc", "folder"):
        raise ConfigError(f"spec {source}: external.{i}.source must be cinc or folder, got {kind!r}")
    labels = e.get("labels")
    return {
        "name": str(e["name"]),
        "data": str(e["data"]),
        "source": kind,
        "labels": None if labels is None else str(labels),
    }


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
                raise ConfigError(
                    f"spec file {path} does not exist; give a YAML file or one of: {', '.join(list_specs())}"
                )
            data, source = load_yaml(path), str(path)
        else:
            if text not in list_specs():
                raise ConfigError(
                    f"unknown spec {text!r}; built-in specs: {', '.join(list_specs())} (or give a YAML file)"
                )
            data, source = yaml.safe_load((_specs_folder() / f"{text}.yaml").read_text()), text
    data = apply_spec_overrides(data, sets)
    if protocol is not None:
        data["protocol"] = protocol
    if weights is not None:
        for m in data.get("models") or []:
            if isinstance(m, dict) and m.get("weights") == REQUIRED:
                m["weights"] = str(weights)
    return GridSpec.from_dict(data, source)
