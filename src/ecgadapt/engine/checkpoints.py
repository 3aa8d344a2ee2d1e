"""Torch checkpoints: written atomically (a stop signal waits until one is complete), loaded weights-only."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from ecgadapt.errors import CheckpointError
from ecgadapt.fileio import free_bytes, is_write_problem, temp_beside, write_error
from ecgadapt.models.checkpoint import check_finite, load_failure_reason
from ecgadapt.procs import shielded


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomically ``torch.save`` ``state`` to ``path``: into a fresh, exclusively created temporary file beside it
    (never through a symlink planted at ``path`` or at a temporary name), then renamed over ``path``.

    torch writes through a Python file object, so a full disk is the ``OSError`` it is (ENOSPC), not torch's
    "unexpected pos" RuntimeError; either way the message is :func:`~ecgadapt.fileio.write_error`'s.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        with shielded():  # a stop signal waits until the checkpoint is complete
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_beside(path)
            with open(tmp, "wb") as fh:
                torch.save(state, fh)
            os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a failed write as a RuntimeError of its zip writer
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        msg = str(err).lower()
        if isinstance(err, RuntimeError):
            if not any(word in msg for word in _ZIP_WRITE_FAILURES):
                raise
            err = OSError(errno.ENOSPC if "space" in msg or _disk_full(path) else errno.EIO, str(err))
        elif not is_write_problem(err):
            raise
        fix = f"free space on that disk (or move the run), then continue with --resume --out {path.parent.parent}"
        raise write_error(path, err, fix) from None


_ZIP_WRITE_FAILURES = ("write", "space", "unexpected pos")
"""Words of torch's zip-writer errors that mean the file could not be written (e.g. ``unexpected pos 576 vs
534`` when the disk filled up under it)."""


def _disk_full(path: Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < (1 << 20)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; was the run finished (or started)?")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise CheckpointError(f"cannot load checkpoint {path}: {load_failure_reason(path, err)}") from None
    check_finite(state, path, fix=CORRUPT_RUN_FIX)
    return state


CORRUPT_RUN_FIX = (
    "restore it from a copy, or rerun the run (a run writes finite weights only; its training stops when the loss "
    "is not finite)"
)
"""What to do about a run's own checkpoint that holds NaN or infinite values."""
