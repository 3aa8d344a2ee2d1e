"""Run checkpoints: never written through a symlink, one message for a full disk, corrupted weights refused
(issue 22, items 1, 4 and 9)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
import torch

from ecgadapt.engine import checkpoints
from ecgadapt.engine.checkpoints import load_checkpoint, save_checkpoint
from ecgadapt.errors import CheckpointError, WriteError


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("keep\n")
    return path


def test_a_symlink_at_the_checkpoint_or_its_old_temporary_name_is_never_written_through(tmp_path, victim):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "last.pt").symlink_to(victim)
    (ckpt / "last.pt.tmp").symlink_to(victim)  # the temporary name of older versions
    save_checkpoint(ckpt / "last.pt", {"w": torch.ones(2)})
    assert victim.read_text() == "keep\n"
    assert not (ckpt / "last.pt").is_symlink() and load_checkpoint(ckpt / "last.pt")["w"].sum() == 2
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "last.pt.tmp"]  # no temporary file of ours


def test_torchs_unexpected_pos_error_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    def failed(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpoints.torch, "save", failed)
    monkeypatch.setattr(checkpoints, "_disk_full", lambda path: True)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(WriteError, match="disk is full.*--resume --out") as info:
        save_checkpoint(path, {"x": torch.zeros(3)})
    assert "unexpected pos" not in str(info.value)
    assert list(path.parent.iterdir()) == []


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "256k"):
    """A real, tiny file system at ``path`` (skips the test where it cannot be mounted: not root, no tmpfs)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)  # lazy: a failing test may hold a file open


def test_a_really_full_disk_gives_one_write_error_and_leaves_no_file(tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        path = disk / "run" / "checkpoints" / "last.pt"
        with pytest.raises(WriteError, match="disk is full") as info:
            save_checkpoint(path, {"w": torch.zeros(200_000)})  # 800 kB on a 256 kB disk
        assert "unexpected pos" not in str(info.value) and str(path) in str(info.value)
        assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("key", "where"),
    [("model", "model.w"), ("ema", "ema.w"), ("optimizer", "optimizer.state.0.exp_avg")],
)
def test_a_run_checkpoint_with_a_non_finite_tensor_is_refused_as_corrupted(tmp_path, key, where):
    state = {"model": {"w": torch.ones(3)}, "ema": {"w": torch.ones(3)}}
    state["optimizer"] = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1}]}
    inner = state[key]["state"][0]["exp_avg"] if key == "optimizer" else state[key]["w"]
    inner[1] = float("nan")
    save_checkpoint(tmp_path / "best.pt", state)
    with pytest.raises(CheckpointError, match="the file is corrupted") as info:
        load_checkpoint(tmp_path / "best.pt")
    message = str(info.value)
    assert where in message and str(tmp_path / "best.pt") in message
    assert "learning rate" not in message


def test_a_minus_infinity_attention_mask_is_no_corruption(tmp_path):
    save_checkpoint(tmp_path / "m.pt", {"model": {"attn_mask": torch.tensor([0.0, float("-inf")])}})
    assert load_checkpoint(tmp_path / "m.pt")["model"]["attn_mask"][1] == float("-inf")
