"""A torch Dataset over one task and split of a prepared cache."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ecgadapt.data.cache import ECGCache, open_cache
from ecgadapt.data.preprocessed import write_preprocessed
from ecgadapt.data.splits import check_fraction, split_folds, split_mask, subsample
from ecgadapt.data.tasks import check_task
from ecgadapt.errors import ConfigError, DataError, WriteError

Transform = Callable[[np.ndarray], np.ndarray]
SEGMENTS = ("all", "random")
MEMO_MB = float(os.environ.get("ECGADAPT_MEMO_MB", 1024))  # per dataset (and loader worker): 0 turns it off


class ECGDataset(Dataset):
    """Records of ``split`` that carry a label in ``task``; items are ``(x float32 tensor, y float32 (C,))``.

    ``fraction`` keeps a nested, stratified, seeded subset of the training split. ``rows`` (cache rows) replaces
    the split's folds, e.g. every record of an external dataset. ``transform`` maps the
    (12, T) float32 array to (12, L) or (W, 12, L); random transforms should draw from torch's RNG.

    A long external record is cached as several consecutive rows (segments) sharing its ``ecg_id``. With
    ``segments="all"`` (evaluation) every segment is an item and :func:`record_mean` averages their
    probabilities per record; with ``"random"`` (training) each record is one item, a random segment of it.
    Records of one row (all of PTB-XL) are served exactly as before either way.

    A record's output of the transform's deterministic steps (band-pass, normalisation: everything before the
    first random step) is computed once and remembered, up to ``memo_mb`` megabytes (``ECGADAPT_MEMO_MB``,
    default 1024): later epochs only crop it. With ``cache_preprocessing`` those steps' output of every cache row
    is stored in the cache instead, once per input spec (:mod:`ecgadapt.data.preprocessed`), and read from there by
    every epoch, run and loader worker; where it cannot be stored (a read-only cache, a full disk) the dataset
    warns and falls back to the memo. The items are bit-identical either way.
    """

    def __init__(
        self,
        cache: ECGCache | str | os.PathLike,
        task: str,
        split: str,
        *,
        fraction: float = 1.0,
        seed: int = 0,
        transform: Transform | None = None,
        test_fold: int = 10,
        val_fold: int = 9,
        rows: np.ndarray | None = None,
        segments: str = "all",
        memo_mb: float | None = None,
        cache_preprocessing: bool = False,
    ):
        if segments not in SEGMENTS:
            raise ConfigError(f"segments={segments!r}; use one of {', '.join(SEGMENTS)}")
        self.cache = cache if isinstance(cache, ECGCache) else open_cache(cache)
        self.task = check_task(task)
        self.split = split
        self.fraction = check_fraction(fraction)
        if self.fraction != 1.0 and split != "train":
            raise ConfigError(f"fraction={fraction} applies to the training split only, not to {split!r}")
        self.seed = int(seed)
        self.transform = transform
        self.memo_bytes = int((MEMO_MB if memo_mb is None else memo_mb) * 1e6)
        self._memo: dict[int, np.ndarray] = {}
        self._memo_for: tuple | None = None  # (transform, prefix, rest) the memo holds outputs of
        self._stored: tuple | None = (
            None  # (transform, PreprocessedCache, rest): the fixed steps read from disk
        )
        self.folds = split_folds(split, test_fold, val_fold)
        self.test_fold, self.val_fold = test_fold, val_fold

        y_all, self.class_names = self.cache.labels(task)
        folds = self.cache.index["strat_fold"].to_numpy()
        ids = self.cache.index["ecg_id"].to_numpy(dtype=np.int64)
        first = record_starts(ids)
        keep = (
            split_mask(folds, split, test_fold, val_fold)
            if rows is None
            else np.isin(np.arange(len(folds)), rows)
        )
        rows = np.flatnonzero(keep & y_all.any(axis=1) & first)
        if fraction != 1.0:
            full = rows
            rows = rows[subsample(y_all[rows], fraction, seed)]
            _warn_lost_classes(y_all, full, rows, self.class_names, fraction, task)
        if len(rows) == 0:
            raise DataError(
                f"no record of cache {self.cache.path} has a {task!r} label in split {split!r} "
                f"(strat_fold {list(self.folds)}); use a larger dataset or other folds"
            )
        starts = np.flatnonzero(first)
        n_seg = np.diff(np.r_[starts, len(ids)])[np.searchsorted(starts, rows)]
        self.segments = segments
        if segments == "all" and (n_seg > 1).any():  # every segment an item, in record order
            offsets = np.arange(n_seg.sum()) - np.repeat(np.cumsum(n_seg) - n_seg, n_seg)
            rows = np.repeat(rows, n_seg) + offsets
        self.n_segments = n_seg if segments == "random" else np.ones(len(rows), dtype=np.int64)
        self.rows = rows
        self.labels = np.ascontiguousarray(y_all[rows])
        self.ecg_ids = ids[rows]
        if cache_preprocessing and transform is not None:
            self._stored = stored_preprocessing(self.cache, transform)

    @property
    def preprocessing_stored(self) -> bool:
        """Whether items read the transform's fixed steps from a stored variant of the cache."""
        return self._stored is not None and self._stored[0] is self.transform

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.class_names)

    @property
    def rate(self) -> int:
        """Sampling rate (Hz) of the signals."""
        return self.cache.rate

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def record_ids(self) -> np.ndarray:
        """The ecg_id of each record, in item order (one per record, also when its segments are items)."""
        return self.ecg_ids[record_starts(self.ecg_ids)]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[i]
        if self.n_segments[i] > 1:  # a random segment of a long record (training)
            row += int(torch.randint(0, int(self.n_segments[i]), (1,)).item())
        x = self._prepared(row)
        x = torch.from_numpy(np.array(x, dtype=np.float32, order="C"))  # a copy: the memo is never shared
        return x, torch.from_numpy(self.labels[i].astype(np.float32))

    def __getstate__(self) -> dict:
        """Pickled (e.g. into loader workers) without the memo: each process fills its own."""
        return {**self.__dict__, "_memo": {}, "_memo_for": None}

    def _prepared(self, row: int) -> np.ndarray:
        """Cache row ``row`` through the transform: its deterministic prefix remembered, the rest applied anew."""
        if self.transform is None:
            return np.asarray(self.cache.signals[row], dtype=np.float32)
        if self.preprocessing_stored:
            _, stored, rest = self._stored
            return rest(np.asarray(stored.signals[row]))
        split = getattr(self.transform, "split_deterministic", None)
        if self.memo_bytes <= 0 or split is None:
            return self.transform(np.array(self.cache.signals[row], dtype=np.float32))
        if self._memo_for is None or self._memo_for[0] is not self.transform:  # a new transform: a new memo
            self._memo_for, self._memo = (self.transform, *split()), {}
        _, prefix, rest = self._memo_for
        x = self._memo.get(row)
        if x is None:
            x = prefix(np.array(self.cache.signals[row], dtype=np.float32))
            if (len(self._memo) + 1) * x.nbytes <= self.memo_bytes:
                self._memo[row] = x
        return rest(x)

    def __repr__(self) -> str:
        return (
            f"ECGDataset(task={self.task!r}, split={self.split!r}, n={len(self)}, classes={self.num_classes}, "
            f"fraction={self.fraction}, seed={self.seed}, rate={self.rate})"
        )


def stored_preprocessing(cache: ECGCache, transform: Transform) -> tuple | None:
    """``(transform, stored variant, rest)``: the cache's rows through ``transform``'s fixed steps, stored (once)
    in the cache, and the steps after them; None when the transform has no storable fixed steps, or with a
    warning when the variant cannot be written."""
    split = getattr(transform, "split_deterministic", None)
    if split is None:
        return None
    prefix, rest = split()
    try:
        stored = write_preprocessed(cache, prefix, progress=False)
    except (WriteError, OSError) as err:
        import warnings

        warnings.warn(
            f"the fixed preprocessing cannot be stored in {cache.path} ({err}); computing it per item instead "
            "(remembered up to ECGADAPT_MEMO_MB)",
            UserWarning,
            stacklevel=3,
        )
        return None
    return None if stored is None else (transform, stored, rest)


def record_starts(ecg_ids: np.ndarray) -> np.ndarray:
    """Boolean mask of the items (or cache rows) that start a record: a long record's segments are consecutive
    and share its ``ecg_id``."""
    ids = np.asarray(ecg_ids)
    return np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, dtype=bool)


def record_mean(ecg_ids: np.ndarray, y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_prob)`` of consecutive items sharing an ecg_id (a record's segments) reduced to one row each,
    the probabilities averaged; unchanged when every item is its own record."""
    ids = np.asarray(ecg_ids)
    if len(ids) != len(y_prob):
        raise DataError(f"{len(y_prob)} predictions for {len(ids)} items; the loader must keep every item")
    first = record_starts(ids)
    if first.all():
        return y_true, y_prob
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(ids)])
    mean = np.add.reduceat(y_prob.astype(np.float64), starts, axis=0) / counts[:, None]
    return y_true[starts], mean.astype(y_prob.dtype)


def _warn_lost_classes(
    y: np.ndarray, full: np.ndarray, kept: np.ndarray, classes, fraction: float, task: str
) -> None:
    """Warn, naming them, about classes that have training positives but none in the ``fraction`` kept."""
    lost = [
        c
        for c, before, after in zip(classes, y[full].any(axis=0), y[kept].any(axis=0))
        if before and not after
    ]
    if lost:
        import warnings

        warnings.warn(
            f"fraction={fraction:g} keeps {len(kept)} training records of task {task!r} with no positive of "
            f"{len(lost)} class(es): {', '.join(lost)}; the model cannot learn them (their test scores are "
            "meaningless); use a larger fraction",
            UserWarning,
            stacklevel=3,
        )
