"""Tuning on the validation fold: candidates are ordinary runs, only the chosen one ever meets the test fold."""

from __future__ import annotations

import json

import pytest
import torch

import ecgadapt.bench.candidates as tune
import ecgadapt.train.finetune as finetune
from ecgadapt.bench.candidates import candidate_configs, select_candidate
from ecgadapt.bench.cells import make_run, run_status
from ecgadapt.bench.tune import run_tuned, tune_override
from ecgadapt.errors import ConfigError
from ecgadapt.runs.rundir import read_json
from ecgadapt.train.config import apply_overrides
from ecgadapt.train.finetune import build_model, run_finetune


def test_tune_override_and_candidate_grid(make_cfg):
    assert tune_override("lr=1e-4,3e-4") == "tune.lr=[1e-4,3e-4]"
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        tune_override("lr")
    cfg = make_cfg("post_training", "t", tune_override("lr=1e-4,1e-3"), tune_override("head_lr_scale=1,10"))
    cands = candidate_configs(cfg)
    assert len(cands) == 4 and all(not c.training.score_test and not c.tune for c in cands.values())
    lrs = {
        (c.recipe.stages[0].lr, c.recipe.stages[1].lr, c.recipe.stages[1].head_lr_scale)
        for c in cands.values()
    }
    assert lrs == {
        (1e-3, lr, h) for lr in (1e-4, 1e-3) for h in (1, 10)
    }  # plain keys set the fine-tuning stage only
    with pytest.raises(ConfigError, match="not a tunable stage field"):
        make_cfg("post_training", "t2", "tune.name=[a,b]").validate()


def test_tuning_never_touches_the_test_fold_before_the_choice(make_cfg, monkeypatch):
    events: list[tuple[str, str]] = []
    real_eval, real_select = finetune.eval_dataset, tune.select_candidate

    def spy_eval(cache, cfg, spec, split, *args, **kwargs):
        events.append((split, cfg.out))
        return real_eval(cache, cfg, spec, split, *args, **kwargs)

    def spy_select(*args, **kwargs):
        events.append(("select", ""))
        return real_select(*args, **kwargs)

    monkeypatch.setattr(finetune, "eval_dataset", spy_eval)
    monkeypatch.setattr(tune, "select_candidate", spy_select)
    cfg = make_cfg("baseline_ft", "tuned", "tune.lr=[1.0e-5,3.0e-3]", epochs=2)
    run = run_tuned(cfg)

    chosen = read_json(run / "tune.json")
    before = events[: events.index(("select", ""))]
    after = events[events.index(("select", "")) + 1 :]
    assert before and all(split == "val" for split, _ in before)  # candidates are scored on fold 9 only
    assert after == [("test", str(run / "candidates" / chosen["chosen"]))]  # only the chosen one, once
    scores = {c["id"]: c["val_macro_auroc"] for c in chosen["candidates"]}
    assert chosen["chosen"] == max(scores, key=scores.get)  # the best validation macro AUROC wins
    final = read_json(run / "final.json")
    assert final["test"] is not None and final["tuning"]["chosen_values"] == {
        "lr": float(chosen["chosen_values"]["lr"])
    }
    others = [c for c in scores if c != chosen["chosen"]]
    assert all(read_json(run / "candidates" / c / "final.json")["test"] is None for c in others)
    assert not any((run / "candidates" / c / "predictions_test.npz").exists() for c in others)


def test_selection_picks_the_best_validation_score_and_refuses_test_scored_candidates(tmp_path):
    dirs = {}
    for cid, auroc in (("a", 0.7), ("b", 0.9), ("c", 0.9)):
        d = tmp_path / cid
        d.mkdir()
        (d / "final.json").write_text(json.dumps({"val": {"macro_auroc": auroc}, "test": None}))
        dirs[cid] = d
    assert select_candidate(dirs)[0] == "b"  # ties go to the first
    (tmp_path / "a" / "final.json").write_text(
        json.dumps({"val": {"macro_auroc": 0.5}, "test": {"macro_auroc": 1}})
    )
    with pytest.raises(Exception, match="scored on the test fold before selection"):
        select_candidate(dirs)


def test_a_changed_weights_file_is_a_conflict(make_cfg, tmp_path):
    cfg = make_cfg("baseline_ft", "w", epochs=1)
    donor = build_model(cfg, 5)
    weights = tmp_path / "encoder.pt"
    torch.save({"model": donor.state_dict()}, weights)
    cfg = apply_overrides(cfg, [f"model.weights={weights}"])
    run = run_finetune(cfg)
    assert read_json(run / "final.json")["weights_sha256"] == read_json(run / "inputs.json")["weights_sha256"]
    assert run_status(make_run(run, cfg)) == "done"
    torch.save({"model": build_model(make_cfg("baseline_ft", "w2", "seed=5"), 5).state_dict()}, weights)
    with pytest.raises(ConfigError, match="the weights file changed"):
        run_status(make_run(run, cfg))
    with pytest.raises(ConfigError, match="weights file"):
        run_finetune(cfg, resume=True)


def test_finetune_cli_tune_flag_runs_the_search(make_cfg, tmp_path, capsys):
    from ecgadapt.cli import main

    cfg = make_cfg("linear_probe", "cli", epochs=1)
    cfg_file = tmp_path / "c.yaml"
    cfg.to_yaml(cfg_file)
    out = tmp_path / "tuned"
    argv = [
        "finetune",
        "--config",
        str(cfg_file),
        "--tune",
        "lr=1e-3,1e-2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "tuning" in capsys.readouterr().out and len(list((out / "candidates").iterdir())) == 2
    assert read_json(out / "tune.json")["chosen_values"]["lr"] in (1e-3, 1e-2)
    assert main(["finetune", "--config", str(cfg_file), "--tune", "lr", "--out", str(tmp_path / "bad")]) == 2
    assert "KEY=V1,V2" in capsys.readouterr().err


def test_a_tie_goes_to_the_first_candidate_in_grid_order_and_tune_json_records_it(make_cfg, capsys):
    cfg = make_cfg("linear_probe", "tie", "tune.min_delta=[1.0e-3,2.0e-3]", epochs=1)  # one epoch: no effect
    run = run_tuned(cfg)
    record = read_json(run / "tune.json")
    scores = [c["val_macro_auroc"] for c in record["candidates"]]
    assert scores[0] == scores[1]  # the two candidates trained alike
    assert record["chosen"] == "min_delta=0.001" == record["tie"]["chosen"]
    assert record["tie"]["candidates"] == ["min_delta=0.001", "min_delta=0.002"]
    assert "first candidate in grid order" in record["tie"]["rule"]
    assert read_json(run / "final.json")["tuning"]["tie"] == record["tie"]
    assert "2 candidates tie on validation macro_auroc" in capsys.readouterr().out


def test_no_tie_is_recorded_when_one_candidate_is_best():
    rows = [{"id": "a", "score": 0.7}, {"id": "b", "score": 0.9}, {"id": "c", "score": float("nan")}]
    assert tune.tie_record(rows, "b") is None
    rows.append({"id": "d", "score": 0.9})
    assert tune.tie_record(rows, "b")["candidates"] == ["b", "d"]


def _tune_cli(make_cfg, tmp_path, *tune_items: str) -> int:
    """``ecgadapt finetune --config CFG --tune ...`` on a config whose data folder does not exist: a command line
    that parses gets as far as the data check (a DataError); one that does not is refused before it."""
    from ecgadapt.cli import main

    cfg_file = tmp_path / "cfg.yaml"
    make_cfg("post_training", "cli", f"data.root={tmp_path / 'no_data'}").to_yaml(cfg_file)
    args = ["finetune", "--config", str(cfg_file), "--no-progress"]
    return main([*args, *(f"--tune={item}" for item in tune_items)])


def test_tune_of_one_stage_works_on_the_command_line_as_readme_says(make_cfg, tmp_path, capsys):
    """Issue 22, item 12: ``--tune stages.0.lr=...`` failed on the command line (it worked in YAML)."""
    from ecgadapt.bench.tune import tune_overrides
    from ecgadapt.train.config import build_config

    cfg = build_config(
        None, tune_overrides(["stages.0.lr=1e-4,1e-3", "lr=3e-4,1e-3"]), recipe="post_training"
    )
    assert cfg.tune == {"stages.0.lr": [1e-4, 1e-3], "lr": [3e-4, 1e-3]}
    assert sorted(candidate_configs(cfg)) == sorted(
        f"s0.lr={a:g}__lr={b:g}" for a in (1e-4, 1e-3) for b in (3e-4, 1e-3)
    )
    assert _tune_cli(make_cfg, tmp_path, "stages.0.lr=1e-4,1e-3") == 2
    assert "no_data" in capsys.readouterr().err  # parsed: it stopped at the missing data, not at the key


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["lr=1e-4,inf"], "tune.lr: inf is not a finite number"),
        (["lr=nan"], "tune.lr: nan is not a finite number"),
        (["lr=1e-4", "lr=1e-3"], "--tune lr is given twice"),
        (["lr=1e-4,1e-3", "stages.1.lr=1e-2,1e-1"], "both search lr of stage 1"),
    ],
)
def test_unusable_tune_searches_are_refused_on_the_command_line(make_cfg, tmp_path, capsys, items, message):
    """Issue 22, item 12: ``--tune lr=inf`` was accepted and a repeated key silently kept the last value."""
    assert _tune_cli(make_cfg, tmp_path, *items) == 2
    err = capsys.readouterr().err
    assert message in err and "no_data" not in err and "Traceback" not in err
    assert not (tmp_path / "cli").exists()


def test_a_non_finite_stage_value_is_refused_anywhere(make_cfg):
    with pytest.raises(ConfigError, match="lr must be a finite number, got inf"):
        make_cfg("baseline_ft", "inf", "recipe.stages.0.lr=inf")
