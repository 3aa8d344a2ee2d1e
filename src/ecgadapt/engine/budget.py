"""The optimiser-step budget of a recipe: steps per epoch, and each stage's maximum, floor and warm-up.

When ``training.min_steps`` raises a recipe's budget (a small training set, or a short ``--epochs``), the run
says so: :func:`floor_note` is one line, printed with the run's header and kept in its ``config.yaml``'s
``notes``, and :func:`requested_budget` goes into ``final.json``'s ``budget`` beside the raised maxima the report
reads. The stage ``epochs`` of ``config.yaml`` stay as configured: the config hash identifies what was asked
for (a grid cell finds its run by it), and the same config on more data is not raised at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ecgadapt.engine.stages import Stage

KEEP_PARTIAL_SHARE = 0.01
"""The last partial batch of an epoch is kept when it holds at least this share of the records (and >= 2)."""


def batches_per_epoch(n_records: int, batch_size: int, cap: int | None = None) -> tuple[int, bool]:
    """``(optimiser steps per epoch, drop_last)``: the last partial batch is dropped only when it is negligible
    (fewer than 2 records, which BatchNorm cannot train on, or under ``KEEP_PARTIAL_SHARE`` of the epoch)."""
    if n_records <= batch_size:
        steps, drop_last = 1, False
    else:
        full, rest = divmod(n_records, batch_size)
        keep = rest >= 2 and rest >= KEEP_PARTIAL_SHARE * n_records
        steps, drop_last = full + int(keep), not keep
    if cap:
        steps = min(steps, cap)
    return max(1, steps), drop_last


@dataclass
class StagePlan:
    """The optimiser-step budget of one stage: its maximum, its floor (no early stop before it), its warm-up."""

    name: str
    max_steps: int
    min_steps: int
    warmup_steps: int
    steps_per_epoch: int
    requested_steps: int | None = None  # the stage's length before the floor stretched it

    @property
    def epochs(self) -> int:
        """Epochs the stage runs at most (the last one may be partial)."""
        return -(-self.max_steps // self.steps_per_epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimiser steps of ``epoch`` (the last epoch runs what is left of ``max_steps``)."""
        return max(0, min(self.steps_per_epoch, self.max_steps - epoch * self.steps_per_epoch))

    def steps_through(self, epoch: int) -> int:
        """Optimiser steps of the stage once ``epoch`` is complete."""
        return min(self.max_steps, (epoch + 1) * self.steps_per_epoch)


def plan_budget(stages: Sequence[Stage], steps_per_epoch: int, min_steps: int = 0) -> list[StagePlan]:
    """Each stage's budget in optimiser steps.

    A stage's length is its ``max_steps``, else ``epochs * steps_per_epoch``. ``min_steps`` is a floor on the
    recipe's total: a recipe planned shorter is stretched to it, every stage by the same factor, and no stage
    may stop early before its share of the floor (in proportion to its length). So a tiny training subset still
    trains, and recipes with equal planned budgets keep equal budgets whatever their number of stages.
    """
    natural = [s.max_steps if s.max_steps is not None else s.epochs * steps_per_epoch for s in stages]
    total = sum(natural)
    stretch = max(1.0, min_steps / total) if min_steps and total else 1.0
    plans = []
    for stage, n in zip(stages, natural):
        planned = max(1, math.ceil(n * stretch - 1e-9))
        floor = min(planned, math.ceil(min_steps * n / total - 1e-9)) if min_steps else 0
        warmup = min(planned, int(round(stage.warmup_epochs * steps_per_epoch * stretch)))
        plans.append(StagePlan(stage.name, planned, floor, warmup, steps_per_epoch, max(1, n)))
    return plans


def _epochs(steps: int, steps_per_epoch: int) -> int:
    return -(-steps // steps_per_epoch)


def raised_by_floor(plans: Sequence[StagePlan]) -> bool:
    """Whether ``training.min_steps`` stretched any stage of ``plans`` beyond its configured length."""
    return any(p.requested_steps is not None and p.max_steps > p.requested_steps for p in plans)


def floor_note(plans: Sequence[StagePlan], min_steps: int) -> str | None:
    """One line saying how ``training.min_steps`` raised the budget, and how to turn it off (None if it did not)."""
    if not raised_by_floor(plans):
        return None
    stages = ", ".join(
        f"{p.name} {_epochs(p.requested_steps, p.steps_per_epoch)} -> {p.epochs} epochs" for p in plans
    )
    before, after = sum(p.requested_steps for p in plans), sum(p.max_steps for p in plans)
    return (
        f"training.min_steps={min_steps} raised the budget from {before} to {after} optimiser steps ({stages}, "
        f"{plans[0].steps_per_epoch} steps per epoch); the stage epochs in config.yaml are as configured; "
        "--set training.min_steps=0 trains them as written"
    )


def requested_budget(plans: Sequence[StagePlan]) -> dict:
    """What the config asked for before the floor: total and per-stage steps and epochs, and whether it was raised."""
    return {
        "raised_by_min_steps": raised_by_floor(plans),
        "requested_total_steps": sum(p.requested_steps or p.max_steps for p in plans),
        "requested_stages": [
            {
                "name": p.name,
                "steps": p.requested_steps or p.max_steps,
                "epochs": _epochs(p.requested_steps or p.max_steps, p.steps_per_epoch),
            }
            for p in plans
        ],
    }


def _better(value: float, best: float | None, metric: str) -> bool:
    """Whether ``value`` improves on ``best`` (higher is better, except for ``loss``).

    The first epoch of a stage always counts as an improvement (``best`` is None), so every stage has a best
    checkpoint even when its metric cannot be computed; a NaN never improves on a number.
    """
    return _significant(value, best, metric, 0.0)


def _significant(value: float, reference: float | None, metric: str, min_delta: float) -> bool:
    """Whether ``value`` improves on ``reference`` by more than ``min_delta`` (the early-stopping rule)."""
    if reference is None:
        return True
    if value is None or math.isnan(value):
        return False
    if math.isnan(reference):
        return True
    return value < reference - min_delta if metric == "loss" else value > reference + min_delta


def budget_record(
    plans: Sequence[StagePlan],
    steps_per_epoch: int,
    min_steps: int,
    progress: tuple[Sequence[int], Sequence[int], Sequence[bool]] | None = None,
) -> dict:
    """A run's budget (planned maximum and floor per stage) and, given ``progress`` (the steps, epochs and early
    stops of each stage so far), what it used."""
    out = {
        "steps_per_epoch": steps_per_epoch,
        "min_steps": int(min_steps),
        "max_total_steps": sum(p.max_steps for p in plans),
        "stages": [
            {
                "name": p.name,
                "max_steps": p.max_steps,
                "min_steps": p.min_steps,
                "warmup_steps": p.warmup_steps,
                "max_epochs": p.epochs,
            }
            for p in plans
        ],
    }
    if progress is not None:
        stage_steps, stage_epochs, stopped_early = progress
        for i, entry in enumerate(out["stages"]):
            entry["steps_run"] = stage_steps[i] if i < len(stage_steps) else 0
            entry["epochs_run"] = stage_epochs[i] if i < len(stage_epochs) else 0
            entry["stopped_early"] = bool(stopped_early[i]) if i < len(stopped_early) else False
        out["total_steps_run"] = sum(e["steps_run"] for e in out["stages"])
    return out


def describe_budget(plans: Sequence[StagePlan], steps_per_epoch: int, n_records: int) -> str:
    """One line for the run header: each stage's maximum (and floor) in optimiser steps."""
    parts = [f"{p.name} <= {p.max_steps}" + (f" (>= {p.min_steps})" if p.min_steps else "") for p in plans]
    return (
        f"budget: {' + '.join(parts)} = <= {sum(p.max_steps for p in plans)} optimiser steps "
        f"({steps_per_epoch} per epoch of {n_records} records)"
    )
