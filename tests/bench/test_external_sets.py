"""A benchmark's external sets (issue 22, item 6): fingerprinted scores, unique names, folders checked before
anything trains, and a results.csv that a failed external score never costs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ecgadapt.bench.grid import run_benchmark
from ecgadapt.bench.spec import load_spec
from ecgadapt.data.ptbxl import read_database
from ecgadapt.errors import ConfigError, DataError, ECGAdaptError


def copy_fold10(root: Path, dest: Path) -> Path:
    """Copies of ``root``'s fold-10 records at 100 Hz in ``dest`` with a labels CSV; return the CSV."""
    dest.mkdir()
    db = read_database(root)
    db = db[db["strat_fold"] == 10]
    rows = []
    for ecg_id, rel in zip(db["ecg_id"], db["filename_lr"]):
        for ext in (".hea", ".dat"):
            shutil.copyfile(root / f"{rel}{ext}", dest / f"{Path(rel).name}{ext}")
        rows.append({"record": Path(rel).name, "labels": ";".join(db.at[ecg_id, "scp_codes"])})
    pd.DataFrame(rows).to_csv(dest / "labels.csv", index=False)
    return dest / "labels.csv"


def spec(tmp_path: Path, external: list[dict]) -> dict:
    """A one-cell grid on a tiny model with the given external sets."""
    return {
        "name": "ext",
        "models": [
            {"name": "ecg_vit_tiny", "kwargs": {"width": 16, "depth": 1, "heads": 1, "patch_size": 250}}
        ],
        "tasks": ["superdiagnostic"],
        "recipes": ["scratch"],
        "seeds": [0],
        "stage_overrides": {"epochs": 1},
        "overrides": {
            "training.min_steps": 0,
            "training.max_train_batches": 2,
            "training.num_workers": 0,
            "training.batch_size": 16,
            "data.cache_dir": str(tmp_path / "cache"),
        },
        "external": external,
    }


@pytest.mark.parametrize("names", [("copies", "copies"), ("my set", "my_set")])
def test_two_external_sets_with_one_name_are_refused_when_the_spec_is_read(tmp_path, names):
    external = [{"name": n, "data": str(tmp_path / f"d{i}")} for i, n in enumerate(names)]
    with pytest.raises(ConfigError, match="two external sets are named"):
        load_spec(spec(tmp_path, external))


@pytest.mark.parametrize("missing", ["data", "labels"])
def test_a_missing_external_folder_or_labels_stops_the_grid_before_it_trains(
    synthetic_root, tmp_path, missing
):
    folder = tmp_path / "ext"
    labels = copy_fold10(synthetic_root, folder)
    entry = {"name": "copies", "data": str(folder), "source": "folder", "labels": str(labels)}
    entry[missing] = str(tmp_path / "nowhere")
    with pytest.raises((DataError, ConfigError), match="external set 'copies'.*nowhere"):
        run_benchmark(spec(tmp_path, [entry]), synthetic_root, tmp_path / "res", [], progress=False)
    assert not (tmp_path / "res" / "runs").exists()  # nothing trained


def test_external_scores_are_fingerprinted_and_rescored_when_the_entry_or_its_data_change(
    synthetic_root, tmp_path
):
    folder = tmp_path / "ext"
    labels = copy_fold10(synthetic_root, folder)
    entry = {"name": "copies", "data": str(folder), "source": "folder", "labels": str(labels)}
    res = tmp_path / "res"

    def bench(entry: dict) -> tuple[dict, int]:
        run_benchmark(spec(tmp_path, [entry]), synthetic_root, res, [], progress=False)
        (run,) = (res / "runs").iterdir()
        out = run / "external_copies.json"
        return json.loads(out.read_text()), out.stat().st_mtime_ns

    first, written = bench(entry)
    assert first["fingerprint"]["settings"]["labels"] == str(labels.resolve())
    assert bench(entry)[1] == written  # nothing changed: reused

    fewer = tmp_path / "fewer.csv"  # the case: another labels CSV for the same folder
    pd.read_csv(labels).iloc[:-2].to_csv(fewer, index=False)
    changed, written = bench({**entry, "labels": str(fewer)})
    assert changed["fingerprint"]["settings"]["labels"] == str(fewer.resolve())
    assert changed["n_records_total"] == first["n_records_total"] - 2

    first_dat, second_dat = sorted(folder.glob("*.dat"))[:2]  # the data read changes under the same settings
    first_dat.write_bytes(second_dat.read_bytes())
    rescored, _ = bench({**entry, "labels": str(fewer)})
    assert rescored["fingerprint"]["data_sha256"] != changed["fingerprint"]["data_sha256"]


def test_a_failed_external_score_never_costs_results_csv(synthetic_root, tmp_path):
    folder = tmp_path / "ext"
    labels = copy_fold10(synthetic_root, folder)
    none_shared = tmp_path / "none.csv"  # rhythm only: no class of a superdiagnostic run, nothing to score
    pd.read_csv(labels).assign(labels="SR").to_csv(none_shared, index=False)
    entry = {"name": "copies", "data": str(folder), "source": "folder", "labels": str(none_shared)}
    res = tmp_path / "res"
    with pytest.raises(ECGAdaptError, match="external copies"):
        run_benchmark(spec(tmp_path, [entry]), synthetic_root, res, [], progress=False)
    table = pd.read_csv(res / "results.csv")
    assert len(table) == 1 and table["test_macro_auroc"].notna().all()
