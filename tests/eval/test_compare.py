"""compare_runs: per-run rows from final.json and mean ± std per recipe."""

from __future__ import annotations

import json

import pytest

from ecgadapt.errors import ConfigError
from ecgadapt.eval.compare import compare_runs, format_summary, summarise_runs


def _fake_run(path, recipe, seed, auroc, auprc):
    path.mkdir()
    final = {
        "recipe": recipe,
        "seed": seed,
        "model": "m",
        "task": "t",
        "fraction": 1.0,
        "test": {"macro_auroc": auroc, "macro_auprc": auprc},
        "best": {"stage_name": "finetune", "epoch": 3, "val": {"macro_auroc": 0.8}},
    }
    (path / "final.json").write_text(json.dumps(final))
    return path


def test_compare_and_summarise(tmp_path):
    runs = [
        _fake_run(tmp_path / "a0", "post_training", 0, 0.90, 0.50),
        _fake_run(tmp_path / "a1", "post_training", 1, 0.80, 0.40),
        _fake_run(tmp_path / "b0", "baseline_ft", 0, 0.70, 0.30),
    ]
    df = compare_runs(runs)
    assert df["recipe"].tolist() == ["post_training", "post_training", "baseline_ft"]
    assert df["test_macro_auroc"].tolist() == [0.90, 0.80, 0.70] and df["best_epoch"].tolist() == [3, 3, 3]
    s = summarise_runs(df)
    pt = s.set_index("recipe").loc["post_training"]
    assert pt["n_seeds"] == 2 and pt["auroc_mean"] == pytest.approx(0.85)
    assert pt["auroc_std"] == pytest.approx(0.0707107, abs=1e-6)
    text = format_summary(s)
    assert "0.850 ± 0.071" in text and "0.700 ± n/a" in text


def test_unfinished_run_is_named(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(ConfigError, match="half"):
        compare_runs([tmp_path / "half"])


def test_compare_real_run(trained_run):
    df = compare_runs([trained_run])
    final = json.loads((trained_run / "final.json").read_text())
    assert df.loc[0, "recipe"] == "lp_ft" and df.loc[0, "test_macro_auroc"] == final["test"]["macro_auroc"]
