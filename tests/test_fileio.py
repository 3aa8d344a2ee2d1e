"""Atomic writers never write through a symlink planted in a run directory (issue 22, item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from ecgadapt.errors import WriteError
from ecgadapt.fileio import atomic_write_text, open_append, save_predictions, write_json


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_text("keep\n")
    return path


def test_a_symlink_at_the_old_temporary_name_is_never_written_through(tmp_path, victim):
    run = tmp_path / "run"
    run.mkdir()
    (run / "final.json.tmp").symlink_to(victim)
    (run / "predictions_test.npz.tmp.npz").symlink_to(victim)
    write_json(run / "final.json", {"a": 1})
    save_predictions(run / "predictions_test.npz", [1], ["A"], np.array([[1]]), np.array([[0.5]]))
    assert victim.read_text() == "keep\n"
    assert (run / "final.json").read_text().strip().startswith("{")
    assert np.load(run / "predictions_test.npz")["y_score"].shape == (1, 1)


def test_a_symlink_at_the_destination_is_replaced_not_followed(tmp_path, victim):
    (tmp_path / "config.yaml").symlink_to(victim)
    atomic_write_text(tmp_path / "config.yaml", "name: x\n")
    assert victim.read_text() == "keep\n"
    assert not (tmp_path / "config.yaml").is_symlink()
    assert (tmp_path / "config.yaml").read_text() == "name: x\n"


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(self, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(tmp_path / "final.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_appending_never_follows_a_symlink(tmp_path, victim):
    (tmp_path / "metrics.csv").symlink_to(victim)
    with pytest.raises(WriteError, match=r"metrics.csv: it is a symlink"):
        open_append(tmp_path / "metrics.csv")
    assert victim.read_text() == "keep\n"
    with open_append(tmp_path / "new.csv") as fh:
        fh.write("a\n")
    assert (tmp_path / "new.csv").read_text() == "a\n"
