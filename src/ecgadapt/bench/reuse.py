"""A plain run that trains exactly like a tune candidate takes the candidate's training instead of repeating it.

The literal ``baseline_ft`` is the usual case: its preset's values are one candidate of ``baseline_ft_tuned``'s
search, so the two would train the same network twice. :func:`training_sha256` hashes what decides the
training (the config less ``tune``, ``training.score_test`` and the fields that cannot change a result); when a
plain run's hash equals a candidate's, the grid trains only the candidate and :func:`take_candidate_training`
gives the plain run its best checkpoint, epochs and validation predictions, fits the run's own temperature
scaling, and scores the plain run on the test fold itself. ``final.json`` says so (``reused_training``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ecgadapt.bench.candidates import link_or_copy
from ecgadapt.errors import DataError
from ecgadapt.eval.temperature import fit_run_calibration
from ecgadapt.locks import RunLock
from ecgadapt.runs.creation import prepare_run_dir
from ecgadapt.runs.hashing import config_sha256, run_inputs
from ecgadapt.runs.rundir import RunDir, read_json
from ecgadapt.train.config import FinetuneConfig
from ecgadapt.train.finetune import score_test_fold, weights_to_load


def training_sha256(config: FinetuneConfig) -> str:
    """Hash of what decides a run's training: two configs with the same hash train the same network."""
    d = config.to_dict()
    d["tune"] = {}
    d["training"]["score_test"] = True
    return config_sha256(d)


def can_take_training(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` has trained nothing of its own yet (no checkpoint, no results)."""
    files = RunDir(run_dir)
    return not (files.final.is_file() or files.last_checkpoint.is_file() or files.best_checkpoint.is_file())


def take_candidate_training(
    config: FinetuneConfig, source_dir: str | Path, cache: Any = None, device: str = "auto"
) -> dict:
    """Give the plain run of ``config`` the training of the finished candidate in ``source_dir`` (same
    :func:`training_sha256`), fit its calibration, score it on the test fold; return its ``final.json``."""
    source = RunDir(source_dir)
    if not source.final.is_file():
        raise DataError(
            f"{source_dir} has not finished, so {config.out} cannot take its training; rerun the grid"
        )
    training = training_sha256(config)
    if training_sha256(FinetuneConfig.from_saved(source.config)) != training:
        raise DataError(f"{source_dir} trains differently from {config.out}; it cannot lend its training")
    resume = Path(config.out).is_dir() and RunDir(config.out).config.is_file()
    run_dir = prepare_run_dir(config.out, resume=resume)
    with contextlib.ExitStack() as held:
        held.enter_context(RunLock(run_dir))
        if not can_take_training(run_dir):
            raise DataError(
                f"{run_dir} has trained on its own; resume it instead of taking another's training"
            )
        files = RunDir(run_dir)
        config.to_yaml(files.config)
        inputs = run_inputs(config.to_dict(), weights_to_load(config))
        files.write_inputs(inputs)
        try:
            for src, dst in (
                (source.env, files.env),
                (source.metrics, files.metrics),
                (source.predictions("val"), files.predictions("val")),
                (source.best_checkpoint, files.best_checkpoint),
            ):
                link_or_copy(src, dst)
            fit_run_calibration(run_dir, config.training.calibration)  # from the validation predictions only
            final = {
                **read_json(source.final),
                "test": None,
                "config_sha256": inputs["config_sha256"],
                "reused_training": {
                    "from": str(Path(source_dir).resolve()),
                    "training_sha256": training,
                    "why": "the same training as this tune candidate (only tune and score_test differ); trained once",
                },
            }
            return score_test_fold(run_dir, cache=cache, device=device, final=final)
        except BaseException:
            # unfinished: drop the borrowed checkpoint, so the next grid takes the training again
            files.best_checkpoint.unlink(missing_ok=True)
            raise
