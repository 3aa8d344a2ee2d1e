"""benchmarks/grid_epoch_times.py: which runs of a results folder trained, and whose model they are."""

from __future__ import annotations

import pytest

from benchmark_scripts import benchmark_script


@pytest.fixture(scope="module")
def epoch_times():
    yield from benchmark_script("grid_epoch_times")


def test_a_tuned_cell_counts_its_candidates_not_its_copy_of_the_chosen_one(epoch_times, tmp_path) -> None:
    runs = tmp_path / "runs"
    plain = runs / "rhythm__default__baseline_ft__frac1__seed0"
    tuned = runs / "rhythm__xresnet1d101__scratch_tuned__frac1__seed0"
    for run in (plain, tuned, tuned / "candidates/lr=0.001", tuned / "candidates/lr=0.0001"):
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text("stage_name,time_s\nfinetune,1.0\n")
    (runs / "rhythm__random__scratch__frac1__seed0").mkdir()  # not started: no metrics
    reused = runs / "rhythm__xresnet1d101__scratch__frac1__seed0"  # took a candidate's training
    reused.mkdir()
    (reused / "metrics.csv").write_text("stage_name,time_s\nfinetune,1.0\n")
    (reused / "final.json").write_text('{"reused_training": {"from": "x"}}')
    found = epoch_times.trained_runs(tmp_path)
    assert found == [plain, tuned / "candidates/lr=0.0001", tuned / "candidates/lr=0.001"]
    assert [epoch_times.model_of(r) for r in found] == ["default", "xresnet1d101", "xresnet1d101"]
