"""``benchmarks/gpu_check.sh --dry-run``: the GPU check's steps on the CPU with tiny sizes, as CI can run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_the_gpu_checks_dry_run_runs_every_step_on_the_cpu_and_writes_its_tables(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "WORK": str(tmp_path / "work"), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "bench_models.json",
        "bench_models.md",
        "cell.json",
        "cell.md",
        "gpu_tests.txt",
        "log.txt",
        "summary.md",
    ]
    summary = (out / "summary.md").read_text()
    assert summary.count("| ok |") == 4 and "(dry run on the CPU, tiny sizes)" in summary
    assert "skipped" in (out / "gpu_tests.txt").read_text()  # no CUDA here: every GPU test skips, none fails
    rows = json.loads((out / "bench_models.json").read_text())["results"]
    assert [r["model"] for r in rows] == ["ecg_vit_tiny", "xresnet1d_tiny"]
    assert all(r["train_samples_s"] > 0 and r["train_gflops"] > r["forward_gflops"] > 0 for r in rows)
    cell = json.loads((out / "cell.json").read_text())
    assert cell["steps"] == 4 and cell["records"] == 200 and cell["val_items_s"] > 0
    grid = cell["grid"]
    assert grid["cells"] == 120 and grid["fits"] > grid["cells"] and grid["seconds"] > 0
    assert "GPU-hours" in (out / "cell.md").read_text()
