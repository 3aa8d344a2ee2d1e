"""Per-split record and class-positive counts of a task, from a source's labels alone (no signal is read)."""

from __future__ import annotations

import os
from pathlib import Path

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
    labeled = y.any(axis=1)
    folds = table["strat_fold"].to_numpy()
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
        "root": str(Path(root)),
        "source": source,
        "task": task,
        "rate": rate,
        "num_classes": len(classes),
        "classes": classes,
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
