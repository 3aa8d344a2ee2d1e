"""The typed fine-tuning configuration: dataclasses, YAML round-trip and ``section.field=value`` overrides.

Precedence (lowest first): field defaults, the recipe preset, a YAML file, explicit CLI flags, ``--set``.
A recipe given by name gets the preset's stages; a YAML ``recipe.stages`` list is merged stage by stage
over the preset (so ``stages: [{}, {drop_path_rate: 0.3}]`` changes one field of stage 2).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecgadapt.engine.loggers import LOGGERS
from ecgadapt.engine.settings import TrainingConfig
from ecgadapt.engine.stages import Recipe, Stage
from ecgadapt.errors import ConfigError
from ecgadapt.fileio import atomic_write_text
from ecgadapt.runs.hashing import with_legacy_values
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.recipes import get_recipe, override_stages
from ecgadapt.weights import DEFAULT_MODEL, bundled_path

TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
SELECT_METRICS = ("macro_auroc", "macro_auprc", "loss")
DEVICES = ("auto", "cpu", "cuda")
HEAD_BIAS_INITS = ("prior", "zero")


@dataclass
class DataConfig:
    """Which data: dataset root, cache rate, task, training fraction and folds."""

    root: str | None = None  # PTB-XL-layout folder (ptbxl_database.csv, scp_statements.csv, records*)
    rate: int = 100  # sampling rate of the records read into the cache (100 or 500 for PTB-XL)
    task: str = "superdiagnostic"
    fraction: float = 1.0  # fraction of the training split used (stratified subsample)
    seed: int | None = None  # seed of the training-fraction subsample; None: the run's seed
    cache_dir: str | None = None  # None: the default cache folder
    test_fold: int = 10
    val_fold: int = 9
    source: str = "ptbxl"  # ptbxl, cinc (CinC 2020/2021 headers) or folder (WFDB records + labels CSV)
    labels: str | None = None  # labels CSV (record,labels[,fold]) of a folder source; None: <root>/labels.csv
    cache_preprocessing: bool = True  # fixed preprocessing stored in the cache once: epochs only crop


@dataclass
class ModelConfig:
    """Which model and which initial weights."""

    name: str = DEFAULT_MODEL  # the better bundled encoder (ecgadapt.weights)
    weights: str | None = None  # checkpoint path, "bundled", or None (random init)
    kwargs: dict = field(default_factory=dict)  # factory overrides, e.g. {width: 32, depth: 2}


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs; written resolved to ``config.yaml`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    recipe: Recipe = field(default_factory=lambda: get_recipe("post_training"))
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tune: dict = field(
        default_factory=dict
    )  # {stage field: [values]}: search on the validation fold (bench.tune)
    seed: int = 0
    out: str | None = None
    notes: list[str] = field(default_factory=list)  # resolution notes (e.g. weights ignored by "scratch")

    def to_dict(self) -> dict:
        """Plain-data form (YAML-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> FinetuneConfig:
        """Build and validate from plain data; a recipe without ``stages`` gets its preset's."""
        d = dict(d or {})
        recipe = d.pop("recipe", None)
        cfg = _build(cls, d, "")
        cfg.recipe = _recipe_from(recipe)
        if isinstance(cfg.tune, dict):
            cfg.tune = {
                k: [_numeric(v) for v in vs] if isinstance(vs, list) else vs for k, vs in cfg.tune.items()
            }
        cfg.validate()
        return cfg

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of the config (also written to ``path`` if given)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            atomic_write_text(Path(path), text)  # a run's config.yaml: never written through a symlink
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> FinetuneConfig:
        """From a YAML file path or YAML text."""
        return cls.from_dict(load_yaml(source))

    @classmethod
    def from_saved(cls, path: str | Path) -> FinetuneConfig:
        """A run's saved ``config.yaml``: a field it lacks whose default has changed since takes the value the
        run was trained with (:data:`~ecgadapt.runs.hashing.LEGACY_VALUES`), not today's default."""
        return cls.from_dict(with_legacy_values(load_yaml(path) or {}))

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a value that cannot work, naming the field."""
        if self.data.task not in TASKS:
            raise ConfigError(
                f"data.task: unknown task {self.data.task!r}; choose one of: {', '.join(TASKS)}"
            )
        if not 0.0 < self.data.fraction <= 1.0:
            raise ConfigError(f"data.fraction must lie in (0, 1], got {self.data.fraction!r}")
        if self.data.source not in ("ptbxl", "cinc", "folder"):
            raise ConfigError(
                f"data.source: unknown source {self.data.source!r}; choose one of: ptbxl, cinc, folder"
            )
        if self.data.rate <= 0:
            raise ConfigError(f"data.rate must be positive, got {self.data.rate!r}")
        if self.data.test_fold == self.data.val_fold:
            raise ConfigError(f"data.test_fold and data.val_fold must differ, both are {self.data.test_fold}")
        t = self.training
        if t.device not in DEVICES and not t.device.startswith("cuda:"):
            raise ConfigError(f"training.device must be one of {DEVICES} or 'cuda:N', got {t.device!r}")
        if t.select_metric not in SELECT_METRICS:
            raise ConfigError(
                f"training.select_metric must be one of {', '.join(SELECT_METRICS)}, got {t.select_metric!r}"
            )
        for key in ("batch_size", "eval_windows"):
            if getattr(t, key) < 1:
                raise ConfigError(f"training.{key} must be >= 1, got {getattr(t, key)!r}")
        if t.eval_batch_size is not None and t.eval_batch_size < 1:
            raise ConfigError(f"training.eval_batch_size must be >= 1 or null, got {t.eval_batch_size!r}")
        if t.num_workers < 0:
            raise ConfigError(f"training.num_workers must be >= 0, got {t.num_workers!r}")
        if t.min_test_positives < 1:
            raise ConfigError(f"training.min_test_positives must be >= 1, got {t.min_test_positives!r}")
        if t.min_steps < 0:
            raise ConfigError(f"training.min_steps must be >= 0, got {t.min_steps!r}")
        if t.max_train_batches is not None and t.max_train_batches < 1:
            raise ConfigError(f"training.max_train_batches must be >= 1 or null, got {t.max_train_batches!r}")
        if t.ema is not None and not 0.0 < t.ema < 1.0:
            raise ConfigError(f"training.ema must lie in (0, 1) or be null, got {t.ema!r}")
        if t.calibration not in ("global", "per_class", "none"):
            raise ConfigError(
                f"training.calibration must be global, per_class or none, got {t.calibration!r}"
            )
        if t.logger not in LOGGERS:
            raise ConfigError(f"training.logger must be one of {', '.join(LOGGERS)}, got {t.logger!r}")
        if t.head_bias_init not in HEAD_BIAS_INITS:
            raise ConfigError(f"training.head_bias_init must be prior or zero, got {t.head_bias_init!r}")
        self.recipe.validate()
        _check_tune(self)


_FIXED_STAGE_FIELDS = {"name", "trainable"}
TUNABLE_FIELDS = frozenset({f.name for f in dataclasses.fields(Stage)} - _FIXED_STAGE_FIELDS)
"""Stage fields a ``tune`` search may vary (every field but a stage's name and what it trains)."""


def tune_targets(cfg: FinetuneConfig, key: str) -> tuple[list[int], str]:
    """Stage indices and field that a ``tune`` key sets: a plain field name sets the stages that fine-tune the whole
    model (``trainable: all``), or every stage of a recipe without one; ``stages.N.field`` sets stage N."""
    stages = cfg.recipe.stages
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "stages" and parts[1].isdigit():
        index, name = int(parts[1]), parts[2]
        if index >= len(stages):
            raise ConfigError(f"tune.{key}: recipe {cfg.recipe.name!r} has {len(stages)} stage(s)")
        targets = [index]
    elif len(parts) == 1:
        name = key
        targets = [i for i, s in enumerate(stages) if s.trainable == "all"] or list(range(len(stages)))
    else:
        raise ConfigError(
            f"tune key {key!r} must be a stage field (e.g. lr) or stages.N.field (e.g. stages.0.lr)"
        )
    if name not in TUNABLE_FIELDS:
        raise ConfigError(
            f"tune.{key}: {name!r} is not a tunable stage field; choose from {', '.join(sorted(TUNABLE_FIELDS))}"
        )
    return targets, name


def _check_tune(cfg: FinetuneConfig) -> None:
    """Raise :class:`ConfigError` unless every ``tune`` entry names a stage field and a non-empty list of values
    (whether each candidate is a valid config is checked by the search, :func:`ecgadapt.bench.tune.run_tuned`)."""
    searched: dict[tuple[int, str], str] = {}
    for key, values in cfg.tune.items():
        targets, name = tune_targets(cfg, key)
        for target in targets:  # lr and stages.1.lr would both set stage 1's lr: one would silently win
            if (target, name) in searched:
                raise ConfigError(
                    f"tune.{key} and tune.{searched[target, name]} both search {name} of stage {target}; keep one"
                )
            searched[target, name] = key
        if not isinstance(values, list) or not values:
            raise ConfigError(f"tune.{key} must be a non-empty list of values, got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"tune.{key} lists a value twice: {values}")
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ConfigError(f"tune.{key}: {bad[0]!r} is not a finite number; give finite values, e.g. 1e-4")


def _numeric(value: Any) -> Any:
    """A number written as text that YAML 1.1 reads as a string (``1e-4``) as that number; else unchanged."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return (
            int(number) if number.is_integer() and "e" not in value.lower() and "." not in value else number
        )
    return value


def load_yaml(source: str | Path) -> dict:
    """Parse a YAML mapping from a file (a Path, or a str ending in .yaml/.yml) or from YAML text."""
    is_file = isinstance(source, Path) or ("\n" not in source and source.endswith((".yaml", ".yml")))
    if is_file and not Path(source).is_file():
        raise ConfigError(f"config file {source} does not exist; check the path given to --config")
    try:
        data = yaml.safe_load(Path(source).read_text() if is_file else source)
    except yaml.YAMLError as err:
        raise ConfigError(f"config {source if is_file else '(text)'}: invalid YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: expected a mapping of sections, got {type(data).__name__}")
    return data


# --- plain data -> dataclasses, with type checks -----------------------------------------------------------


def _recipe_from(d: Any) -> Recipe:
    """A recipe from ``None`` (default preset), a name, or a mapping (name, pretrained, stages)."""
    if d is None:
        return get_recipe("post_training")
    if isinstance(d, str):
        return get_recipe(d)
    if isinstance(d, Recipe):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"recipe must be a name or a mapping, got {d!r}")
    d = dict(d)
    unknown = set(d) - {"name", "stages", "pretrained"}
    if unknown:
        raise ConfigError(
            f"recipe: unknown field(s) {', '.join(sorted(unknown))}; allowed: name, stages, pretrained"
        )
    if "name" not in d:
        raise ConfigError(
            "recipe.name is required (a preset such as post_training, or your own name with stages)"
        )
    name = str(d["name"])
    try:
        base = get_recipe(name)
    except ConfigError:
        if not d.get("stages"):
            raise
        base = Recipe(name, [])
    stages = d.get("stages")
    if stages is not None:
        if not isinstance(stages, list):
            raise ConfigError(f"recipe.stages must be a list of stage mappings, got {stages!r}")
        merged = []
        for i, s in enumerate(stages):
            if isinstance(s, Stage):
                s = dataclasses.asdict(s)
            if not isinstance(s, dict):
                raise ConfigError(f"recipe.stages.{i} must be a mapping, got {s!r}")
            if i < len(base.stages):
                s = {**dataclasses.asdict(base.stages[i]), **s}
            elif "name" not in s:
                s = {"name": f"stage{i + 1}", **s}
            merged.append(_build(Stage, s, f"recipe.stages.{i}."))
        base.stages = merged
    if "pretrained" in d:
        base.pretrained = _coerce(d["pretrained"], bool, "recipe.pretrained")
    return base


def _build(cls: type, d: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``d``, checking names and types."""
    if dataclasses.is_dataclass(d) and not isinstance(d, type):
        return d
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(d) - set(names)
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(prefix + k for k in sorted(unknown))}; "
            f"allowed: {', '.join(prefix + n for n in names)}"
        )
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, d[name], f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(d[name], tp, prefix + name)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to annotation ``tp`` (int, float, str, bool, list, dict, X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is not None:
        tp = origin
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)  # also accepts "1e-4", which YAML 1.1 reads as a string
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    if tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return list(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


# --- overrides ---------------------------------------------------------------------------------------------


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"recipe.stages.1.drop_path_rate=0.2"`` -> (["recipe", "stages", "1", "drop_path_rate"], 0.2)."""
    if "=" not in item:
        raise ConfigError(
            f"override {item!r} must look like section.field=value (e.g. training.batch_size=32)"
        )
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path, value


def set_in(d: dict, path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` in nested dicts/lists (list steps are integer indices), in place."""
    node: Any = d
    where = ""
    for i, key in enumerate(path):
        last = i == len(path) - 1
        where = f"{where}.{key}" if where else key
        if isinstance(node, list):
            if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
                raise ConfigError(
                    f"override {'.'.join(path)}: {where} is not an index into a list of {len(node)}"
                )
            key = int(key)  # type: ignore[assignment]
        elif isinstance(node, dict):
            if key not in node and not (last or where.endswith("model.kwargs")):
                raise ConfigError(f"override {'.'.join(path)}: unknown field {where}")
        else:
            raise ConfigError(f"override {'.'.join(path)}: {where.rsplit('.', 1)[0]} is not a section")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def apply_overrides(cfg: FinetuneConfig, items: list[str] | None) -> FinetuneConfig:
    """A new config with ``section.field=value`` overrides applied (``recipe.name=X`` reloads X's preset)."""
    if not items:
        return cfg
    d = cfg.to_dict()
    for item in items:
        path, value = parse_override(item)
        if path == ["recipe", "name"] or path == ["recipe"]:
            d["recipe"] = {"name": value}
            continue
        if path[0] == "tune" and len(path) > 1:  # a tune key is itself dotted: stages.0.lr
            d["tune"] = {**(d.get("tune") or {}), ".".join(path[1:]): value}
            continue
        set_in(d, path, value)
    return FinetuneConfig.from_dict(d)


def build_config(
    config: str | Path | None = None,
    set_items: list[str] | None = None,
    resume_dir: str | Path | None = None,
    epochs: int | None = None,
    **flags: Any,
) -> FinetuneConfig:
    """The config of a CLI call: a YAML file (or, to resume, the run's own), then explicit flags, then ``--set``.

    ``flags`` are dotted config keys given as keyword names with ``__`` for the dot (``data__root``,
    ``training__batch_size``, ``seed``, ``out``); None values are ignored. ``recipe`` names a preset (its
    stages replace the file's unless the file names the same recipe). ``epochs`` sets every stage's epochs.
    """
    if config is not None:
        d = load_yaml(Path(config))
    elif resume_dir is not None and RunDir(resume_dir).config.is_file():
        d = load_yaml(RunDir(resume_dir).config)
    else:
        d = {}
    for key, value in flags.items():
        if value is None:
            continue
        if key == "recipe":
            current = d.get("recipe")
            current_name = current.get("name") if isinstance(current, dict) else current
            if current_name != value:
                d["recipe"] = {"name": value}
            continue
        if key == "model__weights" and str(value).lower() in ("none", "null"):
            value = None
        node = d
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config section {p!r} must be a mapping")
        node[leaf] = value
    d.pop("notes", None)
    weights_given = "weights" in (d.get("model") or {})
    cfg = FinetuneConfig.from_dict(d)
    if not weights_given and not cfg.model.kwargs:
        if bundled_path(cfg.model.name) is not None:
            cfg.model.weights = "bundled"  # the default fine-tuning starts from the bundled encoder
    if epochs is not None:
        cfg.recipe = override_stages(cfg.recipe, epochs=int(epochs))
    cfg = apply_overrides(cfg, set_items)
    cfg.validate()
    return cfg
