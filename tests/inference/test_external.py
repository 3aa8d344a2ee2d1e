"""External evaluation (``evaluate --data DIR --source ...``) and training on a non-PTB-XL source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgadapt.cli import main
from ecgadapt.data.ptbxl import read_database
from ecgadapt.eval.results import read_final
from ecgadapt.train.finetune import run_finetune
from tiny_runs import tiny_config


@pytest.fixture(scope="module")
def ptbxl500_run(ptbxl500: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test-sized run trained on ptbxl-500 (superdiagnostic, 100 Hz)."""
    tmp = tmp_path_factory.mktemp("ext_run")
    cfg = tiny_config(ptbxl500, tmp / "cache", tmp / "run", "baseline_ft", epochs=1)
    run_finetune(cfg)
    return tmp / "run"


def _copy_fold10(ptbxl500: Path, dest: Path, label_column: str = "statements") -> Path:
    """Copies of ptbxl-500's fold-10 records at 100 Hz plus a labels CSV (no fold column)."""
    db = read_database(ptbxl500)
    db = db[db["strat_fold"] == 10]
    rows = []
    for ecg_id, rel in zip(db["ecg_id"], db["filename_lr"]):
        for ext in (".hea", ".dat"):
            shutil.copyfile(ptbxl500 / f"{rel}{ext}", dest / f"{Path(rel).name}{ext}")
        rows.append({"record": Path(rel).name, "labels": ";".join(db.at[ecg_id, "scp_codes"])})
    pd.DataFrame(rows).to_csv(dest / "labels.csv", index=False)
    return dest / "labels.csv"


def test_evaluate_folder_of_fold10_copies_gives_the_run_test_metrics(
    ptbxl500, ptbxl500_run, tmp_path, capsys
):
    folder = tmp_path / "fold10"
    folder.mkdir()
    labels = _copy_fold10(ptbxl500, folder)
    rc = main(
        ["evaluate", str(ptbxl500_run), "--data", str(folder), "--source", "folder", "--labels", str(labels)]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "shared classes" in out and "external labels without counterpart" in out
    ext = json.loads((ptbxl500_run / "external_fold10.json").read_text())
    test = read_final(ptbxl500_run)["test"]
    assert ext["n_records"] == read_final(ptbxl500_run)["n_records"]["test"]
    assert ext["shared_classes"] == [c["class"] for c in test["per_class"] if c["n_pos"] > 0]
    assert ext["macro_auroc"] == pytest.approx(test["macro_auroc"], abs=1e-12)
    assert ext["macro_auprc"] == pytest.approx(test["macro_auprc"], abs=1e-12)
    per_class = {c["class"]: c for c in test["per_class"]}
    for c in ext["per_class"]:
        assert c["auroc"] == pytest.approx(per_class[c["class"]]["auroc"], abs=1e-12)
        assert c["n_pos"] == per_class[c["class"]]["n_pos"]
    assert (
        ext["bootstrap"]["macro_auroc"]["low"]
        <= ext["macro_auroc"]
        <= ext["bootstrap"]["macro_auroc"]["high"]
    )
    # form-only statements (e.g. ABQRS) mark no superdiagnostic class: they are listed, not dropped
    assert all(isinstance(v, int) and v > 0 for v in ext["external_labels_without_counterpart"].values())
    pred = np.load(ptbxl500_run / "predictions_external_fold10.npz")
    assert pred["y_score"].shape == (ext["n_records"], len(ext["shared_classes"]))


def write_cinc_set(folder: Path) -> Path:
    """Five CinC-layout records (.mat + header with # Dx:), 10 s at 500 Hz, upper-case lead names."""
    from scipy.io import savemat

    folder.mkdir(parents=True)
    names = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
    dx = ["164854000,426783006", "713427006", "164889003,999999999", "270492004", "164854000"]
    rng = np.random.default_rng(0)
    for i, codes in enumerate(dx):
        val = rng.integers(-500, 500, size=(12, 5000)).astype(np.int16)
        savemat(folder / f"E{i:04d}.mat", {"val": val})
        lines = [f"E{i:04d} 12 500 5000"]
        lines += [f"E{i:04d}.mat 16+24 1000/mV 16 0 {val[j, 0]} 0 0 {n}" for j, n in enumerate(names)]
        (folder / f"E{i:04d}.hea").write_text("\n".join([*lines, "# Age: 50", f"# Dx: {codes}"]) + "\n")
    return folder


def test_evaluate_cinc_source_lists_unmapped_codes_and_missing_classes(ptbxl500_run, tmp_path):
    from ecgadapt.inference.external import evaluate_external

    folder = write_cinc_set(tmp_path / "cinc")
    r = evaluate_external(ptbxl500_run, folder, "cinc", name="mini cinc", device="cpu", n_resamples=50)
    assert r["name"] == "mini_cinc" and (ptbxl500_run / "external_mini_cinc.json").is_file()
    assert set(r["shared_classes"]) == {"CD", "NORM"}
    assert set(r["run_classes_without_counterpart"]) == {"HYP", "MI", "STTC"}
    assert r["external_labels_without_counterpart"]["999999999"] == 1  # unmapped SNOMED code, counted
    assert r["class_counts"]["CD"] == 2 and r["class_counts"]["MI"] == 0


def _write_mat(folder: Path, name: str, val: np.ndarray, fs: int = 100) -> None:
    """One WFDB record with a .mat signal file (leads x samples, 1000 units per mV)."""
    from scipy.io import savemat

    savemat(folder / f"{name}.mat", {"val": val.astype(np.int16)})
    names = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
    lines = [f"{name} 12 {fs} {val.shape[1]}"]
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {val[j, 0]} 0 0 {n}" for j, n in enumerate(names)]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


def test_long_external_record_is_scored_on_all_its_windows(ptbxl500_run, tmp_path):
    from ecgadapt.inference.external import evaluate_external

    folder = tmp_path / "long"
    folder.mkdir()
    signal = np.random.default_rng(1).integers(-800, 800, size=(12, 1000))
    _write_mat(folder, "real", signal)  # 10 s
    _write_mat(folder, "flat", np.zeros((12, 1000)))  # 10 s of nothing
    late = np.concatenate([np.zeros((12, 2000)), signal], axis=1)  # 30 s, the signal in its last 10 s
    _write_mat(folder, "late", late)
    _write_mat(folder, "other", np.random.default_rng(2).integers(-800, 800, size=(12, 1000)))
    (folder / "labels.csv").write_text("record,labels\nreal,NORM\nflat,IMI\nlate,NORM\nother,IMI\n")
    r = evaluate_external(ptbxl500_run, folder, "folder", device="cpu", n_resamples=20)
    assert r["n_records"] == r["n_records_total"] == 4  # records, not cache rows
    assert r["class_counts"]["NORM"] == 2 and r["class_counts"]["MI"] == 2
    pred = np.load(ptbxl500_run / "predictions_external_long.npz")
    assert pred["ecg_ids"].tolist() == [1, 2, 3, 4]
    score = dict(zip(["real", "flat", "late", "other"], pred["y_score"].astype(np.float64)))
    # the 30 s record: the mean of its three 10 s windows (two flat, one the real signal), not its central one
    np.testing.assert_allclose(score["late"], (2 * score["flat"] + score["real"]) / 3, rtol=1e-5, atol=1e-7)
    assert np.abs(score["late"] - score["flat"]).max() > 1e-4


def test_finetune_trains_on_a_folder_source(ptbxl500, tmp_path):
    folder = tmp_path / "own"
    folder.mkdir()
    labels = _copy_fold10(ptbxl500, folder)
    n_copies = len(pd.read_csv(labels))
    rng = np.random.default_rng(3)
    for i in range(10):  # 30 s records: one per fold, trained on a random 10 s segment, scored on all three
        _write_mat(folder, f"long{i}", rng.integers(-800, 800, size=(12, 3000)))
    extra = pd.DataFrame({"record": [f"long{i}" for i in range(10)], "labels": "NORM"})
    pd.concat([pd.read_csv(labels), extra]).to_csv(labels, index=False)
    cfg = tiny_config(
        folder, tmp_path / "cache", tmp_path / "run", "baseline_ft", "data.source=folder", epochs=1
    )
    run_finetune(cfg)
    final = read_final(tmp_path / "run")
    assert final["n_records"]["train"] > final["n_records"]["test"] > 0
    for split in ("val", "test"):
        pred = np.load(tmp_path / "run" / f"predictions_{split}.npz")
        assert len(set(pred["ecg_ids"])) == len(pred["ecg_ids"]) == final["n_records"][split]
        assert pred["y_score"].shape[0] == final["n_records"][split]
        assert (pred["ecg_ids"] > n_copies).any()  # a 30 s record is among them


def test_benchmark_spec_external_sets_and_report_section(synthetic_root, tmp_path):
    from ecgadapt.bench.grid import run_benchmark
    from ecgadapt.eval.report import build_report

    folder = tmp_path / "ext"
    folder.mkdir()
    labels = _copy_fold10(synthetic_root, folder)
    spec = {
        "name": "ext-test",
        "models": [
            {"name": "ecg_vit_tiny", "kwargs": {"width": 16, "depth": 1, "heads": 1, "patch_size": 250}}
        ],
        "tasks": ["superdiagnostic"],
        "recipes": ["scratch", "baseline_ft"],
        "seeds": [0],
        "stage_overrides": {"epochs": 1},
        "overrides": {
            "training.min_steps": 0,
            "training.max_train_batches": 2,
            "training.num_workers": 0,
            "training.batch_size": 16,
            "data.cache_dir": str(tmp_path / "cache"),
        },
        "external": [{"name": "copies", "data": str(folder), "source": "folder", "labels": str(labels)}],
    }
    run_benchmark(spec, synthetic_root, tmp_path / "res", [], progress=False)
    runs = sorted((tmp_path / "res" / "runs").glob("*"))
    assert len(runs) == 2 and all((r / "external_copies.json").is_file() for r in runs)
    report = build_report(tmp_path / "res", n_resamples=50)
    assert "External evaluation" in report.sections
    text = report.markdown.read_text()
    assert "external macro AUROC" in text and "A - B" in text
    assert "external ECE before scaling" in text and "external ECE after scaling" in text
    assert any("external_reliability_copies" in str(f) for f in report.figures)  # before/after diagrams
    ext = json.loads((runs[0] / "external_copies.json").read_text())
    assert ext["calibration"]["mode"] == "global" and 0 <= ext["calibration"]["ece_calibrated"] <= 1
