"""Per-split record and class-positive counts of a task, from a source's labels alone (no signal is read)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecgadapt.data.ptbxl import check_rate
from ecgadapt.data.sources import scan_source, source_labels
from ecgadapt.data.splits import SPLITS, split_folds, split_mask
from ecgadapt.data.tasks import check_task


def split_stats(
    root: str | os.PathLike,
    task: str,
    *,
    rate: int | None = None,
    test_fold: int = 10,
    val_fold: int = 9,
    source: str = "ptbxl",
    labels: str | os.PathLike | None = None,
) -> dict:
    """Counts per split: records with a label in ``task``, records dropped for having none, positives per class.

    Only the labels are read (PTB-XL's CSVs, CinC headers, a folder's labels CSV); ``rate`` (optional) is checked
    and recorded, since labels do not depend on it.
    """
    check_task(task)
    if rate is not None:
        rate = check_rate(rate)
    src = scan_source(source, root, labels)
    table = src.table
    y, classes = source_labels(
        table["scp_codes"], src.statements, task, src.labels, ids=table["ecg_id"].tolist()
    )
    return {
        "root": str(Path(root)),
        "source": source,
        "task": task,
        "rate": rate,
        **_counts(y, classes, table["strat_fold"].to_numpy(), test_fold, val_fold),
    }


def cache_split_stats(
    cache, task: str, *, test_fold: int = 10, val_fold: int = 9, train_labels: np.ndarray | None = None
) -> dict:
    """:func:`split_stats` of a prepared cache (an :class:`~ecgadapt.data.cache.ECGCache`), from its labels.

    ``train_labels`` (records, classes) replace the training split's counts with those of the records a run
    trains on (a ``fraction`` of them); the dropped count stays the training folds'. A long record cached as
    several rows counts once.
    """
    y, classes = cache.labels(check_task(task))
    ids = cache.index["ecg_id"].to_numpy()
    first = np.r_[True, ids[1:] != ids[:-1]] if len(ids) else np.zeros(0, dtype=bool)
    stats = {
        "root": str(cache.manifest.get("source_root", cache.path)),
        "source": cache.manifest.get("source", "ptbxl"),
        "task": task,
        "rate": int(cache.rate),
        **_counts(y[first], classes, cache.index["strat_fold"].to_numpy()[first], test_fold, val_fold),
    }
    if train_labels is not None:
        train = stats["splits"]["train"]
        train["records"] = int(len(train_labels))
        train["positives"] = {c: int(n) for c, n in zip(classes, np.asarray(train_labels).sum(axis=0))}
    return stats


def _counts(y: np.ndarray, classes: list[str], folds: np.ndarray, test_fold: int, val_fold: int) -> dict:
    """Records with a label, records without one, and positives per class of every split."""
    labeled = y.any(axis=1)
    splits = {}
    for split in SPLITS:
        mask = split_mask(folds, split, test_fold, val_fold)
        pos = y[mask & labeled].sum(axis=0)
        splits[split] = {
            "folds": list(split_folds(split, test_fold, val_fold)),
            "records": int((mask & labeled).sum()),
            "dropped_unlabeled": int((mask & ~labeled).sum()),
            "positives": {c: int(p) for c, p in zip(classes, pos)},
        }
    return {
        "num_classes": len(classes),
        "classes": list(classes),
        "test_fold": test_fold,
        "val_fold": val_fold,
        "splits": splits,
    }


def format_stats(stats: dict) -> str:
    """A plain-text table of :func:`split_stats`: one line per class, one column per split."""
    splits = list(stats["splits"])
    width = max([len("records"), len("dropped (no label)")] + [len(c) for c in stats["classes"]])
    cols = [f"{s} ({','.join(map(str, stats['splits'][s]['folds']))})" for s in splits]
    colw = [max(8, len(c)) for c in cols]

    def line(name: str, values: list) -> str:
        return f"{name:<{width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(values, colw))

    out = [
        f"task {stats['task']} ({stats['num_classes']} classes) of {stats['root']}",
        line("", cols),
        line("records", [stats["splits"][s]["records"] for s in splits]),
        line("dropped (no label)", [stats["splits"][s]["dropped_unlabeled"] for s in splits]),
        "-" * (width + 2 + sum(w + 2 for w in colw) - 2),
    ]
    out += [line(c, [stats["splits"][s]["positives"][c] for s in splits]) for c in stats["classes"]]
    return "\n".join(out)
