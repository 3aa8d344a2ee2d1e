"""A PTB-XL folder without the records of the asked rate (ptbxl-2285 has no records500/) is one clear error."""

import shutil
import time
from pathlib import Path

import pytest
from wfdb_fixtures import make_root

from ecgadapt.data.cache import prepare_cache
from ecgadapt.errors import DataError


def test_a_100hz_only_copy_asked_for_500hz_says_so_before_reading_records(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    shutil.rmtree(root / "records500")
    with pytest.raises(DataError) as err:
        prepare_cache(root, 500, cache_dir=tmp_path / "cache", workers=1, progress=False)
    message = str(err.value)
    assert "no records500/ folder" in message and "100 Hz only" in message and "--rate 100" in message
    assert "not found" not in message  # not the header-level error of one record
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("signals.npy"))
    assert prepare_cache(root, 100, cache_dir=tmp_path / "cache", workers=1, progress=False).is_dir()


def test_a_folder_with_no_records_folder_at_all_says_to_fetch_them(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    shutil.rmtree(root / "records500")
    shutil.rmtree(root / "records100")
    with pytest.raises(DataError, match="no records100/ folder.*holds no records folder at all"):
        prepare_cache(root, 100, cache_dir=tmp_path / "cache", workers=1, progress=False)


def test_ptbxl_2285_at_500hz_is_refused_from_its_csv_alone(ptbxl2285: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(
        DataError, match=r"ptbxl-2285 has no records500/ folder.*100 Hz only; pass --rate 100"
    ):
        prepare_cache(ptbxl2285, 500, cache_dir=tmp_path, workers=1, progress=False)
    assert time.perf_counter() - start < 5
