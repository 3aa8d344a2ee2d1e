"""What a fit leaves behind between epochs: its progress (``FitState``, saved in ``last.pt``) and the run's own
checkpoints, which a resume loads only when they carry the run's config hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ecgadapt.engine.checkpoints import load_checkpoint
from ecgadapt.errors import ConfigError
from ecgadapt.runs.rundir import RunDir


@dataclass
class FitState:
    """Progress of a fit, saved in ``last.pt``: where it stands and the current stage's best so far."""

    stage: int = 0
    epoch: int = -1  # last completed epoch of ``stage``
    stage_done: bool = False
    best_score: float | None = None
    best_epoch: int = -1
    ref_score: float | None = None  # early-stopping reference: the last score that improved by > min_delta
    bad_epochs: int = 0  # epochs since the last significant improvement (early-stopping counter)
    n_metric_rows: int = 0
    train_time_s: float = 0.0
    stage_times_s: list[float] = field(default_factory=list)
    stage_steps: list[int] = field(default_factory=list)  # optimiser steps run per stage
    stage_epochs: list[int] = field(default_factory=list)  # epochs run per stage
    stopped_early: list[bool] = field(default_factory=list)


class RunCheckpoints:
    """The checkpoints and metrics log of one run directory, as the fit loop reads them (rank 0 only)."""

    def __init__(self, run_dir: Path, meta: dict) -> None:
        self.files = RunDir(run_dir)
        self.meta = meta
        self.metrics = self.files.metrics_log()

    def stage_best(self, i: int) -> Path:
        return self.files.stage_best_checkpoint(i)

    @property
    def last(self) -> Path:
        return self.files.last_checkpoint

    @property
    def best(self) -> Path:
        return self.files.best_checkpoint

    @property
    def owner(self) -> dict:
        """What stamps a checkpoint as this run's: its config hash (``checkpoint_meta["config_sha256"]``)."""
        sha = self.meta.get("config_sha256")
        return {} if sha is None else {"config_sha256": sha}

    def load_own(self, path: Path) -> dict:
        """Load one of this run's checkpoints; a checkpoint stamped with another run's config hash is refused
        (copied from another run, it would silently continue that run's training here)."""
        ckpt = load_checkpoint(path)
        mine, theirs = self.meta.get("config_sha256"), ckpt.get("config_sha256")
        if mine is not None and theirs is not None and theirs != mine:
            raise ConfigError(
                f"cannot resume {self.files.path}: {path} belongs to another run (config hash {str(theirs)[:12]}, this "
                f"run's is {str(mine)[:12]}): it was copied from another run directory; restore this run's own "
                f"checkpoint, or start over with --overwrite"
            )
        return ckpt

    def resume_point(self, resume: bool) -> dict | None:
        """``last.pt`` when resuming from one (``metrics.csv`` cut to its epochs), else None (``metrics.csv``
        emptied); rank 0 only."""
        if resume and self.last.is_file():
            ckpt = self.load_own(self.last)
            state = FitState(**ckpt["state"])
            self.check_metric_rows(state)
            self.metrics.truncate(state.n_metric_rows)
            return ckpt
        if self.metrics.path.is_file():
            self.metrics.truncate(0)
        return None

    def check_metric_rows(self, state: FitState) -> None:
        """Refuse to resume when ``metrics.csv`` lacks rows of epochs that ``last.pt`` counts as done (the file
        was edited or replaced): truncating it to the checkpoint would then lose or misplace rows."""
        rows = self.metrics.rows()
        n = state.n_metric_rows
        last = rows[n - 1] if 0 < n <= len(rows) else None
        if n == 0 or (
            last is not None
            and (last.get("stage"), last.get("epoch")) == (str(state.stage), str(state.epoch))
        ):
            return
        raise ConfigError(
            f"cannot resume {self.files.path}: {self.last} was written after {n} epoch(s) (the last: stage "
            f"{state.stage}, epoch {state.epoch}), but {self.metrics.path} holds {len(rows)} row(s) that do not end "
            "there; the run's files do not belong together (was metrics.csv edited or copied?); restore them, or "
            "start over with --overwrite"
        )
