"""Bad inputs stop with one clear error naming the record or file and the fix, and leave no cache behind."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from wfdb_fixtures import PTBXL_NAMES, digital, make_root, write_database, write_record

from ecgadapt.data.cache import default_cache_path, open_cache, prepare_cache
from ecgadapt.data.dataset import ECGDataset
from ecgadapt.data.ptbxl import read_database, read_record
from ecgadapt.data.stats import split_stats
from ecgadapt.errors import ConfigError, DataError

FIX = "re-download PTB-XL"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("tpl"), n_records=6)


@pytest.fixture()
def root(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "mini_ptbxl"))


def hr(root: Path, ecg_id: int) -> Path:
    return root / "records500" / "00000" / f"{ecg_id:05d}_hr"


def assert_prepare_fails(root: Path, tmp_path: Path, match: str, workers: int = 2) -> DataError:
    """prepare raises one DataError matching ``match`` and leaves nothing that open_cache accepts."""
    with pytest.raises(DataError, match=match) as exc:
        prepare_cache(root, 500, cache_dir=tmp_path / "cache", workers=workers, progress=False)
    target = default_cache_path(root, 500, tmp_path / "cache")
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    with pytest.raises(DataError):
        open_cache(target)
    return exc.value


def test_missing_dat(root: Path, tmp_path: Path) -> None:
    hr(root, 4).with_suffix(".dat").unlink()
    err = assert_prepare_fails(root, tmp_path, r"record 00004_hr: signal file .*00004_hr\.dat not found")
    assert FIX in str(err)


def test_header_with_11_leads(root: Path, tmp_path: Path) -> None:
    write_record(hr(root, 3).parent, "00003_hr", digital(0, 500, 11), 500, PTBXL_NAMES[:11])
    err = assert_prepare_fails(root, tmp_path, r"record 00003_hr: header .*00003_hr\.hea has 11 leads")
    assert "expected the 12 standard leads" in str(err) and "drop its row from ptbxl_database.csv" in str(err)


def test_missing_lead_name(root: Path) -> None:
    names = list(PTBXL_NAMES)
    names[4] = "AVX"
    base = write_record(hr(root, 2).parent, "00002_hr", digital(0, 500), 500, names)
    with pytest.raises(DataError, match=r"record 00002_hr: .*lacks \(or repeats\) lead\(s\) \['aVL'\]"):
        read_record(base, 500)


def test_truncated_dat(root: Path, tmp_path: Path) -> None:
    dat = hr(root, 5).with_suffix(".dat")
    with open(dat, "r+b") as fh:
        fh.truncate(dat.stat().st_size // 2)
    err = assert_prepare_fails(
        root, tmp_path, r"record 00005_hr: signal file .*00005_hr\.dat is truncated", workers=1
    )
    assert "header needs 12000" in str(err)


def test_truncated_dat_in_another_wfdb_format(tmp_path: Path) -> None:
    base = write_record(tmp_path, "rec", digital(0, 500) // 2, 500, fmt="212")
    with open(base.with_suffix(".dat"), "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(DataError, match="record rec: .*truncated"):
        read_record(base, 500)


def test_record_with_nans(root: Path, tmp_path: Path) -> None:
    d = digital(0, 500)
    d[10:13, 7] = -32768  # format 16's missing-sample value, read as NaN
    write_record(hr(root, 2).parent, "00002_hr", d, 500)
    err = assert_prepare_fails(
        root, tmp_path, r"record 00002_hr: 3 missing \(NaN\) sample\(s\) in lead\(s\) \['V2'\]"
    )
    assert "exclude the record" in str(err)


def test_csv_without_strat_fold(root: Path, tmp_path: Path) -> None:
    with open(root / "ptbxl_database.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    write_database(root, rows, drop=("strat_fold",))
    assert_prepare_fails(root, tmp_path, r"ptbxl_database\.csv lacks column\(s\) \['strat_fold'\]")
    with pytest.raises(DataError, match="strat_fold"):
        split_stats(root, "all")


def test_bad_strat_fold_value(root: Path) -> None:
    with open(root / "ptbxl_database.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[2]["strat_fold"] = "11"
    write_database(root, rows)
    with pytest.raises(DataError, match=r"strat_fold must be an integer 1-10, not for ecg_id\(s\) \[3\]"):
        read_database(root)


def test_missing_csv(root: Path) -> None:
    (root / "scp_statements.csv").unlink()
    with pytest.raises(
        DataError,
        match=r"scp_statements\.csv not found; point --data at a PTB-XL folder",
    ):
        split_stats(root, "all")


def test_unknown_task(root: Path, tmp_path: Path) -> None:
    msg = (
        "unknown task 'superdiag'; valid tasks: all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm"
    )
    with pytest.raises(ConfigError, match=msg):
        split_stats(root, "superdiag")
    c = open_cache(prepare_cache(root, 100, cache_dir=tmp_path, workers=1, progress=False))
    with pytest.raises(ConfigError, match=msg):
        c.labels("superdiag")
    with pytest.raises(ConfigError, match=msg):
        ECGDataset(c, "superdiag", "train")


def test_wrong_sampling_rate_in_header(root: Path, tmp_path: Path) -> None:
    write_record(hr(root, 6).parent, "00006_hr", digital(0, 250), 250)
    err = assert_prepare_fails(
        root, tmp_path, r"record 00006_hr: header .*00006_hr\.hea says 250 Hz but 500 Hz"
    )
    assert "--rate 250" in str(err)


def test_unavailable_rate_requested(root: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"sampling rate 250 is not available in PTB-XL; use one of \[100, 500\]"
    ):
        prepare_cache(root, 250, cache_dir=tmp_path, progress=False)


def test_record_of_another_length(root: Path, tmp_path: Path) -> None:
    write_record(hr(root, 6).parent, "00006_hr", digital(0, 400), 500)
    assert_prepare_fails(
        root, tmp_path, r"record 00006_hr: shape \(12, 400\) differs from the dataset's \(12, 500\)"
    )


def test_open_cache_on_a_folder_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is not an ecgadapt cache \(manifest\.json missing\)"):
        open_cache(tmp_path)
    with pytest.raises(DataError, match="cache folder .* not found; run `ecgadapt prepare ptbxl"):
        open_cache(tmp_path / "nothing")


def test_signals_file_swapped_under_the_manifest(root: Path, tmp_path: Path) -> None:
    path = prepare_cache(root, 100, cache_dir=tmp_path, workers=1, progress=False)
    np.save(path / "signals.npy", np.zeros((2, 12, 100), dtype=np.float32))
    with pytest.raises(
        DataError, match=r"holds float32\[2, 12, 100\], the manifest says float32\[6, 12, 100\]"
    ):
        open_cache(path)


def test_bad_worker_count(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers=0 must be at least 1"):
        prepare_cache(root, 100, cache_dir=tmp_path, workers=0, progress=False)


def test_empty_filename(root: Path, tmp_path: Path) -> None:
    with open(root / "ptbxl_database.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[1]["filename_hr"] = ""
    write_database(root, rows)
    assert_prepare_fails(root, tmp_path, r"filename_hr is empty for ecg_id\(s\) \[2\]")


@pytest.mark.parametrize("likelihood", ["'high'", "None", "[1]"])
def test_non_numeric_likelihood_names_the_ecg_id(tmp_path: Path, likelihood: str) -> None:
    root = make_root(tmp_path, n_records=4)
    db = root / "ptbxl_database.csv"
    rows = list(csv.DictReader(db.open()))
    rows[2]["scp_codes"] = f"{{'NORM': {likelihood}}}"
    write_database(root, rows)
    with pytest.raises(
        DataError, match=r"scp_codes of ecg_id 3 gives code 'NORM' the likelihood .* not a number"
    ):
        read_database(root)
