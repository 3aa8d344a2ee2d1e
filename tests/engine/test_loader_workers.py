"""DataLoader workers die with the process that trains (issue 22, item 10): ``kill -9`` of a training process
left its loader workers running under PID 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

TRAINER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torch.utils.data import Dataset
    from ecgadapt.engine.loop import make_loader

    class Slow(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
            time.sleep(120)  # a worker busy in a record: torch's own parent check does not run
            return torch.zeros(1)

    for _ in make_loader(Slow(), batch_size=1, num_workers=2):
        pass
    """
)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_loader_workers_of_a_killed_training_process_exit_within_seconds(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            assert trainer.poll() is None, "the training process ended early"
            time.sleep(0.1)
        workers = [int(p.name) for p in tmp_path.iterdir()]
        assert len(workers) == 2 and all(_alive(w) for w in workers)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "loader workers outlived their killed training process"
    finally:
        if trainer.poll() is None:
            trainer.kill()
        for pid in (int(p.name) for p in tmp_path.iterdir()):  # never leave an orphan behind a failed test
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
