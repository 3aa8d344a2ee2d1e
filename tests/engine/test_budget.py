"""Training budgets in optimiser steps: max_steps, the step floor, kept partial batches, min_delta early stopping."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import ecgadapt.engine.loop as loop
from ecgadapt.engine.budget import _significant, batches_per_epoch, plan_budget
from ecgadapt.engine.stages import Stage
from ecgadapt.runs.rundir import read_json
from ecgadapt.train.finetune import run_finetune


def test_partial_batch_is_kept_unless_negligible():
    assert batches_per_epoch(352, 64) == (
        6,
        False,
    )  # 5 full + 32 records: dropping them loses 9% of the epoch
    assert batches_per_epoch(641, 64) == (10, True)  # one record left over: dropped (BatchNorm needs 2)
    assert batches_per_epoch(35, 64) == (1, False)  # a subset smaller than a batch is one step
    assert batches_per_epoch(352, 64, cap=2) == (2, False)


def test_plan_budget_floor_stretches_every_stage_alike():
    stages = [Stage(name="probe", trainable="head", epochs=10), Stage(name="finetune", epochs=30)]
    plans = plan_budget(stages, steps_per_epoch=1, min_steps=200)  # 40 planned steps, floor 200
    assert [p.max_steps for p in plans] == [50, 150] and [p.min_steps for p in plans] == [50, 150]
    one = plan_budget([Stage(name="finetune", epochs=40)], steps_per_epoch=1, min_steps=200)
    assert sum(p.max_steps for p in one) == sum(p.max_steps for p in plans)  # equal budgets stay equal
    assert [p.max_steps for p in plan_budget(stages, 10, min_steps=200)] == [
        100,
        300,
    ]  # above the floor: as planned
    capped = plan_budget([Stage(name="finetune", epochs=40, max_steps=7)], steps_per_epoch=6)
    assert capped[0].max_steps == 7 and capped[0].epochs == 2 and capped[0].steps_in_epoch(1) == 1


def test_min_delta_makes_a_tie_no_improvement():
    assert not _significant(0.80, 0.80, "macro_auroc", 0.0)
    assert not _significant(0.8005, 0.80, "macro_auroc", 1e-3)
    assert _significant(0.802, 0.80, "macro_auroc", 1e-3)
    assert _significant(0.40, 0.45, "loss", 1e-3) and not _significant(0.4495, 0.45, "loss", 1e-3)
    assert not _significant(math.nan, 0.5, "macro_auroc", 0.0) and _significant(
        0.5, None, "macro_auroc", 1e-3
    )


def test_max_steps_runs_exactly_that_many_optimiser_steps(make_cfg, monkeypatch):
    steps = []
    real = loop.Trainer._train_epoch

    def counting(self, i, stage, plan, epoch, optimizer, *args, **kwargs):
        handle = optimizer.register_step_post_hook(lambda *_: steps.append(i))
        try:
            return real(self, i, stage, plan, epoch, optimizer, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(loop.Trainer, "_train_epoch", counting)
    cfg = make_cfg(
        "baseline_ft", "r", "recipe.stages.0.max_steps=3", "recipe.stages.0.patience=null", epochs=5
    )
    run = run_finetune(cfg)
    assert (
        len(steps) == 3
    )  # 2 steps per epoch (max_train_batches=2), so the second epoch stops after one step
    budget = read_json(run / "final.json")["budget"]
    assert budget["max_total_steps"] == 3 and budget["total_steps_run"] == 3
    assert pd.read_csv(run / "metrics.csv")["optimizer_steps"].iloc[-1] == 3


def test_step_floor_applies_on_a_35_record_subset(make_cfg):
    # 35 records of the synthetic training split at batch 16: 3 steps per epoch; 1 epoch per stage planned.
    cfg = make_cfg(
        "lp_ft",
        "r",
        "training.max_train_batches=null",
        "training.min_steps=30",
        "recipe.stages.0.patience=1",
        "recipe.stages.1.patience=1",
        epochs=1,
    )
    n_train = len(pd.read_csv(f"{cfg.data.root}/ptbxl_database.csv").query("strat_fold <= 8"))
    cfg.data.fraction = 35 / n_train
    run = run_finetune(cfg)
    final = read_json(run / "final.json")
    assert final["n_records"]["train"] == pytest.approx(35, abs=2)
    budget = final["budget"]
    assert budget["max_total_steps"] >= 30  # stretched from 2 x 3 planned steps to the floor
    assert budget["total_steps_run"] >= 30  # patience 1 cannot stop a stage before its share of the floor
    assert all(s["steps_run"] >= s["min_steps"] > 0 for s in budget["stages"])


def test_floor_note_names_each_stages_raise_and_the_setting_that_turns_it_off():
    from ecgadapt.engine.budget import floor_note, requested_budget

    stages = [Stage(name="probe", trainable="head", epochs=10), Stage(name="finetune", epochs=30)]
    plans = plan_budget(stages, steps_per_epoch=1, min_steps=200)
    assert floor_note(plans, 200) == (
        "training.min_steps=200 raised the budget from 40 to 200 optimiser steps (probe 10 -> 50 epochs, "
        "finetune 30 -> 150 epochs, 1 steps per epoch); the stage epochs in config.yaml are as configured; "
        "--set training.min_steps=0 trains them as written"
    )
    assert requested_budget(plans)["requested_total_steps"] == 40
    above = plan_budget(stages, steps_per_epoch=10, min_steps=200)  # 400 planned: not raised
    assert floor_note(above, 200) is None and requested_budget(above)["raised_by_min_steps"] is False
