"""Fold-based splits and nested, stratified training-set fractions.

PTB-XL's ``strat_fold`` 1-10 are patient-disjoint and label-stratified. By default folds 1-8 train, 9 validates
and 10 tests; ``rotate_folds(k)`` gives the rotation that tests on fold k and validates on fold k % 10 + 1.
"""

from __future__ import annotations

import numbers

import numpy as np

from ecgadapt.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "val", "test")
FOLDS: tuple[int, ...] = tuple(range(1, 11))


def check_split(split: str) -> str:
    """Return ``split`` if valid, else raise ConfigError listing the valid ones."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def check_folds(test_fold: int, val_fold: int) -> tuple[int, int]:
    """Return ``(test_fold, val_fold)`` if both are distinct folds 1-10, else raise ConfigError."""
    for name, fold in (("test_fold", test_fold), ("val_fold", val_fold)):
        if fold not in FOLDS:
            raise ConfigError(f"{name}={fold!r} is not a PTB-XL strat_fold; use an integer 1-10")
    if test_fold == val_fold:
        raise ConfigError(f"test_fold and val_fold are both {test_fold}; they must differ")
    return int(test_fold), int(val_fold)


def rotate_folds(k: int) -> tuple[int, int]:
    """``(test_fold, val_fold)`` of rotation ``k``: test on fold k, validate on fold k % 10 + 1."""
    if k not in FOLDS:
        raise ConfigError(f"rotation {k!r} is not a fold; use an integer 1-10")
    return int(k), int(k) % 10 + 1


def split_folds(split: str, test_fold: int = 10, val_fold: int = 9) -> tuple[int, ...]:
    """The strat_folds that make up ``split``."""
    check_split(split)
    test_fold, val_fold = check_folds(test_fold, val_fold)
    if split == "test":
        return (test_fold,)
    if split == "val":
        return (val_fold,)
    return tuple(f for f in FOLDS if f not in (test_fold, val_fold))


def split_mask(strat_fold: np.ndarray, split: str, test_fold: int = 10, val_fold: int = 9) -> np.ndarray:
    """Boolean mask of the records (given by their strat_fold) in ``split``."""
    return np.isin(np.asarray(strat_fold), split_folds(split, test_fold, val_fold))


def check_fraction(fraction: float) -> float:
    """Return ``fraction`` if it lies in (0, 1], else raise ConfigError."""
    real = isinstance(fraction, numbers.Real) and not isinstance(fraction, bool)
    if not (real and 0.0 < float(fraction) <= 1.0):
        raise ConfigError(f"fraction={fraction!r} must lie in (0, 1]")
    return float(fraction)


def subsample_size(n: int, fraction: float) -> int:
    """How many of ``n`` records a ``fraction`` keeps (rounded, at least one when n > 0)."""
    fraction = check_fraction(fraction)
    return 0 if n == 0 else min(n, max(1, int(np.floor(fraction * n + 0.5))))


def priority_order(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded ordering of records (rows of a multi-hot ``labels`` (N, C)) whose every prefix is stratified.

    First come a few records that together hold a positive of every class present (rarest class first, each
    the positive that best keeps the proportions), so any prefix at least that long covers every class. The rest follow greedily:
    records are queued by their rarest class in random order, and each step takes the queue head that brings
    the prefix's class counts closest (relative squared error) to the full set's proportions. Prefixes of one
    ordering are nested by construction; the seed fixes every random choice.
    """
    labels = np.asarray(labels, dtype=bool)
    if labels.ndim != 2:
        raise ConfigError(f"labels must be a 2-D multi-hot array, got shape {labels.shape}")
    # A pseudo-class for records without a label keeps them spread too.
    labels = np.concatenate([labels, ~labels.any(axis=1, keepdims=True)], axis=1)
    n, n_classes = labels.shape
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    counts = labels.sum(axis=0)
    rarity = np.argsort(counts, kind="stable")  # rarest first
    y = labels.astype(np.float64)
    share = counts / max(n, 1)
    weight = np.maximum(share, 1.0 / max(n, 1))
    have = np.zeros(n_classes)

    def cost(t: int) -> np.ndarray:
        # Per-class change of sum_c (have_c - (t+1) share_c)^2 / share_c when a record adds one to class c.
        return (2.0 * (have - (t + 1) * share) + 1.0) / weight

    used = np.zeros(n, dtype=bool)
    covered = np.zeros(n_classes, dtype=bool)
    order: list[int] = []
    permuted = labels[perm]
    for c in rarity:
        if counts[c] == 0 or covered[c]:
            continue
        candidates = perm[np.flatnonzero(permuted[:, c] & ~used[perm])]
        pick = int(candidates[np.argmin(y[candidates] @ cost(len(order)))])
        order.append(pick)
        used[pick] = True
        covered |= labels[pick]
        have += y[pick]

    rest = perm[~used[perm]]
    rank = np.empty(n_classes, dtype=np.int64)
    rank[rarity] = np.arange(n_classes)
    stratum = np.where(labels[rest], rank[None, :], n_classes).min(axis=1)
    queues = [rest[stratum == s] for s in np.unique(stratum)]  # each in random order
    pos = np.zeros(len(queues), dtype=np.int64)
    heads = np.array([q[0] for q in queues], dtype=np.int64)
    head_labels = y[heads]
    alive = np.ones(len(queues), dtype=bool)
    for t in range(len(order), n):
        score = np.where(alive, head_labels @ cost(t), np.inf)
        j = int(np.argmin(score))
        r = int(heads[j])
        order.append(r)
        have += y[r]
        pos[j] += 1
        if pos[j] < len(queues[j]):
            heads[j] = queues[j][pos[j]]
            head_labels[j] = y[heads[j]]
        else:
            alive[j] = False
    return np.asarray(order, dtype=np.int64)


def subsample(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted positions of a nested, stratified, seeded ``fraction`` of the records of ``labels`` (N, C)."""
    labels = np.asarray(labels)
    k = subsample_size(len(labels), fraction)
    if k == len(labels):
        return np.arange(len(labels))
    return np.sort(priority_order(labels, seed)[:k])
