"""Pretraining on two gloo processes: rank 0 writes the run, and a killed run resumes at two processes to the
uninterrupted run's encoder and at one process to a finished run (masks are drawn per process, so a run at
another world size is like the 2-process run, not equal to it)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file

from distributed_runs import rank_errors, run_ranks
from ecgadapt.pretrain.config import PretrainConfig
from ecgadapt.pretrain.pretrain import run_pretrain
from tiny_runs import tiny_pretrain_config  # noqa: E402


def _cfg(root: Path, cache_dir: Path) -> PretrainConfig:
    return tiny_pretrain_config(root, cache_dir, epochs=2, batch_size=9)  # 9: split 5 + 4 between the ranks


def _rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as fh:
        return [{k: r[k] for k in ("epoch", "train_loss", "val_loss")} for r in csv.DictReader(fh)]


def _pretrain_killed_after_first_epoch(cfg: PretrainConfig, out: Path) -> None:
    def kill(event: str, row: dict) -> None:
        if event == "epoch_end" and row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    run_pretrain(cfg, out, callbacks=[kill])


def test_two_process_pretraining_resumes_at_two_processes_exactly_and_at_one(
    synthetic_root: Path, tmp_path: Path
) -> None:
    cfg = _cfg(synthetic_root, tmp_path / "corpora")  # no cache yet: rank 0 prepares it, then rank 1 opens it
    errors = tmp_path / "errors"
    assert run_ranks(run_pretrain, 2, cfg, tmp_path / "full", errors=errors) == [0, 0], rank_errors(errors)
    assert {p.name for p in (tmp_path / "full").iterdir()} >= {
        "encoder.safetensors",
        "final.json",
        "metrics.csv",
    }
    final = json.loads((tmp_path / "full/final.json").read_text())
    assert (
        final["steps_per_epoch"] == 3
        and json.loads((tmp_path / "full/env.json").read_text())["world_size"] == 2
    )

    codes = run_ranks(
        _pretrain_killed_after_first_epoch, 2, cfg, tmp_path / "cut", errors=tmp_path / "errors2"
    )
    assert codes[0] == -signal.SIGKILL and codes[1] != 0
    assert len(_rows(tmp_path / "cut")) == 1 and not (tmp_path / "cut/encoder.safetensors").exists()
    shutil.copytree(tmp_path / "cut", tmp_path / "alone")

    assert run_ranks(run_pretrain, 2, cfg, tmp_path / "cut", True, errors=tmp_path / "errors3") == [0, 0]
    full, cut = (
        load_file(tmp_path / "full/encoder.safetensors"),
        load_file(tmp_path / "cut/encoder.safetensors"),
    )
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")

    run_pretrain(cfg, tmp_path / "alone", resume=True)
    alone = load_file(tmp_path / "alone/encoder.safetensors")
    assert alone.keys() == full.keys()
    rows = _rows(tmp_path / "alone")
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == _rows(tmp_path / "full")[0]
    env = json.loads((tmp_path / "alone/env.json").read_text())
    assert [env["world_size"], *(r["world_size"] for r in env["resumes"])] == [2, 1]
