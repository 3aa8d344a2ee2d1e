"""Report statistics (relative improvement, seed-averaged bootstrap, recipe comparison) and the rendered report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from run_fixtures import add_shift_results, fabricate_results, labels, scores

from ecgadapt.errors import DataError
from ecgadapt.eval.bootstrap import bootstrap_ci, paired_seed_difference, pooled_paired_bootstrap
from ecgadapt.eval.metrics import classification_metrics
from ecgadapt.eval.report import build_report, compare_recipes, relative_improvement, seed_averaged_bootstrap
from ecgadapt.eval.results import collect_results, load_predictions


def test_relative_improvement_is_the_papers_formula():
    assert relative_improvement(0.9, 0.8) == pytest.approx(12.5)
    assert relative_improvement(0.76, 0.8) == pytest.approx(-5.0)
    assert math.isnan(relative_improvement(0.5, 0.0))
    assert math.isnan(relative_improvement(float("nan"), 0.8))


def test_seed_averaged_bootstrap_with_one_run_equals_bootstrap_ci():
    y = labels(60, seed=3)
    s = scores(y, 1.0, seed=4)
    one = seed_averaged_bootstrap(y, [s], "macro_auprc", n_resamples=200, seed=7)
    ref = bootstrap_ci(y, s, "macro_auprc", n_resamples=200, seed=7)
    assert (one["point"], one["low"], one["high"]) == pytest.approx((ref["point"], ref["low"], ref["high"]))


def test_seed_averaged_bootstrap_averages_the_runs():
    y = labels(60, seed=3)
    runs = [scores(y, q, seed=i) for i, q in enumerate((0.5, 1.0, 2.0))]
    out = seed_averaged_bootstrap(y, runs, "macro_auroc", n_resamples=200, seed=0)
    points = [bootstrap_ci(y, s, "macro_auroc", n_resamples=10)["point"] for s in runs]
    assert out["point"] == pytest.approx(np.mean(points))
    assert out["low"] < out["point"] < out["high"] and out["n_runs"] == 3


@pytest.fixture
def results_dir(tmp_path):
    return fabricate_results(tmp_path / "res", seeds=(0, 1, 2))


def test_compare_recipes_matches_the_statistics_it_names(results_dir):
    table = collect_results(results_dir).assign(setting="m")
    comp = compare_recipes(
        table, "post_training", "baseline_ft", ("setting", "task", "fraction"), n_resamples=200
    )
    assert len(comp) == 2 * 2  # tasks x metrics
    row = comp[(comp["task"] == "rhythm") & (comp["metric"] == "macro_auroc")].iloc[0]
    t = table[table["task"] == "rhythm"]
    post = t[t["recipe"] == "post_training"].set_index("seed")["test_macro_auroc"]
    base = t[t["recipe"] == "baseline_ft"].set_index("seed")["test_macro_auroc"]
    assert row["rel_improvement_pct"] == pytest.approx((post.mean() - base.mean()) / base.mean() * 100)
    d = paired_seed_difference(post.to_dict(), base.to_dict())
    assert row["seed_diff"] == pytest.approx(d["mean_diff"]) and row["seed_p"] == pytest.approx(d["p_value"])
    runs = t.sort_values("seed")
    y = load_predictions(runs["run_dir"].iloc[0])["y_true"]
    sa = [load_predictions(r)["y_score"] for r in runs[runs["recipe"] == "post_training"]["run_dir"]]
    sb = [load_predictions(r)["y_score"] for r in runs[runs["recipe"] == "baseline_ft"]["run_dir"]]
    boot = pooled_paired_bootstrap(y, sa, sb, "macro_auroc", n_resamples=200)
    assert row["boot_diff"] == pytest.approx(boot["diff"]) and row["boot_p"] == pytest.approx(boot["p_value"])
    assert row["rel_improvement_pct"] > 0  # the fabricated post_training is the better recipe


def test_compare_recipes_pairs_only_common_seeds(results_dir):
    table = collect_results(results_dir).assign(setting="m")
    table = table[~((table["recipe"] == "baseline_ft") & (table["seed"] == 2))]
    comp = compare_recipes(table, "post_training", "baseline_ft", n_resamples=50)
    assert (comp["n_seeds"] == 2).all()
    assert comp["note"].str.contains("2 seeds").all()


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_report_renders_every_section_self_contained(tmp_path):
    root = fabricate_results(
        tmp_path / "res",
        recipes=("baseline_ft", "post_training", "post_training_no_sd"),
        fractions=(0.5, 1.0),
        seeds=(0, 1),
    )
    add_shift_results(root)
    before = _pyplot_figures()
    rep = build_report(root, n_resamples=100)
    assert _pyplot_figures() == before  # no pyplot state
    assert not rep.absent, rep.absent
    page = rep.html.read_text()
    for sid, title in [
        ("overview", "Overview"),
        ("main-results", "Main results"),
        ("improvement", "Relative improvement of post-training over the baselines"),
        ("data-efficiency", "Data efficiency"),
        ("training-dynamics", "Training dynamics"),
        ("ablation", "Ablation of post_training"),
        ("per-class", "Per-class results"),
        ("exclusions", "Classes left out of the macro metrics"),
        ("calibration", "Calibration"),
        ("temperature-scaling", "Calibration after temperature scaling"),
        ("robustness", "Robustness to shift"),
    ]:
        assert f"<h2>{title}</h2>" in _section(page, sid)
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(images) == len(rep.figures) >= 5  # efficiency, dynamics, ablation, 2 reliability
    assert all(img.startswith("iVBORw0KGgo") for img in images)  # PNG signature
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # no external asset
    main = _section(page, "main-results")
    for task in ("superdiagnostic", "rhythm"):
        for recipe in ("baseline_ft", "post_training", "post_training_no_sd"):
            assert re.search(rf"<tr><td>ecg_vit_tiny</td><td>{task}</td><td>{recipe}</td><td>2</td>", main)
    assert "Only the official PTB-XL split" in _section(page, "overview")
    improvement = _section(page, "improvement")
    assert improvement.count("<tr><td>ecg_vit_tiny</td>") == 2 * 2 * 2  # tasks x fractions x metrics
    assert "%" in improvement
    md = rep.markdown.read_text()
    for f in rep.figures:
        assert f.is_file() and f"figures/{f.name}" in md
    assert "| Model | Task | Recipe | Seeds |" in md


def test_report_says_why_sections_are_absent(tmp_path):
    root = fabricate_results(tmp_path / "res", recipes=("post_training",), seeds=(0, 1))
    rep = build_report(root, tmp_path / "rep", n_resamples=50)
    assert rep.html.parent == tmp_path / "rep"
    assert set(rep.absent) == {
        "Relative improvement of post-training over the baselines",
        "Data efficiency",
        "Ablation of post_training",
        "Calibration after temperature scaling",
        "Robustness to shift",
    }
    assert "baseline_ft" in rep.absent["Relative improvement of post-training over the baselines"]
    assert "same training fraction" in rep.absent["Data efficiency"]
    assert "ecgadapt robustness RUN" in rep.absent["Robustness to shift"]
    assert "ecgadapt calibrate RUN" in rep.absent["Calibration after temperature scaling"]
    page, md = rep.html.read_text(), rep.markdown.read_text()
    for title in rep.absent:  # empty sections are dropped, their reasons listed once at the end
        assert f"<h2>{title}</h2>" not in page and f"## {title}" not in md
    assert "<li>Data efficiency: every run used the same training fraction" in page
    assert "- Data efficiency: every run used the same training fraction" in md
    assert "Not shown" not in page and "Not shown" not in md


def test_report_on_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataError, match="no finished run"):
        build_report(tmp_path)


def _pyplot_figures():
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    return None if plt is None else list(plt.get_fignums())


def _write_spec(root: Path, cells: list[str], hashes: dict[str, str] | None = None) -> None:
    """A minimal spec.yaml as `ecgadapt benchmark` writes it: the spec's cells and their config hashes."""
    resolved = {"cells": cells, "cell_config_sha256": hashes or {}}
    (root / "spec.yaml").write_text(yaml.safe_dump({"spec": {"name": "t"}, "resolved": resolved}))


def test_report_uses_only_the_spec_cells_and_names_stale_and_foreign_runs(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1))
    runs = sorted(p.name for p in (root / "runs").iterdir())
    stale, foreign = runs[0], runs[-1]
    final = json.loads((root / "runs" / stale / "final.json").read_text())
    (root / "runs" / stale / "final.json").write_text(json.dumps({**final, "config_sha256": "old"}))
    _write_spec(root, [r for r in runs if r != foreign], {stale: "new"})
    rep = build_report(root, n_resamples=20)
    overview = _section(rep.html.read_text(), "overview")
    assert "Left out: 2 other finished run(s)" in overview
    assert (
        stale in overview
        and "stale" in overview
        and foreign in overview
        and "not a cell of the spec" in overview
    )
    main = _section(rep.html.read_text(), "main-results")
    assert "<td>1</td>" in main  # each recipe keeps one seed (one run of each was left out)


def test_report_lists_classes_left_out_with_their_reason(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1))
    for run in (root / "runs").iterdir():
        final = json.loads((run / "final.json").read_text())
        pred = np.load(run / "predictions_test.npz")
        final["test"] = classification_metrics(
            pred["y_true"],
            pred["y_score"],
            list(pred["class_names"]),
            exclude={"HYP": "no positive in the training split"},
        )
        (run / "final.json").write_text(json.dumps(final))
    rep = build_report(root, n_resamples=20)
    section = _section(rep.html.read_text(), "exclusions")
    assert "HYP" in section and "no positive in the training split" in section


def test_improvement_compares_post_training_with_the_literal_and_the_tuned_baseline(tmp_path):
    root = fabricate_results(
        tmp_path / "res",
        tasks=("superdiagnostic",),
        recipes=("baseline_ft", "baseline_ft_tuned", "post_training"),
        seeds=(0, 1),
    )
    for run in (root / "runs").glob("*baseline_ft_tuned*"):
        final = json.loads((run / "final.json").read_text())
        final["tuning"] = {"chosen_values": {"lr": 0.001, "head_lr_scale": 10}, "candidates": [{}, {}]}
        (run / "final.json").write_text(json.dumps(final))
    rep = build_report(root, n_resamples=20)
    section = _section(rep.html.read_text(), "improvement")
    assert "baseline_ft (literal)" in section and "baseline_ft_tuned (tuned: lr, head_lr_scale)" in section
    main = _section(rep.html.read_text(), "main-results")
    assert "lr=0.001, head_lr_scale=10 (2)" in main


def test_report_warns_when_runs_start_from_weights_that_saw_their_test_records(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1))
    clean = build_report(root, tmp_path / "clean", n_resamples=20)
    assert "Warning" not in _section(clean.html.read_text(), "overview")
    runs = sorted((root / "runs").iterdir())
    for i, run in enumerate(runs[:2]):
        final = json.loads((run / "final.json").read_text())
        final["pretraining_overlap"] = {"train": 40, "val": 3 - i, "test": 7 + i}
        (run / "final.json").write_text(json.dumps(final))
    overview = _section(build_report(root, tmp_path / "warned", n_resamples=20).html.read_text(), "overview")
    assert "Warning:</strong> 2 run(s) start from weights pretrained" in overview
    assert "test fold (up to 8)" in overview and "validation fold (up to 3)" in overview


def _md_table_rows(md: str, section: str) -> list[dict[str, str]]:
    """The rows of the first table under ``## section`` in a Markdown report, as dicts by column."""
    lines = md[md.index(f"## {section}") :].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    head = [c.strip() for c in lines[start].strip("|").split(" | ")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split(" | ")))) for ln in lines[start + 2 : end]]


def test_p_values_are_shown_only_as_far_as_seeds_and_resamples_support_them(tmp_path):
    three = fabricate_results(tmp_path / "three", seeds=(0, 1, 2))
    comp = compare_recipes(collect_results(three).assign(setting="ecg_vit_tiny"), n_resamples=50)
    rows = _md_table_rows(
        build_report(three, tmp_path / "r3", n_resamples=50).markdown.read_text(), "Relative improvement"
    )
    assert len(rows) == len(comp) == 4
    floor_t, floor_b = 2.0 ** (1 - 3), 2.0 / 51
    for row, (_, c) in zip(rows, comp.iterrows()):
        assert row["p (paired t)"] == ("<0.25" if c["seed_p"] < floor_t else f"{c['seed_p']:.3g}")
        assert row["p (paired bootstrap)"] == (
            f"≤{floor_b:.3g}" if c["boot_p"] <= floor_b + 1e-12 else f"{c['boot_p']:.3g}"
        )
    assert any(r["p (paired bootstrap)"] == "≤0.0392" for r in rows)  # the fabricated gain is clear
    two = fabricate_results(tmp_path / "two", seeds=(0, 1))
    rows = _md_table_rows(
        build_report(two, tmp_path / "r2", n_resamples=50).markdown.read_text(), "Relative improvement"
    )
    assert rows and all(r["p (paired t)"] == "–" for r in rows)  # two seeds: no seed-level p-value


def test_reliability_legends_and_tables_give_the_same_ece(tmp_path, monkeypatch):
    from run_fixtures import add_shift_results

    import ecgadapt.eval.report.sections.calibration as calibration_section
    import ecgadapt.eval.report.sections.temperature as temperature_section

    root = add_shift_results(fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1, 2)))
    legends: dict[str, list[str]] = {}

    def recording(module, name, key):
        draw = getattr(module, name)

        def wrapper(*args, **kwargs):
            fig = draw(*args, **kwargs)
            legends[key] = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
            return fig

        monkeypatch.setattr(module, name, wrapper)

    recording(calibration_section, "reliability_figure", "calibration")
    recording(temperature_section, "before_after_reliability_figure", "temperature")
    md = build_report(root, tmp_path / "rep", n_resamples=20).markdown.read_text()
    for row in _md_table_rows(md, "Calibration"):
        assert f"{row['Recipe']} (ECE {row['ECE mean ± std']})" in legends["calibration"]
    rows = _md_table_rows(md, "Calibration after temperature scaling")
    for row in rows:
        assert f"{row['Recipe']} (ECE {row['Test ECE before']})" in legends["temperature"]
        assert f"{row['Recipe']} (ECE {row['Test ECE after']})" in legends["temperature"]
    assert len(rows) == 2 and all(" ± " in row["Test ECE before"] for row in rows)
    assert md.count("15 equal-width bins") == 1  # the definition is stated once, in the overview


def test_tables_fit_the_page_width(tmp_path):
    root = fabricate_results(tmp_path / "res", tasks=("superdiagnostic",), seeds=(0, 1, 2))
    page = build_report(root, tmp_path / "rep", n_resamples=20).html.read_text()
    css = page[page.index("<style>") : page.index("</style>")]
    assert ".table-wrap{max-width:100%;overflow-x:auto" in css  # a wide table scrolls in its own box
    assert "td.num{white-space:nowrap" in css and "table.wide{font-size:" in css
    tables = re.findall(r"(<div class=\"table-wrap\">)?<table[ >]", page)
    assert tables and all(wrapped for wrapped in tables)
    main = _section(page, "main-results")
    assert '<table class="wide">' in main  # many columns: the smaller font
    assert re.search(
        r'<td class="num">0\.\d{3} ± 0\.\d{3}</td><td class="num">\[0\.\d{3}, 0\.\d{3}\]</td>', main
    )
    improvement = _section(page, "improvement")
    assert re.search(r'<td class="num">\+0\.\d{3} \[[+−]0\.\d{3}, \+0\.\d{3}\]</td>', improvement)  # signed Δ


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def test_report_opens_with_one_headline_sentence_per_task_with_its_intervals(tmp_path):
    root = fabricate_results(tmp_path / "res", seeds=(0, 1, 2))  # post_training beats baseline_ft
    rep = build_report(root, tmp_path / "rep", n_resamples=50)
    page, md = rep.html.read_text(), rep.markdown.read_text()
    assert page.index('<section id="headline">') < page.index("<nav>") < page.index('<section id="overview">')
    assert md.index("## Result") < md.index("## Overview")
    head = _section(page, "headline")
    comp = compare_recipes(collect_results(root).assign(setting="ecg_vit_tiny"), n_resamples=50)
    comp = comp[comp["metric"] == "macro_auroc"].set_index("task")
    sentences = re.findall(r"<p><strong>(\w+)</strong>: (.*?)</p>", head)
    assert [task for task, _ in sentences] == ["superdiagnostic", "rhythm"]  # one per task, in task order
    for task, text in sentences:
        r = comp.loc[task]
        assert text.startswith(
            f"post_training − baseline_ft (literal): {_signed(r['boot_diff'])} macro AUROC"
        )
        assert f"records [{_signed(r['boot_low'])}, {_signed(r['boot_high'])}]" in text
        assert f"seeds [{_signed(r['seed_low'])}, {_signed(r['seed_high'])}]" in text
        assert r["boot_low"] > 0 and r["seed_low"] > 0 and text.endswith(": significant.")
    assert "over test records (paired bootstrap" in head and "over seeds (paired t-interval)" in head

    two = build_report(fabricate_results(tmp_path / "two", seeds=(0, 1)), tmp_path / "r2", n_resamples=50)
    head = _section(two.html.read_text(), "headline")
    assert "seeds [" not in head and "With 2 seeds no seed interval is shown" in head
    alone = fabricate_results(tmp_path / "alone", recipes=("post_training",), seeds=(0, 1))
    assert 'id="headline"' not in build_report(alone, tmp_path / "r3", n_resamples=20).html.read_text()


@pytest.mark.parametrize(
    ("boot", "seed", "n_seeds", "expected"),
    [
        ((0.01, 0.03), (0.005, 0.04), 3, "significant"),
        ((0.01, 0.03), (-0.01, 0.04), 5, "not significant over seeds"),
        ((-0.01, 0.03), (0.005, 0.04), 5, "not significant"),
        ((0.01, 0.03), (0.005, 0.04), 2, "significant over test records"),
        ((-0.03, -0.01), (-0.04, -0.02), 4, "significant"),
    ],
)
def test_headline_verdict_needs_every_interval_shown_to_exclude_zero(boot, seed, n_seeds, expected):
    import pandas as pd

    from ecgadapt.eval.report.sections.headline import verdict

    row = {
        "boot_low": boot[0],
        "boot_high": boot[1],
        "seed_low": seed[0],
        "seed_high": seed[1],
        "n_seeds": n_seeds,
    }
    assert verdict(pd.Series(row)) == expected


def test_headline_puts_the_tuned_baseline_first(tmp_path):
    root = fabricate_results(
        tmp_path / "res",
        tasks=("superdiagnostic",),
        recipes=("baseline_ft", "baseline_ft_tuned", "post_training"),
        seeds=(0, 1, 2),
    )
    for run in (root / "runs").glob("*baseline_ft_tuned*"):
        final = json.loads((run / "final.json").read_text())
        final["tuning"] = {"chosen_values": {"lr": 0.001}}
        (run / "final.json").write_text(json.dumps(final))
    head = _section(build_report(root, tmp_path / "rep", n_resamples=20).html.read_text(), "headline")
    tuned = head.index("post_training − baseline_ft_tuned (tuned: lr):")
    assert tuned < head.index("post_training − baseline_ft (literal):")
