"""Run a function in N processes that form a gloo process group, as ``torchrun --nproc_per_node=N`` would.

The processes are forked from the test process, so they start at once (no new interpreter imports torch); each
sets torchrun's variables (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and one
torch thread, as a DataLoader worker does after a fork. A rank's error is written to ``errors/rank{r}.txt``.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

RANK_TIMEOUT_S = 60
"""Seconds a rank waits for the others at a collective before it fails (a dead peer usually fails it at once)."""


def free_port() -> int:
    """A TCP port nobody listens on now (for the process group's store)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(
    fn: Callable[..., Any], rank: int, world_size: int, port: int, errors: Path, args: tuple
) -> None:
    os.environ.update(
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        ECGADAPT_DIST_TIMEOUT_S=str(RANK_TIMEOUT_S),
    )
    import torch

    torch.set_num_threads(1)
    code = 0
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - reported to the test through a file and the exit code
        errors.mkdir(parents=True, exist_ok=True)
        (errors / f"rank{rank}.txt").write_text(f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}")
        code = 1
    os._exit(code)  # the forked copy of pytest must not run its exit handlers


def run_ranks(
    fn: Callable[..., Any], world_size: int, *args: Any, errors: Path, timeout_s: float = 180
) -> list[int | None]:
    """``fn(*args)`` in ``world_size`` forked processes forming a process group; their exit codes (None for a
    process that was still running at ``timeout_s`` and was killed)."""
    import torch._dynamo  # noqa: F401 - AdamW imports it on first use (2 s): once here, not in every rank

    context = multiprocessing.get_context("fork")
    port = free_port()
    procs = [
        context.Process(target=_rank_main, args=(fn, rank, world_size, port, Path(errors), args))
        for rank in range(world_size)
    ]
    for p in procs:
        p.start()
    codes: list[int | None] = []
    for p in procs:
        p.join(timeout_s)
        if p.is_alive():
            p.kill()
            p.join()
            codes.append(None)
        else:
            codes.append(p.exitcode)
    return codes


def rank_errors(errors: Path) -> dict[int, str]:
    """``{rank: first line of its error}`` of the ranks that failed."""
    out = {}
    for path in sorted(Path(errors).glob("rank*.txt")):
        out[int(path.stem.removeprefix("rank"))] = path.read_text().splitlines()[0]
    return out
