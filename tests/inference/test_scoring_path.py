"""One scoring path: predict in float32 as the loop scores, and robustness by the run's own class rules and
source (PTB-XL, cinc, folder), or on an external set."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ecgadapt.inference.predict as predict_module
from ecgadapt.cli import main
from ecgadapt.data.cache import load_or_prepare
from ecgadapt.inference.external import evaluate_external
from ecgadapt.inference.robustness import run_robustness
from ecgadapt.runs.rundir import load_predictions
from ecgadapt.train.finetune import run_finetune

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from wfdb_fixtures import digital, write_cinc, write_record  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_runs import tiny_config  # noqa: E402

LABELS = ["NORM;SR", "IMI", "AFIB;CLBBB", "NDT", "NORM", "IMI;SR"]


def test_predict_scores_in_float32_and_never_under_autocast(trained_run, synthetic_root, monkeypatch):
    entered = []

    @contextlib.contextmanager
    def bf16(device, enabled=True):  # what autocast does on a GPU, here on the CPU
        entered.append(device)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    monkeypatch.setattr(predict_module, "autocast", bf16, raising=False)
    pred = load_predictions(trained_run / "predictions_test.npz")
    db = pd.read_csv(synthetic_root / "ptbxl_database.csv", index_col="ecg_id")
    bases = [synthetic_root / db.loc[int(i), "filename_lr"] for i in pred["ecg_ids"][:4]]
    df = predict_module.predict(trained_run, bases, device="cpu", uncalibrated=True)
    assert entered == []
    np.testing.assert_allclose(df[list(pred["class_names"])].to_numpy(), pred["y_score"][:4], atol=1e-6)


def _clean_auroc(table: pd.DataFrame) -> float:
    return float(table.loc[table["severity"] == 0, "macro_auroc"].iloc[0])


def test_robustness_scores_the_clean_test_split_by_the_runs_own_class_rules(
    make_cfg, synthetic_root, tmp_path
):
    cfg = make_cfg("linear_probe", "rules", epochs=1)
    cache = load_or_prepare(cfg.data.root, cfg.data.rate, cache_dir=cfg.data.cache_dir, progress=False)
    y, _ = cache.labels(cfg.data.task)
    counts = sorted(y[cache.index["strat_fold"].to_numpy() == cfg.data.test_fold].sum(axis=0).tolist())
    k = counts[len(counts) // 2] + 1  # leaves out at least the classes with fewer test positives
    cfg = make_cfg("linear_probe", "rules", f"training.min_test_positives={k}", epochs=1)
    run = run_finetune(cfg)
    final = json.loads((run / "final.json").read_text())
    assert final["test"]["excluded_classes"]  # the rule left classes out of final.json's macro score
    table = run_robustness(run, corruptions=["gaussian_noise"], severities=[1], device="cpu")
    assert _clean_auroc(table) == pytest.approx(final["test"]["macro_auroc"], abs=1e-9)


def _folder(root: Path, n: int = 40) -> Path:
    for i in range(n):
        write_record(root, f"rec{i}", digital(70 + i, 1000), 100)
    rows = [f"rec{i},{LABELS[i % len(LABELS)]},{i % 10 + 1}" for i in range(n)]
    (root / "labels.csv").write_text("record,labels,fold\n" + "\n".join(rows) + "\n")
    return root


def _cinc(root: Path, n: int = 40) -> Path:
    codes = ["164854000,426783006", "733534002", "164854000"]  # NORM + SR, CLBBB (CD), NORM
    for i in range(n):
        write_cinc(root, f"HR{i + 1:05d}", digital(90 + i, 1000), 100, codes[i % len(codes)])
    return root


@pytest.mark.parametrize("source", ["folder", "cinc"])
def test_robustness_reads_the_runs_own_source(source, tmp_path, capsys):
    root = _folder(tmp_path / "data") if source == "folder" else _cinc(tmp_path / "data")
    cfg = tiny_config(
        root, tmp_path / "cache", tmp_path / "run", "linear_probe", f"data.source={source}", epochs=1
    )
    run = run_finetune(cfg)
    final = json.loads((run / "final.json").read_text())
    assert (
        main(["robustness", str(run), "--corruption", "gaussian_noise", "--severity", "1", "--device", "cpu"])
        == 0
    )
    table = pd.read_csv(run / "robustness.csv")
    assert table["severity"].tolist() == [0, 1]
    assert _clean_auroc(table) == pytest.approx(final["test"]["macro_auroc"], abs=1e-6)
    assert "ptbxl_database.csv" not in capsys.readouterr().err


def test_robustness_on_an_external_set_scores_it_as_evaluate_does(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    folder = _folder(tmp_path / "site")
    external = evaluate_external(run, folder, "folder", name="site", device="cpu")
    args = ["robustness", str(run), "--data", str(folder), "--source", "folder", "--name", "site"]
    assert main([*args, "--corruption", "lead_sets", "--severity", "1", "--device", "cpu"]) == 0
    assert "robustness_external_site.csv" in capsys.readouterr().out
    table = pd.read_csv(run / "robustness_external_site.csv")
    assert (run / "robustness_external_site.png").is_file() and not (run / "robustness.csv").exists()
    assert table["n_records"].iloc[0] == external["n_records"]
    assert _clean_auroc(table) == pytest.approx(external["macro_auroc"], abs=1e-6)  # the CSV keeps 6 digits
    assert main(["robustness", str(run), "--source", "folder"]) == 2
    assert "give its folder with --data" in capsys.readouterr().err
