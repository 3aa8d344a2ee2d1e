"""Robustness aggregation over runs and the report's calibration-after-scaling and robustness sections."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from run_fixtures import add_shift_results, fabricate_results

from ecgadapt.eval.calibration import expected_calibration_error
from ecgadapt.eval.report import build_report
from ecgadapt.eval.results import collect_results, load_predictions
from ecgadapt.eval.robustness import collect_robustness, robustness_summary, summarise_robustness
from ecgadapt.eval.temperature import apply_temperature, load_calibration


@pytest.fixture(scope="module")
def shift_results(tmp_path_factory):
    root = fabricate_results(
        tmp_path_factory.mktemp("shift") / "res", tasks=("superdiagnostic",), seeds=(0, 1, 2)
    )
    return add_shift_results(root)


def test_robustness_is_averaged_over_seeds_per_recipe(shift_results):
    table = collect_results(shift_results).assign(setting="ecg_vit_tiny")
    long = collect_robustness(table)
    assert len(long) == len(table) * (6 + 4) and set(long["recipe"]) == {"baseline_ft", "post_training"}
    summary = summarise_robustness(long)
    row = summary.query(
        "recipe == 'post_training' and corruption == 'gaussian_noise' and severity == 3"
    ).iloc[0]
    runs = long.query("recipe == 'post_training' and corruption == 'gaussian_noise' and severity == 3")
    assert row["n"] == 3 and row["mean"] == pytest.approx(runs["macro_auroc"].mean())
    assert row["std"] == pytest.approx(np.std(runs["macro_auroc"], ddof=1))
    s = robustness_summary(summary).set_index(["recipe", "corruption"])
    # fabricated: AUROC falls 0.04 * severity / quality; post_training's quality 1.2 > baseline_ft's 0.8
    assert s.loc[("post_training", "gaussian_noise"), "drop"] == pytest.approx(0.04 * 3 / 1.2)
    assert s.loc[("baseline_ft", "gaussian_noise"), "drop"] == pytest.approx(0.04 * 3 / 0.8)
    assert s.loc[("baseline_ft", "lead_sets"), "worst_level"] == "II alone"


def test_report_shows_ece_before_and_after_scaling_and_robustness_side_by_side(shift_results, tmp_path):
    rep = build_report(shift_results, tmp_path / "rep", n_resamples=50)
    assert "Calibration after temperature scaling" in rep.sections and "Robustness to shift" in rep.sections
    names = {f.name for f in rep.figures}
    assert {
        "temperature_ecg-vit-tiny_superdiagnostic.png",
        "robustness_ecg-vit-tiny_superdiagnostic.png",
    } <= names
    md = rep.markdown.read_text()
    temp = md[md.index("## Calibration after temperature scaling") : md.index("## Robustness to shift")]
    table = collect_results(shift_results)
    for recipe in ("baseline_ft", "post_training"):
        dirs = table.loc[table["recipe"] == recipe, "run_dir"]
        before, after = [], []
        for d in dirs:
            p = load_predictions(d, "test")
            before.append(expected_calibration_error(p["y_true"], p["y_score"]))
            t = load_calibration(d)["temperatures"]
            after.append(expected_calibration_error(p["y_true"], apply_temperature(p["y_score"], t)))
        m = re.search(
            rf"\| ecg_vit_tiny \| superdiagnostic \| {recipe} \| 3 \| global \| [0-9.]+ \| ([0-9.]+) ± [0-9.]+ "
            rf"\| ([0-9.]+) ± [0-9.]+ \|",
            temp,
        )
        assert m, temp
        assert float(m.group(1)) == pytest.approx(np.mean(before), abs=5e-4)
        assert float(m.group(2)) == pytest.approx(np.mean(after), abs=5e-4)
    rob = md[md.index("## Robustness to shift") :]
    for recipe in ("baseline_ft", "post_training"):
        assert f"| {recipe} | gaussian_noise | 3 |" in rob and f"| {recipe} | lead_sets | 3 |" in rob
    assert "II alone" in rob


def test_runs_without_shift_results_are_counted_not_hidden(shift_results, tmp_path):
    table = collect_results(shift_results)
    one = table["run_dir"].iloc[0]
    (Path(one) / "robustness.csv").rename(Path(one) / "robustness.csv.bak")
    (Path(one) / "calibration.json").rename(Path(one) / "calibration.json.bak")
    try:
        md = build_report(shift_results, tmp_path / "rep", n_resamples=50).markdown.read_text()
    finally:
        (Path(one) / "robustness.csv.bak").rename(Path(one) / "robustness.csv")
        (Path(one) / "calibration.json.bak").rename(Path(one) / "calibration.json")
    assert "1 run(s) at this fraction have no robustness.csv" in md
    assert "1 run(s) at this fraction have no calibration.json" in md


def test_robustness_panels_share_one_y_axis_and_amplitude_scaling_is_explained(tmp_path):
    from run_fixtures import add_shift_results

    from ecgadapt.eval.robustness import robustness_figure

    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1))
    add_shift_results(root, corruptions=("gaussian_noise", "amplitude_scaling", "lead_sets", "time_shift"))
    table = collect_results(root).assign(setting="ecg_vit_tiny")
    fig = robustness_figure(summarise_robustness(collect_robustness(table)))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4 and len({ax.get_ylim() for ax in panels}) == 1
    assert all(panels[0].get_shared_y_axes().joined(panels[0], ax) for ax in panels)
    md = build_report(root, tmp_path / "rep", n_resamples=20).markdown.read_text()
    rob = md[md.index("## Robustness to shift") :]
    assert "per-lead z-score" in rob and "unchanged at every severity" in rob
    no_amp = fabricate_results(tmp_path / "plain", tasks=("superdiagnostic",), seeds=(0, 1))
    add_shift_results(no_amp)
    assert "per-lead z-score" not in build_report(no_amp, n_resamples=20).markdown.read_text()
