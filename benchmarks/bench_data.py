"""Data-layer throughput: prepare (records/s with 1 and 2 workers) and random-access reads, cache vs wfdb.

Usage: python benchmarks/bench_data.py [--root DIR] [--rate 500] [--epochs 3] [--wfdb-reads 500] [--out FILE.json]

Defaults to the first 500 PTB-XL records in ../shared/data/ptbxl-500 at 500 Hz. "prepare" builds a fresh cache
in a temporary folder each time (best of --repeats). The read benchmark visits records in a random order, as a
training loop does: "cache item" is ``ECGDataset.__getitem__`` (memmap row -> float32 tensor + labels),
"cache row" a bare ``np.array(signals[row])``, and "wfdb" is ``wfdb.rdsamp`` on each record's files, converted
the same way (float32, leads first). "training item" is an item through ``ecg_vit_tiny``'s training transform
(resample, band-pass, normalise, random crop), computed each time or with its deterministic steps remembered
from an earlier epoch. Both read from a warm OS page cache (the files were just read or written),
so the comparison measures decoding and per-record overhead rather than the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_prepare(root: Path, rate: int, workers: int, repeats: int) -> dict:
    """Best-of-``repeats`` wall time of a fresh prepare with ``workers`` processes."""
    from ecgadapt.data.cache import prepare_cache

    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            times.append(
                _timed(
                    lambda tmp=tmp: prepare_cache(root, rate, cache_dir=tmp, workers=workers, progress=False)
                )
            )
    return {"seconds": min(times), "all_seconds": times}


def bench_reads(cache, epochs: int, wfdb_reads: int, seed: int) -> dict:
    """Random-order reads per second from the cache (item and bare row) and with wfdb.rdsamp."""
    import wfdb

    from ecgadapt.data.dataset import ECGDataset

    rng = np.random.default_rng(seed)
    ds = ECGDataset(cache, "all", "train")
    rows = cache.index["row"].to_numpy()
    files = [str(cache.root / f) for f in cache.index["filename"]]
    order = [rng.permutation(len(ds)) for _ in range(epochs)]

    def items() -> None:
        for perm in order:
            for i in perm:
                ds[i]

    def bare() -> None:
        for _ in range(epochs):
            for r in rng.permutation(rows):
                np.array(cache.signals[r], dtype=np.float32)

    pick = rng.permutation(len(files))[: min(wfdb_reads, len(files))]

    def with_wfdb() -> None:
        for j in pick:
            sig, _ = wfdb.rdsamp(files[j])
            np.ascontiguousarray(sig.T, dtype=np.float32)

    from ecgadapt.data.transforms import build_transforms
    from ecgadapt.models import create_model

    transform = build_transforms(
        create_model("ecg_vit_tiny", num_classes=1).input_spec, cache.rate, train=True
    )
    fresh = ECGDataset(cache, "all", "train", transform=transform, memo_mb=0)
    memo = ECGDataset(cache, "all", "train", transform=transform)

    def transformed(dataset) -> None:
        for perm in order:
            for i in perm:
                dataset[i]

    with_wfdb()  # warm the page cache and wfdb's imports
    items()
    transformed(memo)  # fills the memo: the timed passes are a training loop's later epochs
    t_items, t_bare, t_wfdb = _timed(items), _timed(bare), _timed(with_wfdb)
    t_fresh, t_memo = _timed(lambda: transformed(fresh)), _timed(lambda: transformed(memo))
    return {
        "train_item_transformed": epochs * len(ds) / t_fresh,
        "train_item_remembered": epochs * len(ds) / t_memo,
        "cache_item": epochs * len(ds) / t_items,
        "cache_row": epochs * len(rows) / t_bare,
        "wfdb": len(pick) / t_wfdb,
        "n_item_reads": epochs * len(ds),
        "n_row_reads": epochs * len(rows),
        "n_wfdb_reads": len(pick),
    }


def main(argv: list[str] | None = None) -> int:
    from ecgadapt.data.cache import load_or_prepare
    from ecgadapt.paths import shared_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(shared_dir() / "data" / "ptbxl-500"), help="PTB-XL folder")
    p.add_argument("--rate", type=int, choices=(100, 500), default=500)
    p.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time prepare with"
    )
    p.add_argument("--repeats", type=int, default=2, help="prepare runs per worker count (best is reported)")
    p.add_argument("--epochs", type=int, default=3, help="random-order passes over the cache")
    p.add_argument("--wfdb-reads", type=int, default=500, help="records read with wfdb (random order)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    root = Path(args.root)

    with tempfile.TemporaryDirectory() as tmp:
        cache = load_or_prepare(root, args.rate, cache_dir=tmp, progress=False)
        n = len(cache)
        prepare = {w: bench_prepare(root, args.rate, w, args.repeats) for w in args.workers}
        reads = bench_reads(cache, args.epochs, args.wfdb_reads, args.seed)

    mb = cache.signals[0].nbytes / 1e6
    speedup_item = reads["cache_item"] / reads["wfdb"]
    speedup_row = reads["cache_row"] / reads["wfdb"]
    lines = [
        f"Data layer, {n} records at {args.rate} Hz ({root}), {mb:.2f} MB per record as float32, "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPU cores",
        "",
        "| operation | records/s | vs wfdb |",
        "|---|---:|---:|",
    ]
    for w, r in prepare.items():
        lines.append(
            f"| prepare, {w} worker{'s' if w > 1 else ''} ({r['seconds']:.2f} s) | {n / r['seconds']:,.0f} | |"
        )
    lines += [
        f"| random read, wfdb.rdsamp | {reads['wfdb']:,.0f} | 1x |",
        f"| random read, cache row (memmap) | {reads['cache_row']:,.0f} | {speedup_row:,.0f}x |",
        f"| random read, ECGDataset item | {reads['cache_item']:,.0f} | {speedup_item:,.0f}x |",
        f"| training item, ecg_vit_tiny transform, computed | {reads['train_item_transformed']:,.0f} | |",
        f"| training item, ecg_vit_tiny transform, remembered | {reads['train_item_remembered']:,.0f} | |",
    ]
    print("\n".join(lines))
    result = {
        "root": str(root),
        "rate": args.rate,
        "n_records": n,
        "prepare_records_per_s": {str(w): n / r["seconds"] for w, r in prepare.items()},
        "prepare_seconds": {str(w): r for w, r in prepare.items()},
        "reads_per_s": reads,
        "speedup_item_vs_wfdb": speedup_item,
        "speedup_row_vs_wfdb": speedup_row,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
