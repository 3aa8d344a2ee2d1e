"""The environment record of a run (``env.json``): versions, device, git commit, host, time, command line."""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ecgadapt.constants import VERSION
from ecgadapt.fileio import write_json
from ecgadapt.runs.rundir import RunDir, read_json


def git_commit(start: Path | None = None) -> str | None:
    """The git commit of the ecgadapt checkout (None when not a git checkout or git is missing)."""
    start = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(start), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit + ("-dirty" if dirty.stdout.strip() else "") if commit else None


def environment(device: torch.device | str) -> dict:
    """Versions, device, git commit, host, time and command line of this process."""
    dev = torch.device(device)
    env = {
        "ecgadapt": VERSION,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_line": list(sys.argv),
    }
    return env


def write_env(run_dir: Path, device: torch.device | str, resumed: bool = False, world_size: int = 1) -> dict:
    """Write ``env.json``; a resume keeps the first record and appends one under ``resumes``. ``world_size``: the
    number of training processes (torchrun's), each on one ``device``."""
    path = RunDir(run_dir).env
    env = {**environment(device), "world_size": int(world_size)}
    if resumed and path.is_file():
        first = read_json(path)
        first.setdefault("resumes", []).append(env)
        env = first
    write_json(path, env)
    return env
