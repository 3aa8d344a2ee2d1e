"""Run locks never follow or replace what is not a lock file ecgadapt wrote (issue 22, items 1 and 11)."""

from __future__ import annotations

import os

import pytest

from ecgadapt.errors import ConfigError
from ecgadapt.locks import LOCK_FILE, RunLock, check_unlocked, writes_run_dir


def test_a_lock_symlink_is_refused_and_its_target_is_untouched(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (run / LOCK_FILE).symlink_to(victim)
    with pytest.raises(ConfigError, match=r"is a symlink.*never follows"):
        RunLock(run)
    with pytest.raises(ConfigError, match="is a symlink"):
        check_unlocked(run)
    assert victim.read_text() == "keep\n"
    assert (run / LOCK_FILE).is_symlink()  # not replaced either


def test_a_dangling_lock_symlink_creates_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    target = tmp_path / "would-be-created"
    (run / LOCK_FILE).symlink_to(target)
    with pytest.raises(ConfigError, match="is a symlink"):
        RunLock(run)
    assert not target.exists()


def test_a_lock_directory_is_one_message_not_a_traceback(tmp_path):
    run = tmp_path / "run"
    (run / LOCK_FILE).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"is a directory.*rm -r"):
        RunLock(run)
    with pytest.raises(ConfigError, match="is a directory"):
        check_unlocked(run)


def test_a_command_holding_the_lock_refuses_a_symlink_before_it_writes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (run / LOCK_FILE).symlink_to(victim)
    calls = []

    @writes_run_dir
    def write_something(run_dir):
        calls.append(run_dir)

    with pytest.raises(ConfigError, match="is a symlink"):
        write_something(run)
    assert calls == [] and victim.read_text() == "keep\n"


def test_a_plain_lock_is_taken_holds_the_pid_and_is_removed_on_release(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run) as lock:
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
        assert lock.path == run / LOCK_FILE
    assert not (run / LOCK_FILE).exists()
    check_unlocked(run)


def test_a_full_disk_while_taking_a_lock_names_the_lock_file_and_holds_nothing(tmp_path, monkeypatch):
    """Found by the issue-22 probe: robustness, calibrate and evaluate --data on a full disk said "cannot write
    (output)" (the PID written into .lock failed, naming no file)."""
    import errno

    from ecgadapt.fileio import write_error

    real_write = os.write

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError) as info:
        RunLock(tmp_path)
    monkeypatch.setattr(os, "write", real_write)
    assert info.value.filename == str(tmp_path / LOCK_FILE)
    assert f"cannot write {tmp_path / LOCK_FILE}: the disk is full" in str(
        write_error(info.value.filename, info.value)
    )
    assert not (tmp_path / LOCK_FILE).exists()
    check_unlocked(tmp_path)  # nothing held
