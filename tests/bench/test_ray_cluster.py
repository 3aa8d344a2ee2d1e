"""README's Ray recipe on this machine: a head node started with ``ray start --head``, then ``ecgadapt benchmark
--executor ray --address HOST:PORT --gpus-per-cell 0.5`` sends each cell there as a task with half a GPU."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from distributed_runs import free_port
from ecgadapt.cli import main

CELLS = [
    "models=[{name: ecg_vit_tiny, kwargs: {width: 16, depth: 1, heads: 1, patch_size: 250}}]",
    "tasks=[superdiagnostic]",
    "seeds=[0]",
    "recipes=[baseline_ft]",
    "fractions=[0.5,1.0]",
    "budget_epochs=null",
    "stage_overrides.epochs=1",
    "training.min_steps=0",
    "training.max_train_batches=1",
    "training.batch_size=16",
    "training.num_workers=0",
    "data.rate=100",
]
"""Two test-sized cells of paper-main."""


def _session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (the head node and every process it started)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # the fields after the name: state, ppid, pgrp, session
                pids.append(int(stat.parent.name))
    return pids


@contextlib.contextmanager
def ray_head(num_cpus: int, num_gpus: int) -> Iterator[str]:
    """A Ray head node on this machine (``ray start --head --block`` in its own session); its address. Every
    process of that session is stopped afterwards."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}"]
    cmd += [f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", f"--temp-dir={temp_dir}", "--block"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats"]
    head = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _session_pids(head.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)
        head.wait(30)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # a Ray head node starts (about 10 s) and each task's worker imports torch
def test_benchmark_cells_run_on_a_ray_cluster_by_its_address_with_a_gpu_share(
    synthetic_root, tmp_path, monkeypatch
):
    # Ray 2.59+ authenticates with a token by default: the head node and the client share one (README's recipe);
    # set before ray is imported, which reads it once
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    pytest.importorskip("ray", reason="ray is not installed (pip install 'ecgadapt[ray]')")
    with ray_head(
        num_cpus=2, num_gpus=1
    ) as address:  # a CPU machine may declare a GPU: cells still run on CPU
        args = [
            "benchmark",
            "--spec",
            "paper-main",
            "--data",
            str(synthetic_root),
            "--out",
            str(tmp_path / "res"),
        ]
        args += [item for cell in CELLS for item in ("--set", cell)]
        args += ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
        args += ["--executor", "ray", "--address", address, "--gpus-per-cell", "0.5", "--no-progress"]
        assert main(args) == 0
    table = pd.read_csv(tmp_path / "res/results.csv")
    assert len(table) == 2 and table["test_macro_auroc"].notna().all()
