"""Fold splits and nested, stratified, seeded training fractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgadapt.data.ptbxl import read_database, read_statements
from ecgadapt.data.splits import (
    priority_order,
    rotate_folds,
    split_folds,
    split_mask,
    subsample,
    subsample_size,
)
from ecgadapt.data.tasks import database_labels
from ecgadapt.errors import ConfigError


def test_default_folds() -> None:
    assert split_folds("train") == (1, 2, 3, 4, 5, 6, 7, 8)
    assert split_folds("val") == (9,)
    assert split_folds("test") == (10,)


@pytest.mark.parametrize("k", range(1, 11))
def test_rotations_partition_the_folds(k: int) -> None:
    test_fold, val_fold = rotate_folds(k)
    assert (test_fold, val_fold) == (k, k % 10 + 1)
    parts = [split_folds(s, test_fold, val_fold) for s in ("train", "val", "test")]
    assert len(parts[0]) == 8
    assert sorted(sum(parts, ())) == list(range(1, 11))


def test_split_mask_selects_by_fold() -> None:
    folds = np.array([1, 9, 10, 3, 9])
    assert split_mask(folds, "val").tolist() == [False, True, False, False, True]
    assert split_mask(folds, "train", test_fold=1, val_fold=2).tolist() == [False, True, True, True, True]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: split_folds("dev"), "valid splits: train, val, test"),
        (lambda: split_folds("test", test_fold=11), "test_fold=11"),
        (lambda: split_folds("test", test_fold=3, val_fold=3), "must differ"),
        (lambda: rotate_folds(0), "rotation 0"),
        (lambda: subsample_size(10, 0.0), r"fraction=0.0 must lie in \(0, 1\]"),
        (lambda: subsample_size(10, 1.5), "fraction=1.5"),
    ],
)
def test_bad_split_arguments(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


def test_subsample_size_rounds_and_keeps_one() -> None:
    assert subsample_size(353, 0.1) == 35
    assert subsample_size(10, 0.25) == 3  # 2.5 rounds up
    assert subsample_size(10, 0.01) == 1
    assert subsample_size(0, 0.5) == 0


def random_labels(n: int = 400, c: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.geomspace(0.4, 0.005, c)
    y = rng.random((n, c)) < p
    y[np.arange(n), rng.integers(0, 2, n)] = True  # every record has a label
    return y.astype(np.uint8)


def test_priority_order_is_a_seeded_permutation() -> None:
    y = random_labels()
    a, b, c = priority_order(y, 0), priority_order(y, 0), priority_order(y, 1)
    assert sorted(a.tolist()) == list(range(len(y)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fractions_are_nested_and_deterministic() -> None:
    y = random_labels()
    for seed in (0, 1, 7):
        subsets = [set(subsample(y, f, seed).tolist()) for f in (0.05, 0.1, 0.3, 0.5, 1.0)]
        for small, big in zip(subsets, subsets[1:]):
            assert small < big
        assert len(subsets[1]) == 40 and len(subsets[-1]) == 400
        np.testing.assert_array_equal(subsample(y, 0.3, seed), subsample(y, 0.3, seed))
    assert set(subsample(y, 0.3, 0).tolist()) != set(subsample(y, 0.3, 1).tolist())


def test_every_present_class_gets_a_positive_as_soon_as_size_allows() -> None:
    y = random_labels(c=10)
    present = y.sum(axis=0) > 0
    for seed in range(5):
        pos = subsample(y, 10 / len(y), seed)  # 10 records, 10 classes
        assert (y[pos].sum(axis=0)[present] > 0).all()


def test_disjoint_strata_are_kept_in_proportion() -> None:
    # 1000 single-label records: 500 / 300 / 150 / 45 / 5 per class.
    y = np.zeros((1000, 5), dtype=np.uint8)
    y[np.arange(1000), np.repeat(np.arange(5), [500, 300, 150, 45, 5])] = 1
    for seed in range(3):
        order = priority_order(y, seed)
        for k in (20, 100, 333, 700):
            counts = y[order[:k]].sum(axis=0)
            assert np.abs(counts - k * y.mean(axis=0)).max() <= 1.5, (seed, k, counts)
            assert (counts > 0).all()


def test_real_subset_fractions_are_closer_to_proportion_than_random(ptbxl500: Path) -> None:
    db, st = read_database(ptbxl500), read_statements(ptbxl500)
    y, _ = database_labels(db, st, "superdiagnostic")
    train = y[split_mask(db["strat_fold"].to_numpy(), "train") & y.any(axis=1)]
    counts = train.sum(axis=0)
    ours, rand = [], []
    for seed in range(10):
        for f in (0.1, 0.3, 0.5):
            k = subsample_size(len(train), f)
            ours.append(np.abs(train[subsample(train, f, seed)].sum(axis=0) - f * counts).max())
            pick = np.random.default_rng(seed).permutation(len(train))[:k]
            rand.append(np.abs(train[pick].sum(axis=0) - f * counts).max())
            assert (train[subsample(train, f, seed)].sum(axis=0) > 0).all()
    assert np.mean(ours) < 0.6 * np.mean(rand), (np.mean(ours), np.mean(rand))
    assert max(ours) <= 6
