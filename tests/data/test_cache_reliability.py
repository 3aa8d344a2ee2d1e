"""Issue 10: record files in the cache's freshness check, --verify by content, and a full or read-only disk."""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from wfdb_fixtures import make_root

from ecgadapt.cli import main
from ecgadapt.data import cache as cache_mod
from ecgadapt.data import sources as sources_mod
from ecgadapt.data.cache import SIGNALS_FILE, cache_problem, default_cache_path, prepare_cache
from ecgadapt.errors import DataError, WriteError


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("mini"), n_records=6)


@pytest.fixture()
def mini(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "mini_ptbxl"))


def _a_dat(root: Path) -> Path:
    return sorted((root / "records100").rglob("*.dat"))[0]


def test_changed_dat_rebuilds_the_cache_saying_which_file(mini, tmp_path, capsys):
    path = prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    dat = _a_dat(mini)
    dat.write_bytes(dat.read_bytes()[:-24])  # truncated: a corrupted record
    problem = cache_problem(path, mini, 100)
    assert problem is not None and dat.name in problem and "size" in problem
    with pytest.raises(
        DataError, match=dat.stem
    ):  # the truncated record cannot be read: the rebuild names it
        prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert "rebuilding cache" in capsys.readouterr().err


def test_deleted_dat_is_named(mini, tmp_path):
    path = prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    dat = _a_dat(mini)
    dat.unlink()
    assert f"{dat.name} (deleted)" in cache_problem(path, mini, 100)


def test_touched_dat_rebuilds(mini, tmp_path):
    path = prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    inode = (path / SIGNALS_FILE).stat().st_ino
    dat = _a_dat(mini)
    st = dat.stat()
    os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert "modified" in cache_problem(path, mini, 100)
    prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert (path / SIGNALS_FILE).stat().st_ino != inode and cache_problem(path, mini, 100) is None


def test_verify_finds_same_size_same_time_content_changes(mini, tmp_path):
    path = prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    dat = _a_dat(mini)
    st = dat.stat()
    data = bytearray(dat.read_bytes())
    data[-1] ^= 0xFF
    dat.write_bytes(bytes(data))
    os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same time: only the content tells
    assert cache_problem(path, mini, 100) is None
    problem = cache_problem(path, mini, 100, verify=True)
    assert problem is not None and dat.name in problem and "content" in problem
    inode = (path / SIGNALS_FILE).stat().st_ino
    assert (
        main(
            [
                "prepare",
                "ptbxl",
                "--root",
                str(mini),
                "--rate",
                "100",
                "--cache",
                str(tmp_path / "c"),
                "--workers",
                "1",
                "--verify",
            ]
        )
        == 0
    )
    assert (path / SIGNALS_FILE).stat().st_ino != inode


Usage = namedtuple("Usage", "total used free")


def test_prepare_checks_free_space_before_writing(mini, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cache_mod, "free_bytes", lambda path: 1000)
    rc = main(
        [
            "prepare",
            "ptbxl",
            "--root",
            str(mini),
            "--rate",
            "100",
            "--cache",
            str(tmp_path / "c"),
            "--workers",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "not enough disk space" in err and "needs" in err and str(tmp_path / "c") in err
    target = default_cache_path(mini, 100, tmp_path / "c")
    assert not target.exists() and list(target.parent.iterdir()) == []


@pytest.mark.parametrize("where", ["allocate", "worker"])
def test_full_disk_while_writing_is_one_message(mini, tmp_path, monkeypatch, where):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "allocate":
        monkeypatch.setattr(cache_mod.os, "posix_fallocate", no_space)
    else:
        monkeypatch.setattr(sources_mod, "read_record", no_space)
    with pytest.raises(WriteError, match="not enough disk space.*needs .* in ") as info:
        prepare_cache(mini, 100, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert "--cache" in str(info.value)
    target = default_cache_path(mini, 100, tmp_path / "c")
    assert list(target.parent.iterdir()) == []  # no temporary folder left


def test_read_only_cache_folder_is_one_message(mini, tmp_path, monkeypatch, capsys):
    real = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    rc = main(
        [
            "prepare",
            "ptbxl",
            "--root",
            str(mini),
            "--rate",
            "100",
            "--cache",
            str(tmp_path / "ro"),
            "--workers",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "read-only" in err and "--cache" in err and "Traceback" not in err
