"""The tune search: a config's ``tune`` grid searched on the validation fold, wrapping the fit.

As scikit-learn's ``GridSearchCV`` wraps an estimator's ``fit``, :func:`run_tuned` wraps
:func:`~ecgadapt.train.finetune.run_finetune`: it trains every candidate of the config's ``tune`` grid as an
ordinary run scored on the validation fold only (through the grid's executors, ``jobs`` at a time), chooses the
one with the best validation metric and scores only that one on the test fold
(:func:`~ecgadapt.bench.candidates.finish_tuned_run`). ``ecgadapt finetune --tune KEY=V1,V2`` calls it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgadapt.bench.candidates import check_candidates
from ecgadapt.bench.cells import make_run
from ecgadapt.bench.grid import execute_runs
from ecgadapt.errors import ConfigError, ECGAdaptError
from ecgadapt.runs.creation import check_run_dir, prepare_run_dir
from ecgadapt.runs.rundir import RunDir
from ecgadapt.train.config import FinetuneConfig
from ecgadapt.train.finetune import check_start, resolve_config


def tune_override(item: str) -> str:
    """A CLI ``--tune lr=1e-4,3e-4`` item as the config override ``tune.lr=[1e-4,3e-4]``."""
    key, sep, values = item.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ConfigError(f"--tune {item!r} must look like KEY=V1,V2,... (e.g. --tune lr=1e-4,3e-4,1e-3)")
    return f"tune.{key.strip()}=[{values.strip().strip('[]')}]"


def tune_overrides(items: list[str]) -> list[str]:
    """CLI ``--tune`` items as config overrides (:func:`tune_override`); a key given twice is an error, not a
    silent last-one-wins."""
    keys: dict[str, str] = {}
    for item in items:
        key = item.partition("=")[0].strip()
        if key in keys:
            raise ConfigError(
                f"--tune {key} is given twice ({keys[key]!r} and {item!r}); list every value once: --tune "
                f"{key}=V1,V2,..."
            )
        keys[key] = item
    return [tune_override(item) for item in items]


def run_tuned(
    cfg: FinetuneConfig, resume: bool = False, overwrite: bool = False, cache: Any = None, jobs: int = 1
) -> Path:
    """``finetune`` with a ``tune`` search: its candidates train as grid jobs, then the best is selected on the
    validation fold and only it is scored on the test fold; return the run directory."""
    if not cfg.tune:
        raise ConfigError(
            "the config has no tune search (tune: {}): fit it with ecgadapt.train.finetune.run_finetune"
        )
    cfg = resolve_config(cfg)
    check_candidates(cfg)  # every candidate is a valid config before anything is written
    run_dir = Path(cfg.out)
    if resume:
        if not RunDir(run_dir).config.is_file():
            raise ConfigError(
                f"cannot resume: {run_dir} holds no {RunDir.CONFIG}; start the run without --resume"
            )
    else:
        check_run_dir(run_dir, overwrite=overwrite)
        check_start(cfg, cache)  # bad inputs stop here: an old run that --overwrite would replace is kept
        prepare_run_dir(run_dir, overwrite=overwrite)
    run = make_run(run_dir, cfg)
    print(
        f"tuning {run_dir}: {len(run.candidates)} candidates of {cfg.recipe.name} ({', '.join(cfg.tune)}), "
        f"chosen by validation {cfg.training.select_metric} on fold {cfg.data.val_fold}"
    )
    _, _, failed = execute_runs(
        [(run_dir.name, run)], jobs=jobs, progress=cfg.training.progress, desc="candidates", cache=cache
    )
    if failed:
        first = next(iter(failed.items()))
        raise ECGAdaptError(
            f"{len(failed)} tune candidate(s) failed ({Path(first[0]).name}: {first[1].splitlines()[0]}); fix the "
            f"cause and rerun with --resume"
        )
    if not RunDir(run_dir).final.is_file():
        raise ECGAdaptError(f"{run_dir}: the tuned run did not finish; rerun with --resume")
    return run_dir
