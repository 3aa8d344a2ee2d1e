"""The config hash of a run: which fields count, which defaults are left out, and the hash of a saved config.

A run's ``inputs.json`` and ``final.json`` record :func:`config_sha256` of its config; the grid compares it
with the spec's, so a saved run keeps its hash across ecgadapt versions. The defaults a hash leaves out are a
frozen table (:data:`HASH_DEFAULTS`, :data:`STAGE_HASH_DEFAULTS`), not the config classes' live defaults: a
default that changes later does not change the hash of configs written before (``tests/runs`` checks that
the table agrees with the config classes, except where a default changed on purpose).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ecgadapt.errors import ConfigError
from ecgadapt.runs.rundir import RunDir

RESULT_FREE_FIELDS = frozenset(
    {
        "out",
        "notes",
        "data.cache_dir",
        "data.cache_preprocessing",
        "training.device",
        "training.num_workers",
        "training.progress",
        "training.eval_batch_size",
        "training.calibration",
        "training.logger",
        "training.cache_frozen_features",
    }
)
"""Config fields that cannot change a run's result (where it goes, how fast it runs): left out of its hash."""

LEGACY_VALUES: dict[str, Any] = {"training.head_bias_init": "zero"}
"""Fields whose default changed, with the value that runs saved before the field existed were trained with."""

HASH_DEFAULTS: dict[str, Any] = {
    "data.root": None,
    "data.rate": 100,
    "data.task": "superdiagnostic",
    "data.fraction": 1.0,
    "data.seed": None,
    "data.cache_dir": None,
    "data.test_fold": 10,
    "data.val_fold": 9,
    "data.source": "ptbxl",
    "data.labels": None,
    "data.cache_preprocessing": True,
    "model.name": "ecg_vit_tiny",  # the default model became xresnet1d_tiny on 2026-12-02 (see CHANGED_DEFAULTS)
    "model.weights": None,
    "model.kwargs": {},
    "training.batch_size": 64,
    "training.eval_batch_size": None,
    "training.num_workers": 2,  # the default became 0 (a result-free field: never hashed)
    "training.device": "auto",
    "training.amp": True,
    "training.grad_clip": 1.0,
    "training.select_metric": "macro_auroc",
    "training.eval_windows": 1,
    "training.ema": None,
    "training.pos_weight": False,
    "training.max_train_batches": None,
    "training.min_steps": 200,
    "training.min_test_positives": 1,
    "training.exclude_untrained_classes": True,
    "training.score_test": True,
    "training.calibration": "global",
    "training.head_bias_init": "prior",
    "training.progress": True,
    "training.logger": "csv",
    "training.cache_frozen_features": True,
    "seed": 0,
    "out": None,
    "notes": [],
}
"""Flat config key -> the default a hash leaves out (the ``recipe`` section has none: its name always counts)."""

CHANGED_DEFAULTS: dict[str, Any] = {"model.name": "ecg_vit_tiny", "training.num_workers": 2}
"""Defaults that changed after run hashes were first written, at their old value in :data:`HASH_DEFAULTS`: a
saved config keeps its hash (every ``ecg_vit_tiny`` run hashed without its model name)."""

STAGE_HASH_DEFAULTS: dict[str, Any] = {
    "trainable": "all",
    "epochs": 30,
    "max_steps": None,
    "lr": 1e-4,
    "head_lr_scale": 1.0,
    "weight_decay": 0.05,
    "warmup_epochs": 0.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "patience": None,
    "min_delta": 0.0,
    "layer_decay": None,
    "min_lr_ratio": 0.0,
}
"""Stage field -> the default a hash leaves out for ``recipe.stages.N.<field>`` (a stage's name has none)."""

_MISSING = object()


def flat_config(d: dict, prefix: str = "") -> dict:
    """Nested config dict to dotted keys (lists of dicts by index, ``kwargs`` dicts kept whole)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "kwargs":
            out.update(flat_config(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flat_config(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def changed_keys(saved: dict, now: dict, free: Collection[str] = ()) -> list[str]:
    """Sorted keys, other than ``free`` ones, whose values differ between two (flat) config dicts."""
    return sorted(k for k in set(saved) | set(now) if k not in free and saved.get(k) != now.get(k))


def check_resume_config(saved: dict, now: dict, free: Collection[str], run_dir: Path) -> None:
    """Raise a ConfigError naming the first differing keys unless ``saved`` and ``now`` agree outside ``free``."""
    diff = changed_keys(saved, now, free)
    if diff:
        details = "; ".join(f"{k}: {saved.get(k)!r} in the run, {now.get(k)!r} now" for k in diff[:5])
        raise ConfigError(
            f"cannot resume {run_dir}: the config differs from the run's {RunDir.CONFIG} ({details}); "
            "resume with the same settings, or start a new run with another --out"
        )


def _default_value(key: str) -> Any:
    """The hashed default of a flat config key (a stage field's for ``recipe.stages.N.*``)."""
    parts = key.split(".")
    if len(parts) == 4 and parts[:2] == ["recipe", "stages"]:
        return STAGE_HASH_DEFAULTS.get(parts[3], _MISSING)
    return HASH_DEFAULTS.get(key, _MISSING)


def _same(value: Any, default: Any) -> bool:
    if default is _MISSING:
        return False
    try:
        return bool(value == default) and type(value) is not bool or value is default
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


def config_sha256(config: dict) -> str:
    """SHA-256 of a config's result-relevant fields (all but :data:`RESULT_FREE_FIELDS`), canonical JSON.

    Fields at their hashed default are left out, so a field that a newer ecgadapt adds (at a default that
    keeps the old behaviour) does not change the hash of configs written before it existed."""
    flat = {
        k: v
        for k, v in flat_config(config).items()
        if k not in RESULT_FREE_FIELDS and not _same(v, _default_value(k))
    }
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def with_legacy_values(config: dict) -> dict:
    """``config`` (a saved config's plain data, changed in place and returned) with every field it lacks whose
    default has changed since set to the value the run was trained with (:data:`LEGACY_VALUES`)."""
    for dotted, value in LEGACY_VALUES.items():
        *parents, leaf = dotted.split(".")
        node: Any = config
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return config


def saved_config_sha256(run_dir: str | Path) -> str | None:
    """The hash of the config saved in ``run_dir/config.yaml`` by this version's rule (None when unreadable)."""
    try:
        return config_sha256(with_legacy_values(RunDir(run_dir).read_config()))
    except (OSError, ConfigError):
        return None


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (remembered per path, size and modification time within this process)."""
    path = Path(path).expanduser().resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def run_inputs(config: dict, weights: Path | None) -> dict:
    """What identifies a run's inputs: the config hash and the initial weights file with its SHA-256."""
    return {
        "config_sha256": config_sha256(config),
        "weights": None if weights is None else str(weights),
        "weights_sha256": None if weights is None else file_sha256(weights),
    }
