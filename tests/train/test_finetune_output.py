"""What ``finetune`` tells and records: the epoch's peak learning rate, the step floor's raise, the class counts
per split, and intervals beside its macro figures."""

from __future__ import annotations

import pandas as pd
import pytest

from ecgadapt.train.finetune import run_finetune


def test_the_epoch_line_and_metrics_csv_give_the_epochs_peak_learning_rate(make_cfg, capsys) -> None:
    run = run_finetune(make_cfg("linear_probe", "probe"))  # lr 1e-3, cosine over 2 epochs of 2 steps
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["lr"].tolist() == pytest.approx([1e-3, 5e-4])  # each epoch's first step, not its last
    out = capsys.readouterr().out
    assert "[probe 1/2]" in out and "peak lr 1.00e-03" in out and "peak lr 5.00e-04" in out


def test_finetune_prints_the_class_counts_of_each_split_and_the_records_without_a_label(make_cfg, capsys):
    from ecgadapt.data.stats import split_stats

    cfg = make_cfg("linear_probe", "form", "data.task=form", "data.fraction=0.5", epochs=1)
    run_finetune(cfg)
    out = capsys.readouterr().out
    expected = split_stats(cfg.data.root, "form")  # from the dataset's labels, not the cache
    lines = out.split("\n  task form")[1].splitlines()
    assert "train: fraction 0.5 of its folds" in lines[1]
    records = next(line for line in lines if line.strip().startswith("records")).split()
    dropped = next(line for line in lines if "dropped (no label)" in line).split()
    counts = expected["splits"]
    assert int(records[2]) == counts["val"]["records"] and int(records[3]) == counts["test"]["records"]
    assert 0 < int(records[1]) < counts["train"]["records"]  # the half trained on
    assert [int(n) for n in dropped[-3:]] == [
        counts[s]["dropped_unlabeled"] for s in ("train", "val", "test")
    ]
    assert sum(counts[s]["dropped_unlabeled"] for s in counts) > 0  # records without a form statement
    for name in expected["classes"]:
        row = next(line for line in lines if line.split()[:1] == [name]).split()
        assert [int(n) for n in row[2:]] == [counts[s]["positives"][name] for s in ("val", "test")]


def test_finetune_prints_intervals_beside_its_macro_figures_and_names_rare_classes(make_cfg, capsys) -> None:
    import json

    from ecgadapt.eval.summary import macro_intervals
    from ecgadapt.runs.rundir import load_predictions

    run = run_finetune(make_cfg("linear_probe", "ci", epochs=1))
    lines = capsys.readouterr().out.splitlines()
    test = json.loads((run / "final.json").read_text())["test"]
    pred = load_predictions(run / "predictions_test.npz")
    ci = macro_intervals(pred["y_true"], pred["y_score"], test)
    i = next(i for i, line in enumerate(lines) if line.startswith("linear_probe seed 0: test "))
    low, high = ci["macro_auprc"]["low"], ci["macro_auprc"]["high"]
    assert f"macro AUPRC {test['macro_auprc']:.4f} [{low:.4f}, {high:.4f}]" in lines[i]
    assert "bootstrap intervals" in lines[i + 1]
    assert "fewer than 5 test positives" in lines[i + 2] and "training.min_test_positives=5" in lines[i + 2]


def test_a_budget_raised_by_the_step_floor_is_said_and_recorded_without_changing_the_hash(make_cfg, capsys):
    import json

    import yaml

    from ecgadapt.runs.hashing import config_sha256, saved_config_sha256
    from ecgadapt.train.config import FinetuneConfig

    cfg = make_cfg("lp_ft", "floor", "training.min_steps=12", epochs=1)  # 2 stages x 1 epoch x 2 steps = 4
    run = run_finetune(cfg)
    out = capsys.readouterr().out
    note = (
        "training.min_steps=12 raised the budget from 4 to 12 optimiser steps (probe 1 -> 3 epochs, finetune "
        "1 -> 3 epochs, 2 steps per epoch); the stage epochs in config.yaml are as configured; --set "
        "training.min_steps=0 trains them as written"
    )
    assert f"  note: {note}" in out.splitlines() and "[finetune 3/3]" in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert note in saved["notes"] and [s["epochs"] for s in saved["recipe"]["stages"]] == [1, 1]
    assert note in FinetuneConfig.from_saved(run / "config.yaml").notes
    final = json.loads((run / "final.json").read_text())
    budget = final["budget"]
    assert budget["raised_by_min_steps"] and budget["requested_total_steps"] == 4
    assert budget["max_total_steps"] == 12 and budget["total_steps_run"] == 12
    assert budget["requested_stages"] == [
        {"name": "probe", "steps": 2, "epochs": 1},
        {"name": "finetune", "steps": 2, "epochs": 1},
    ]
    assert [s["max_epochs"] for s in budget["stages"]] == [3, 3] and note in final["notes"]
    # the note is not hashed: the run keeps the hash of the config as asked for
    assert saved_config_sha256(run) == final["config_sha256"] == config_sha256(cfg.to_dict())

    plain = run_finetune(make_cfg("lp_ft", "no_floor", epochs=1))  # min_steps 0: nothing raised
    assert "raised the budget" not in capsys.readouterr().out
    assert json.loads((plain / "final.json").read_text())["budget"]["raised_by_min_steps"] is False
