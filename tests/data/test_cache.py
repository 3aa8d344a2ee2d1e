"""The prepared cache: contents, reuse, atomicity under interruption, and bitwise agreement with wfdb."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import wfdb
from wfdb_fixtures import make_root, subset_root

from ecgadapt.data import sources as sources_mod
from ecgadapt.data.cache import (
    MANIFEST_FILE,
    SIGNALS_FILE,
    cache_problem,
    default_cache_path,
    load_or_prepare,
    open_cache,
    prepare_cache,
)
from ecgadapt.data.ptbxl import read_database, read_record, record_base
from ecgadapt.errors import DataError


@pytest.fixture(scope="module")
def mini_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("mini"), n_records=12)


@pytest.fixture()
def mini(mini_template: Path, tmp_path: Path) -> Path:
    """A fresh copy per test (tests touch its files)."""
    return Path(shutil.copytree(mini_template, tmp_path / "mini_ptbxl"))


def test_prepare_writes_signals_index_and_manifest(mini: Path, tmp_path: Path) -> None:
    path = prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert path == default_cache_path(mini, 100, tmp_path / "c")
    c = open_cache(path)
    assert c.signals.shape == (12, 12, 100) and c.signals.dtype == np.float32
    assert not c.signals.flags.writeable
    assert c.rate == 100 and c.root == mini.resolve() and len(c) == 12
    assert list(c.index.columns) == ["ecg_id", "patient_id", "strat_fold", "row", "filename", "scp_codes"]
    assert c.index["ecg_id"].tolist() == list(range(1, 13))
    db = read_database(mini)
    for ecg_id in (1, 7, 12):
        row = int(c.rows_of([ecg_id])[0])
        np.testing.assert_array_equal(c.signals[row], read_record(record_base(mini, db, ecg_id, 100), 100))
    m = json.loads((path / MANIFEST_FILE).read_text())
    assert (
        m["complete"] is True and m["rate"] == 100 and m["shape"] == [12, 12, 100] and m["dtype"] == "float32"
    )
    assert m["source_root"] == str(mini.resolve())
    assert m["fingerprint"]["n_records"] == 12 and m["fingerprint"]["ptbxl_database.csv"]["size"] > 0
    y, classes = c.labels("rhythm")
    assert classes == ["AFIB", "SR"] and y.shape == (12, 2) and y.dtype == np.uint8
    assert y[0].tolist() == [0, 1] and y[2].tolist() == [1, 0]  # records 1 and 3 (see wfdb_fixtures.CODES)


def test_two_workers_write_the_same_cache_as_one(mini: Path, tmp_path: Path) -> None:
    a = open_cache(prepare_cache(mini, 500, cache_dir=tmp_path / "a", workers=1, progress=False))
    b = open_cache(prepare_cache(mini, 500, cache_dir=tmp_path / "b", workers=2, progress=False))
    np.testing.assert_array_equal(np.asarray(a.signals), np.asarray(b.signals))
    assert a.index.equals(b.index)


def test_rerun_reuses_a_valid_cache(mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    inode = (path / SIGNALS_FILE).stat().st_ino
    assert prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=True) == path
    assert "reusing valid cache" in capsys.readouterr().err
    assert (path / SIGNALS_FILE).stat().st_ino == inode


def test_changed_source_rebuilds(mini: Path, tmp_path: Path) -> None:
    path = prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    inode = (path / SIGNALS_FILE).stat().st_ino
    csv = mini / "ptbxl_database.csv"
    st = csv.stat()
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_problem(path, mini, 100) == "the source CSVs changed since the cache was built"
    assert prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False) == path
    assert (path / SIGNALS_FILE).stat().st_ino != inode
    assert cache_problem(path, mini, 100) is None


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, n: int, exc: BaseException) -> None:
    real = sources_mod.read_record
    calls = {"n": 0}

    def flaky(base, rate=None):
        calls["n"] += 1
        if calls["n"] > n:
            raise exc
        return real(base, rate)

    monkeypatch.setattr(sources_mod, "read_record", flaky)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("disk on fire")])
def test_interrupted_prepare_leaves_nothing_and_rerun_builds(
    mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    target = default_cache_path(mini, 100, tmp_path)
    _interrupt_after(monkeypatch, 5, exc)
    with pytest.raises(type(exc)):
        prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary folder left either
    with pytest.raises(DataError, match="not found"):
        open_cache(target)
    monkeypatch.undo()
    c = load_or_prepare(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    db = read_database(mini)
    np.testing.assert_array_equal(c.signals[11], read_record(record_base(mini, db, 12, 100), 100))


def test_failing_rebuild_keeps_the_existing_cache(
    mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    before = np.asarray(open_cache(path).signals).copy()
    csv = mini / "ptbxl_database.csv"
    st = csv.stat()
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # stale: prepare will rebuild
    _interrupt_after(monkeypatch, 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    np.testing.assert_array_equal(np.asarray(open_cache(path).signals), before)
    assert sorted(p.name for p in path.parent.iterdir()) == ["rate100"]


def test_incomplete_manifest_is_rejected(mini: Path, tmp_path: Path) -> None:
    path = prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    m = json.loads((path / MANIFEST_FILE).read_text())
    (path / MANIFEST_FILE).write_text(json.dumps({**m, "complete": False}))
    with pytest.raises(DataError, match="incomplete cache"):
        open_cache(path)
    assert "incomplete" in cache_problem(path, mini, 100)
    prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)  # replaced by a valid one
    assert open_cache(path).manifest["complete"] is True


def test_stale_temporary_folders_are_removed(mini: Path, tmp_path: Path) -> None:
    target = default_cache_path(mini, 100, tmp_path)
    dead = target.parent / f".{target.name}.tmp-999999999-abcd1234"
    alive = target.parent / f".{target.name}.tmp-{os.getpid()}-abcd1234"
    dead.mkdir(parents=True)
    alive.mkdir()
    prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    assert not dead.exists() and alive.exists()


def test_default_cache_path_names_root_and_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGADAPT_CACHE", str(tmp_path / "home"))
    a = default_cache_path(tmp_path / "x" / "PTB XL!", 500)
    b = default_cache_path(tmp_path / "y" / "PTB XL!", 500)
    assert a.parent.parent == tmp_path / "home"
    assert a.name == "rate500" and a.parent.name.startswith("PTB_XL-")
    assert a.parent != b.parent  # same folder name, different absolute path


def test_pickled_cache_does_not_carry_the_signals(mini: Path, tmp_path: Path) -> None:
    c = load_or_prepare(mini, 500, cache_dir=tmp_path, workers=1, progress=False)
    _ = c.signals
    blob = pickle.dumps(c)
    assert len(blob) < c.signals.nbytes / 4
    d = pickle.loads(blob)
    np.testing.assert_array_equal(np.asarray(d.signals), np.asarray(c.signals))


def test_rows_of_names_unknown_ids(mini: Path, tmp_path: Path) -> None:
    c = load_or_prepare(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    assert c.rows_of([3, 1]).tolist() == [2, 0]
    with pytest.raises(DataError, match=r"\[99\]"):
        c.rows_of([1, 99])


def _assert_bitwise_wfdb(c, root: Path, n: int) -> None:
    db = read_database(root)
    assert c.signals.shape == (n, 12, 5000)
    for ecg_id, row in zip(c.index["ecg_id"], c.index["row"]):
        ref, _ = wfdb.rdsamp(str(root / db.at[ecg_id, "filename_hr"]))
        np.testing.assert_array_equal(c.signals[row], ref.T.astype(np.float32), err_msg=f"ecg_id {ecg_id}")


def test_real_records_read_back_bitwise_fast(ptbxl500: Path, tmp_path: Path) -> None:
    root = subset_root(ptbxl500, tmp_path, 20)
    c = load_or_prepare(root, 500, cache_dir=tmp_path / "c", workers=2, progress=False)
    _assert_bitwise_wfdb(c, root, 20)


def test_all_500_real_records_read_back_bitwise(ptbxl500: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    c = load_or_prepare(ptbxl500, 500, cache_dir=tmp_path, progress=False)
    prepared = time.perf_counter() - start
    _assert_bitwise_wfdb(c, ptbxl500, 500)
    assert prepared < 30, f"prepare of 500 records at 500 Hz took {prepared:.1f} s"


def test_prepare_that_loses_a_race_keeps_the_winners_cache(
    mini: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sources_mod.read_record
    state = {"nested": False, "inode": None}

    def racing(base, rate=None):
        if not state["nested"]:  # another prepare of the same target completes while this one reads
            state["nested"] = True
            path = prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
            state["inode"] = (path / SIGNALS_FILE).stat().st_ino
        return real(base, rate)

    monkeypatch.setattr(sources_mod, "read_record", racing)
    path = prepare_cache(mini, 100, cache_dir=tmp_path, workers=1, progress=False)
    assert (path / SIGNALS_FILE).stat().st_ino == state["inode"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["rate100"]
    assert cache_problem(path, mini, 100) is None
