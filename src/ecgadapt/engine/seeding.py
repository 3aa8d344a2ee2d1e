"""Seeding: one seed fixes torch, numpy, Python ``random`` and every DataLoader worker."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgadapt.procs import die_with_parent


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integer ``parts`` (e.g. ``(seed, stage, epoch)``), well mixed."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts] + [len(parts)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also seeds every CUDA device


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: die with the training process (even one killed while this worker was
    starting), and seed numpy and ``random`` from the worker's torch seed."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        die_with_parent(parent.pid)
    worker_seed = torch.initial_seed() % (1 << 32)
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def epoch_generator(seed: int, stage: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffling and worker seeds, fixed by ``(seed, stage, epoch)``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, stage, epoch, 0))
    return g


def seed_epoch(seed: int, stage: int, epoch: int, rank: int = 0) -> None:
    """Reseed the global RNGs at the start of an epoch so that the epoch repeats exactly after a resume.

    Each process of a distributed run (``rank`` > 0) draws its own dropout and masks: rank 0 keeps the seed of a
    one-process run, the others mix their rank in."""
    seed_everything(
        derive_seed(seed, stage, epoch, 1) if rank == 0 else derive_seed(seed, stage, epoch, 1, rank)
    )


def item_seed_base(seed: int, stage: int, epoch: int) -> int:
    """The seed from which every training item of one epoch derives its own (see :class:`SeededItems`)."""
    return derive_seed(seed, stage, epoch, 2)


@contextlib.contextmanager
def isolated_cpu_rng(seed: int) -> Iterator[None]:
    """Inside the block torch's CPU RNG, numpy's and ``random`` are seeded from ``seed``; after it they are back
    where they were (CUDA's RNG is never touched)."""
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


class SeededItems(Dataset):
    """The items of ``dataset``, each drawn under its own seed ``derive_seed(base, index)``.

    A random transform (a crop, a random segment) then gives an item that depends only on the epoch's seed and
    the item's index, not on the process that draws it: the same with 0, 1 or N loader workers, and the
    training process's own RNG (dropout, stochastic depth) is left as it was.
    """

    def __init__(self, dataset: Dataset, base: int) -> None:
        self.dataset, self.base = dataset, int(base)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with isolated_cpu_rng(derive_seed(self.base, int(index))):
            return self.dataset[index]


def cpu_rng_digest() -> str:
    """A digest of torch's CPU RNG, numpy's and ``random``'s states: it changes whenever any of them draws."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    digest = hashlib.sha256(torch.get_rng_state().numpy().tobytes())
    digest.update(np.asarray(keys).tobytes())
    digest.update(repr((kind, pos, has_gauss, gauss, random.getstate())).encode())
    return digest.hexdigest()


def get_rng_state() -> dict:
    """Snapshot of every global RNG, as tensors and plain data (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore a snapshot taken by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
