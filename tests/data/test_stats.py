"""`data stats` (CSV-only counts per split) and the `prepare ptbxl` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_tasks import HAND_RECORDS, independent_counts
from wfdb_fixtures import make_root

from ecgadapt.cli import main
from ecgadapt.data.cache import default_cache_path, open_cache
from ecgadapt.data.stats import format_stats, split_stats
from ecgadapt.data.tasks import TASKS


@pytest.fixture(scope="module")
def csv_only(ptbxl500: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real subset's two CSVs without any signal file: stats must not need one."""
    root = tmp_path_factory.mktemp("csv_only")
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        shutil.copyfile(ptbxl500 / name, root / name)
    return root


@pytest.mark.parametrize("task", TASKS)
def test_stats_match_independent_counts(csv_only: Path, task: str) -> None:
    stats = split_stats(csv_only, task)
    indep = independent_counts(csv_only, task)
    assert tuple(stats["splits"][s]["records"] for s in ("train", "val", "test")) == HAND_RECORDS[task]
    for split in ("train", "val", "test"):
        assert stats["splits"][split]["records"] == indep[split]["records"]
        assert {c: n for c, n in stats["splits"][split]["positives"].items() if n} == indep[split][
            "positives"
        ]
    assert len(stats["classes"]) == stats["num_classes"] == len(stats["splits"]["train"]["positives"])


def test_dropped_counts_and_rotation(csv_only: Path) -> None:
    stats = split_stats(csv_only, "form")
    # folds hold 58+51+34+42+47+33+44+44 / 81 / 66 rows; the rest of each split has no form statement
    assert [
        stats["splits"][s]["records"] + stats["splits"][s]["dropped_unlabeled"]
        for s in ("train", "val", "test")
    ] == [353, 81, 66]
    rot = split_stats(csv_only, "all", test_fold=1, val_fold=2)
    assert rot["splits"]["test"]["folds"] == [1] and rot["splits"]["test"]["records"] == 58
    assert rot["splits"]["val"]["records"] == 51


def test_table_lists_every_class_and_split(csv_only: Path) -> None:
    text = format_stats(split_stats(csv_only, "superdiagnostic"))
    lines = text.splitlines()
    assert "superdiagnostic (5 classes)" in lines[0]
    assert lines[2].split() == ["records", "352", "72", "64"]
    assert [ln.split()[0] for ln in lines[-5:]] == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert lines[-2].split() == ["NORM", "225", "36", "36"]


def test_cli_data_stats_table_and_json(csv_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "--root", str(csv_only), "--task", "rhythm"]) == 0
    out = capsys.readouterr().out
    assert "rhythm (12 classes)" in out and "AFLT" in out
    assert (
        main(["data", "stats", "--root", str(csv_only), "--task", "rhythm", "--rate", "100", "--json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["rate"] == 100 and data["splits"]["val"]["positives"]["AFLT"] == 5


def test_cli_unknown_task_is_one_clear_error(csv_only: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "--root", str(csv_only), "--task", "diag"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "ecgadapt: error: unknown task 'diag'; valid tasks: all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm"
    )


def test_cli_prepare_ptbxl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path, n_records=4)
    args = [
        "prepare",
        "ptbxl",
        "--root",
        str(root),
        "--rate",
        "500",
        "--cache",
        str(tmp_path / "c"),
        "--workers",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    path = Path(out.out.strip())
    assert path == default_cache_path(root, 500, tmp_path / "c")
    assert open_cache(path).signals.shape == (4, 12, 500)
    assert "prepared 4 records at 500 Hz" in out.err
    assert main(args) == 0
    assert "reusing valid cache" in capsys.readouterr().err


def test_cli_prepare_no_progress_hides_the_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path, n_records=4)
    base = ["prepare", "ptbxl", "--root", str(root), "--rate", "100", "--workers", "1"]
    assert main([*base, "--cache", str(tmp_path / "a")]) == 0
    assert "%|" in capsys.readouterr().err  # the bar, by default
    assert main([*base, "--cache", str(tmp_path / "b"), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert out.err == ""  # no bar and no chatter; the cache path still goes to stdout
    assert Path(out.out.strip()) == default_cache_path(root, 100, tmp_path / "b")


def test_cli_prepare_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "ptbxl", "--root", str(tmp_path / "nope"), "--cache", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_end_to_end_on_synthetic(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ecgadapt.data.dataset import ECGDataset

    assert (
        main(["prepare", "ptbxl", "--root", str(synthetic_root), "--rate", "100", "--cache", str(tmp_path)])
        == 0
    )
    cache = open_cache(Path(capsys.readouterr().out.strip()))
    assert cache.signals.shape == (120, 12, 1000)
    assert main(["data", "stats", "--root", str(synthetic_root), "--task", "superdiagnostic", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    for split in ("train", "val", "test"):
        ds = ECGDataset(cache, "superdiagnostic", split)
        assert len(ds) == stats["splits"][split]["records"]
        assert ds.labels.sum(axis=0).tolist() == list(stats["splits"][split]["positives"].values())


@pytest.mark.parametrize("task", ["form", "superdiagnostic"])
def test_cache_counts_equal_the_labels_counts(synthetic_root: Path, syn_cache_dir: Path, task: str) -> None:
    from ecgadapt.data.cache import load_or_prepare
    from ecgadapt.data.stats import cache_split_stats

    cache = load_or_prepare(synthetic_root, 100, cache_dir=syn_cache_dir, progress=False)
    from_cache, from_labels = cache_split_stats(cache, task), split_stats(synthetic_root, task)
    assert from_cache["splits"] == from_labels["splits"] and from_cache["classes"] == from_labels["classes"]
    assert from_cache["rate"] == 100 and from_cache["source"] == "ptbxl"
