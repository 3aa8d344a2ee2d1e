"""Seeding: derived seeds, RNG snapshots that survive weights-only checkpoints, seeded loaders."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgadapt.engine.loop import make_loader
from ecgadapt.engine.seeding import (
    SeededItems,
    derive_seed,
    epoch_generator,
    get_rng_state,
    seed_epoch,
    set_rng_state,
)


def _draw() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    seeds = {derive_seed(0, s, e) for s in range(3) for e in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**63 for s in seeds)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    seed_epoch(3, 0, 0)
    np.random.randn()  # numpy's cached Gaussian is part of the state
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    expected = _draw()
    _draw()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draw() == expected


def test_seed_epoch_repeats_and_differs_between_epochs():
    seed_epoch(1, 0, 4)
    a = _draw()
    seed_epoch(1, 0, 4)
    assert _draw() == a
    seed_epoch(1, 0, 5)
    assert _draw() != a


class RandomItems(Dataset):
    """Items drawn from torch's RNG inside the (worker) process, like a random crop."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        return torch.tensor([i], dtype=torch.float32), torch.rand(1) + float(np.random.rand())


def _epoch(workers: int, seed: int) -> list:
    loader = make_loader(RandomItems(), 4, workers, shuffle=True, generator=epoch_generator(seed, 0, 0))
    return [(x.flatten().tolist(), y.flatten().tolist()) for x, y in loader]


def test_loader_with_workers_repeats_exactly_for_the_same_epoch_seed():
    assert _epoch(2, 0) == _epoch(2, 0)
    assert _epoch(2, 0) != _epoch(2, 1)


def _seeded_epoch(workers: int, base: int) -> list:
    items = SeededItems(RandomItems(), base)
    loader = make_loader(items, 4, workers, shuffle=True, generator=epoch_generator(0, 0, 0))
    return [(x.flatten().tolist(), y.flatten().tolist()) for x, y in loader]


def test_seeded_items_are_the_same_with_any_number_of_workers():
    assert _seeded_epoch(0, 7) == _seeded_epoch(1, 7) == _seeded_epoch(2, 7)
    assert _seeded_epoch(0, 7) != _seeded_epoch(0, 8)
    assert _epoch(0, 0) != _epoch(2, 0), "unseeded items depend on the workers (what SeededItems is for)"


def test_seeded_items_leave_the_callers_rng_where_it_was():
    seed_epoch(1, 0, 0)
    expected = _draw()
    seed_epoch(1, 0, 0)
    SeededItems(RandomItems(), 3)[5]
    assert _draw() == expected
