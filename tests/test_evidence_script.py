"""benchmarks/evidence_ptbxl2285.py: the labels that keep the fraction grid's runs apart from the main grid's."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark_scripts import benchmark_script


@pytest.fixture(scope="module")
def evidence():
    yield from benchmark_script("evidence_ptbxl2285")


def test_runs_below_the_full_training_folds_get_their_fraction_in_the_model_label(evidence) -> None:
    table = pd.DataFrame({"model": ["default", "default", "xresnet1d101"], "fraction": [1.0, 0.3, 0.1]})
    labelled = evidence.with_fraction_labels(table)
    assert list(labelled["model"]) == ["default", "default@0.3", "xresnet1d101@0.1"]
    assert list(table["model"]) == ["default", "default", "xresnet1d101"]  # the input is not changed


@pytest.mark.parametrize("dtype", ["object", "str", "string[pyarrow]"])
def test_a_table_with_only_full_fraction_runs_keeps_its_labels(evidence, dtype) -> None:
    """The main grid alone (no fraction below 1) once failed: an empty selection's labels were floats."""
    table = pd.DataFrame({"model": pd.Series(["default", "random"], dtype=dtype), "fraction": [1.0, 1.0]})
    assert list(evidence.with_fraction_labels(table)["model"]) == ["default", "random"]


def test_the_best_recipe_is_chosen_on_fold_9_not_on_fold_10(evidence) -> None:
    table = pd.DataFrame(
        {
            "task": ["rhythm"] * 5 + ["superdiagnostic"],
            "model": ["default"] * 4 + ["xresnet1d101", "default"],
            "recipe": ["lp_ft", "lp_ft", "post_training", "post_training", "scratch_tuned", "lp_ft"],
            "seed": [0, 1, 0, 1, 0, 0],
            "val_macro_auroc": [0.90, 0.92, 0.93, 0.87, 0.99, 0.8],
            "val_macro_auprc": [0.5, 0.6, 0.4, 0.4, 0.9, 0.3],
            "test_macro_auroc": [0.1, 0.1, 0.9, 0.9, 0.9, 0.5],  # never read
        }
    )
    rows = evidence.fold9_choice(table)
    assert [(r["task"], r["recipe"], r["chosen"]) for r in rows] == [
        ("rhythm", "lp_ft", True),  # 0.91 against 0.90; the other model's 0.99 is not one of its recipes
        ("rhythm", "post_training", False),
        ("superdiagnostic", "lp_ft", True),
    ]
    assert rows[0]["seeds"] == 2 and abs(rows[0]["val_auroc"] - 0.91) < 1e-12
    assert "| rhythm | lp_ft | 2 | 0.910 | 0.550 | yes |" in evidence.fold9_markdown(rows)


def test_the_readme_tables_name_the_models_and_give_both_intervals(evidence) -> None:
    recipes = [
        {
            "task": "superdiagnostic",
            "model": "default@0.3",
            "recipe": "post_training",
            "n_seeds": 1,
            "auroc_mean": 0.9,
            "auroc_std": float("nan"),
            "auprc_mean": 0.7,
            "auprc_std": float("nan"),
            "chosen": "lr=0.001 (1)",
        }
    ]
    diff = dict(
        seed_diff=0.01, seed_low=-0.02, seed_high=0.04, boot_diff=0.01, boot_low=0.001, boot_high=0.02
    )
    results = [
        {"task": "superdiagnostic", "a": "default/post_training", "b": "xresnet1d101/scratch_tuned"}
        | {"metric": metric, "n_seeds": 3, **diff}
        for metric in ("macro_auroc", "macro_auprc")
    ]
    text = evidence.headline_markdown(recipes, results)
    assert (
        "| superdiagnostic | `xresnet1d_small` (30% of folds 1-8) | `post_training` | 1 | 0.900 | 0.700 |"
        in text
    )
    assert (
        "| superdiagnostic | `xresnet1d_small` `post_training` − `xresnet1d101` `scratch_tuned` | 3 "
        "| +0.010 [-0.020, +0.040] | +0.010 [+0.001, +0.020] | +0.010 [-0.020, +0.040] | +0.010 [+0.001, +0.020] |"
    ) in text
