"""The report package's data: structured tuned values, recipe roles, and the sections table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml
from run_fixtures import fabricate_results

from ecgadapt.data.tasks import TASKS
from ecgadapt.errors import ConfigError
from ecgadapt.eval.report import BUILTIN_ROLES, SECTIONS, RecipeRoles, build_report
from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.tuning import chosen_values, tuned_keys, tuned_text
from ecgadapt.eval.results import collect_results, write_results


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        ({"lr": 0.001, "head_lr_scale": 10}, "ignored", {"lr": 0.001, "head_lr_scale": 10}),
        ([{"lr": 0.001}, {"lr": 0.0001}], None, [{"lr": 0.001}, {"lr": 0.0001}]),
        ('{"lr": 0.001, "head_lr_scale": 10}', None, {"lr": 0.001, "head_lr_scale": 10}),  # JSON text
        ("{'lr': 0.001, 'head_lr_scale': 10}", None, {"lr": 0.001, "head_lr_scale": 10}),  # results.csv
        ({"lr": 0.001, "head_lr_scale": None}, None, {"lr": 0.001}),  # a parquet struct's missing key
        (math.nan, "lr=0.001, head_lr_scale=10", {"lr": 0.001, "head_lr_scale": 10}),  # no column: text
        (None, "lr=0.001 (2/3); lr=0.0001 (1/3)", [{"lr": 0.001}, {"lr": 0.001}, {"lr": 0.0001}]),
        (None, "", None),
        (math.nan, math.nan, None),
    ],
)
def test_chosen_values_reads_every_form_a_results_table_can_hold(value, text, expected):
    assert chosen_values(value, text) == expected


def _tuned_results(tmp_path):
    import json

    root = fabricate_results(
        tmp_path / "res", tasks=("superdiagnostic",), recipes=("baseline_ft_tuned",), seeds=(0, 1, 2)
    )
    for i, run in enumerate(sorted((root / "runs").iterdir())):
        final = json.loads((run / "final.json").read_text())
        final["tuning"] = {"chosen_values": {"lr": 0.001 if i else 0.0003, "head_lr_scale": 10}}
        (run / "final.json").write_text(json.dumps(final))
    return root


def test_collected_runs_carry_tuned_values_as_dicts_and_the_report_reads_them_back_from_files(tmp_path):
    root = _tuned_results(tmp_path)
    table = collect_results(root)
    assert list(table["tuned_values"]) == [
        {"lr": 0.0003, "head_lr_scale": 10},
        {"lr": 0.001, "head_lr_scale": 10},
        {"lr": 0.001, "head_lr_scale": 10},
    ]
    expected = "lr=0.001, head_lr_scale=10 (2); lr=0.0003, head_lr_scale=10 (1)"
    assert tuned_text(table) == expected and tuned_keys(table) == ["lr", "head_lr_scale"]
    write_results(table, root)
    assert tuned_text(pd.read_csv(root / "results.csv")) == expected
    assert tuned_text(pd.read_csv(root / "results.csv").drop(columns=["tuned_values"])) == expected
    if (root / "results.parquet").is_file():
        assert tuned_text(pd.read_parquet(root / "results.parquet")) == expected


def test_builtin_roles_list_tasks_and_recipes_in_todays_order(tmp_path):
    assert BUILTIN_ROLES.display_order() == (
        "scratch",
        "linear_probe",
        "baseline_ft",
        "baseline_ft_tuned",
        "lp_ft",
        "post_training",
        "post_training_no_lp",
        "post_training_no_sd",
        "post_training_no_dropout",
    )
    root = fabricate_results(
        tmp_path / "res",
        tasks=("rhythm", "superdiagnostic"),
        recipes=("post_training_no_sd", "zeta", "post_training", "baseline_ft", "scratch"),
        seeds=(0,),
    )
    ctx = ReportContext(collect_results(root), root, 20, 0.05, 0)
    assert ctx.tasks == [t for t in TASKS if t in ("rhythm", "superdiagnostic")]
    assert ctx.recipes == ["scratch", "baseline_ft", "post_training", "post_training_no_sd", "zeta"]
    assert ctx.treatment == "post_training"
    assert ctx.roles.baselines_in(ctx.recipes) == ["baseline_ft"]


def test_a_variant_of_the_treatment_is_the_treatment_when_the_named_one_did_not_run():
    recipes = ["baseline_ft", "post_training_no_sd", "post_training_tuned"]
    assert BUILTIN_ROLES.treatment_in(recipes) == "post_training_tuned"
    assert BUILTIN_ROLES.baselines_in(["baseline_ft_tuned", "x", "baseline_ft"]) == [
        "baseline_ft_tuned",
        "baseline_ft",
    ]


def test_report_takes_roles_as_data(tmp_path):
    root = fabricate_results(
        tmp_path / "res",
        tasks=("superdiagnostic",),
        recipes=("scratch", "baseline_ft", "lp_ft"),
        seeds=(0, 1),
    )
    roles = RecipeRoles(treatment="lp_ft", baselines=("scratch",), order=("lp_ft", "scratch", "baseline_ft"))
    rep = build_report(root, tmp_path / "rep", n_resamples=20, roles=roles)
    assert "Relative improvement of lp-ft over the baselines" in rep.sections
    md = rep.markdown.read_text()
    assert "| lp_ft mean |" in md and "scratch (literal)" in md
    main = md[md.index("## Main results") :]
    assert main.index("| lp_ft |") < main.index("| scratch |") < main.index("| baseline_ft |")


def test_report_reads_roles_from_the_saved_spec(tmp_path):
    root = fabricate_results(
        tmp_path / "res", tasks=("superdiagnostic",), recipes=("baseline_ft", "lp_ft"), seeds=(0, 1)
    )
    spec = {"spec": {"name": "t", "roles": {"treatment": "lp_ft", "baselines": ["baseline_ft"]}}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    rep = build_report(root, tmp_path / "rep", n_resamples=20)
    assert "Relative improvement of lp-ft over the baselines" in rep.sections
    spec["spec"]["roles"] = {"treatment": "lp_ft", "baseline": ["baseline_ft"]}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="unknown keys"):
        build_report(root, tmp_path / "rep", n_resamples=20)


def test_sections_table_lists_every_section_once():
    assert len(SECTIONS) == len(set(SECTIONS)) == 13
    assert {s.__module__.rsplit(".", 1)[-1] for s in SECTIONS} >= {"overview", "main_results", "external"}
