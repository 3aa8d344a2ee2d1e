"""Equal patience: a spec shares one early-stopping setting between its recipes, as it shares the budget."""

from __future__ import annotations

import pandas as pd
import pytest

from ecgadapt.bench.cells import early_stopping_by_recipe, expand_cells
from ecgadapt.bench.grid import load_spec
from ecgadapt.errors import ConfigError
from ecgadapt.eval.report.text import early_stopping_text
from ecgadapt.train.recipes import get_recipe

TINY = ["models=[{name: ecg_vit_tiny, kwargs: {width: 16, depth: 1, heads: 1, patch_size: 250}}]"]


def _stopping(cells) -> dict[str, set[tuple]]:
    out: dict[str, set[tuple]] = {}
    for c in cells:
        out.setdefault(c.recipe_label, set()).update(
            (s.patience, s.min_delta) for s in c.config.recipe.stages
        )
    return out


@pytest.mark.parametrize(
    "name", ["paper-main", "paper-ablation", "paper-data-efficiency", "paper-vs-task-specific"]
)
def test_every_recipe_of_a_builtin_spec_stops_early_alike_scratch_included(tmp_path, name):
    spec = load_spec(name, ["seeds=[0]", "tasks=[rhythm]", "fractions=[1.0]"], weights=str(tmp_path / "w.pt"))
    (tmp_path / "w.pt").write_bytes(b"x")
    cells = expand_cells(spec, tmp_path, tmp_path / "out")
    assert (spec.patience, spec.min_delta) == (5, 1e-3)
    assert set().union(*_stopping(cells).values()) == {(5, 1e-3)}
    for cell in cells:  # tune candidates inherit the shared setting
        for run in cell.runs:
            for cand in run.candidates:
                assert {(s.patience, s.min_delta) for s in cand.config.recipe.stages} == {(5, 1e-3)}


def test_a_spec_without_the_keys_gets_the_default_and_can_change_it(tmp_path):
    d = {
        "models": ["ecg_vit_tiny"],
        "tasks": ["rhythm"],
        "recipes": ["scratch", "post_training"],
        "seeds": [0],
    }
    cells = expand_cells(load_spec(d), tmp_path, tmp_path / "out")
    assert _stopping(cells) == {"scratch": {(5, 1e-3)}, "post_training": {(5, 1e-3)}}
    cells = expand_cells(load_spec(d, ["patience=3", "min_delta=0"]), tmp_path, tmp_path / "out")
    assert _stopping(cells) == {"scratch": {(3, 0.0)}, "post_training": {(3, 0.0)}}
    cells = expand_cells(load_spec(d, ["patience=null"]), tmp_path, tmp_path / "out")
    assert _stopping(cells)["scratch"] == {(None, 1e-3)}
    moved = load_spec(d, ["stage_overrides.patience=7"])  # stage_overrides' patience is the shared setting
    assert moved.patience == 7 and "patience" not in moved.stage_overrides


def test_a_recipe_entry_keeps_its_own_patience_on_purpose_and_the_record_says_so():
    recipes = (
        "recipes=[{name: scratch, patience: 10}, {name: lp_ft, stages: [{}, {patience: 8}]}, baseline_ft]"
    )
    spec = load_spec("paper-main", [*TINY, recipes, "seeds=[0]", "tasks=[rhythm]"])
    record = early_stopping_by_recipe(spec)
    assert record["scratch"] == {
        "set_by": "recipe",
        "stages": [{"name": "train", "patience": 10, "min_delta": 1e-3}],
    }
    assert [s["patience"] for s in record["lp_ft"]["stages"]] == [5, 8] and record["lp_ft"][
        "set_by"
    ] == "recipe"
    assert record["baseline_ft"]["set_by"] == "spec"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["patience=0"], "patience must be a positive integer or null"),
        (["min_delta=-1"], "min_delta must be >= 0"),
        (["patience=2", "stage_overrides.patience=3"], "give either patience"),
        (["recipes=[{name: lp_ft, patience: 0}]"], "recipe 'lp_ft'.*patience must be a positive integer"),
    ],
)
def test_bad_early_stopping_settings_name_the_key(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_spec("paper-main", [*TINY, *sets])


def test_a_plain_scratch_run_keeps_its_preset():
    assert [s.patience for s in get_recipe("scratch").stages] == [10]


def test_the_report_shows_each_arms_patience():
    table = pd.DataFrame(
        {
            "recipe.stages.0.patience": [5.0, 5.0, 10.0],
            "recipe.stages.0.min_delta": [1e-3, 1e-3, 1e-3],
            "recipe.stages.1.patience": [5.0, float("nan"), float("nan")],
            "recipe.stages.1.min_delta": [1e-3, float("nan"), float("nan")],
        }
    )
    assert early_stopping_text(table.iloc[[0]]) == "5 (min Δ 0.001)"
    assert early_stopping_text(table.iloc[[1]]) == "5 (min Δ 0.001)"
    assert early_stopping_text(table.iloc[[2]]) == "10 (min Δ 0.001)"
    assert early_stopping_text(pd.DataFrame({"x": [1]})) == "–"


def test_the_report_table_gives_each_arm_its_patience_and_the_overview_flags_unequal_ones(tmp_path):
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
    from run_fixtures import fabricate_results

    from ecgadapt.eval.report import build_report

    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1))
    for run in (root / "runs").iterdir():
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        patience = 10 if cfg["recipe"]["name"] == "baseline_ft" else 5
        for stage in cfg["recipe"]["stages"]:
            stage.update(patience=patience, min_delta=1e-3)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    md = build_report(root, tmp_path / "rep", n_resamples=20).markdown.read_text()
    main = md[md.index("Main results") :]
    assert "Early stopping: patience" in main
    assert "| 10 (min Δ 0.001) |" in main and "| 5 (min Δ 0.001) |" in main
    assert "stop early with different patience (" in md
