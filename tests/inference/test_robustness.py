"""``ecgadapt robustness``: a run's test split under corruptions, end to end on a tiny synthetic run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgadapt.cli import main
from ecgadapt.data.corruptions import CORRUPTIONS
from ecgadapt.errors import ConfigError
from ecgadapt.inference.robustness import ROBUSTNESS_CSV, ROBUSTNESS_PNG, run_robustness
from ecgadapt.train.evaluate import evaluate_run

SOME = ["gaussian_noise", "lead_sets", "baseline_wander"]


@pytest.fixture(scope="module")
def robust_run(trained_run, tmp_path_factory):
    """A copy of the trained run (the shared fixture stays read-only) and its robustness table on SOME."""
    import shutil

    run = tmp_path_factory.mktemp("robust") / "run"
    shutil.copytree(trained_run, run)
    return run, run_robustness(run, corruptions=SOME, device="cpu")


def test_table_and_figure_are_written(robust_run):
    run, table = robust_run
    assert (run / ROBUSTNESS_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = pd.read_csv(run / ROBUSTNESS_CSV)
    assert list(saved["corruption"].unique()) == SOME
    for name in SOME:
        part = saved[saved["corruption"] == name]
        assert part["severity"].tolist() == list(CORRUPTIONS[name].severities)
        assert part["level"].iloc[0] == "clean"
    assert saved["level"][saved["corruption"] == "lead_sets"].tolist() == [
        "clean",
        "six limb leads",
        "I + II",
        "II alone",
    ]
    assert (saved["calibration"] == "global").all() and (
        saved["n_records"] == saved["n_records"].iloc[0]
    ).all()
    assert np.isfinite(saved[["macro_auroc", "macro_auprc", "loss", "ece"]].to_numpy()).all()


def test_severity_zero_is_the_runs_own_test_score_and_corruption_changes_it(robust_run):
    run, table = robust_run
    test = evaluate_run(run, device="cpu")
    clean = table[table["severity"] == 0]
    assert np.allclose(clean["macro_auroc"], test["macro_auroc"]) and np.allclose(clean["loss"], test["loss"])
    noisy = table[(table["corruption"] == "gaussian_noise") & (table["severity"] == 5)]  # SNR 0 dB
    assert float(noisy["macro_auroc"].iloc[0]) != test["macro_auroc"]


def test_rerun_gives_the_same_table(robust_run, tmp_path):
    run, table = robust_run
    again = run_robustness(run, corruptions=SOME, device="cpu")
    pd.testing.assert_frame_equal(table, again)
    other = run_robustness(run, corruptions=["gaussian_noise"], severities=[5], seed=1, device="cpu")
    assert other["severity"].tolist() == [0, 5]
    assert float(other["macro_auroc"].iloc[1]) != float(
        table.query("corruption == 'gaussian_noise' and severity == 5")["macro_auroc"].iloc[0]
    )


def test_cli_robustness(robust_run, capsys):
    run, _ = robust_run
    assert (
        main(["robustness", str(run), "--corruption", "zeroed_leads", "--severity", "1", "--device", "cpu"])
        == 0
    )
    out = capsys.readouterr().out
    assert "zeroed_leads" in out and "sev 1" in out
    assert pd.read_csv(run / ROBUSTNESS_CSV)["corruption"].unique().tolist() == ["zeroed_leads"]
    assert main(["robustness", str(run), "--corruption", "snow"]) == 2
    assert "unknown corruption 'snow'" in capsys.readouterr().err


def test_run_without_data_root_needs_data(tmp_path):
    (tmp_path / "config.yaml").write_text("data: {root: null}\n")
    with pytest.raises(ConfigError, match="pass --data DIR"):
        run_robustness(tmp_path, device="cpu")


def test_end_to_end_on_real_ptbxl500(ptbxl500, tmp_path, capsys):
    """finetune (tiny, one epoch per stage) on ptbxl-500, then calibrate and robustness through the CLI."""
    from ecgadapt.train.config import FinetuneConfig, apply_overrides
    from ecgadapt.train.finetune import run_finetune

    cfg = FinetuneConfig.from_dict(
        {
            "data": {"root": str(ptbxl500), "rate": 100, "cache_dir": str(tmp_path / "cache")},
            "model": {
                "name": "ecg_vit_tiny",
                "kwargs": {"width": 16, "depth": 2, "heads": 2, "patch_size": 50},
            },
            "recipe": {"name": "lp_ft"},
            "training": {
                "batch_size": 16,
                "num_workers": 0,
                "progress": False,
                "max_train_batches": 2,
                "min_steps": 0,
            },
            "out": str(tmp_path / "run"),
        }
    )
    run = run_finetune(apply_overrides(cfg, ["recipe.stages.0.epochs=1", "recipe.stages.1.epochs=1"]))
    assert (run / "calibration.json").is_file()
    assert main(["calibrate", str(run), "--mode", "per_class"]) == 0
    argv = [
        "robustness",
        str(run),
        "--corruption",
        "electrode_motion",
        "--corruption",
        "lead_sets",
        "--severity",
        "3",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    assert "electrode_motion" in capsys.readouterr().out
    table = pd.read_csv(run / ROBUSTNESS_CSV)
    assert table["level"].tolist() == ["clean", "SNR 12 dB", "clean", "II alone"]
    assert (table["calibration"] == "per_class").all() and (run / ROBUSTNESS_PNG).stat().st_size > 0


def test_cli_robustness_shows_its_progress(robust_run, capsys):
    run, _ = robust_run
    argv = ["robustness", str(run), "--corruption", "zeroed_leads", "--device", "cpu"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"robustness {run.name}" in err and "split" in err  # a bar over the corrupted splits
    assert main([*argv, "--no-progress"]) == 0
    assert f"robustness {run.name}" not in capsys.readouterr().err


def test_a_figure_that_cannot_be_drawn_leaves_the_old_table_and_figure(robust_run, tmp_path, monkeypatch):
    """The figure is drawn before anything is written: a failure leaves no new table beside an old figure."""
    import shutil

    import ecgadapt.inference.robustness as robustness

    run = tmp_path / "run"
    shutil.copytree(robust_run[0], run)
    before = {name: (run / name).read_bytes() for name in (ROBUSTNESS_CSV, ROBUSTNESS_PNG)}

    def broken(*args, **kwargs):
        raise RuntimeError("no figure")

    monkeypatch.setattr(robustness, "robustness_figure", broken)
    with pytest.raises(RuntimeError, match="no figure"):
        run_robustness(run, corruptions=["gaussian_noise"], device="cpu")
    assert {name: (run / name).read_bytes() for name in before} == before
