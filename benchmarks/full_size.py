"""A full-size synthetic PTB-XL on this machine: generate, prepare, loader throughput, the memo, stored preprocessing.

Issue 23, "Full size, simulated". Every step runs in a fresh child process (``--child``) so that its wall time and
memory are its own; a sampler in this process adds up the memory of the child and its workers every 50 ms.

1. **Generate** ``--records`` synthetic records at 100 and 500 Hz (``write_synthetic_ptbxl``, every core) with PTB-XL
   1.0.3's records per fold (``ptbxl_fold_sizes``: the real 21,799 split exactly at full size).
2. **Prepare** the cache at 100 and 500 Hz (``prepare_cache``, every core): wall time, peak memory, disk use.
3. **Loader**: one training epoch of the fit loop's own loader (``make_loader`` over ``SeededItems``, shuffled,
   batch 64) over folds 1-8, with the model replaced by nothing: items/s with 0, 1 and 2 loader workers, through
   ``--model``'s training transform from the ``--loader-rate`` cache. "computed" is today's path (the transform's
   fixed steps computed per item, remembered by the memo up to ``ECGADAPT_MEMO_MB``, default 1024 MB, or with
   the memo unlimited or off); "stored" reads them from the cache (``data.cache_preprocessing``). Loader workers
   are new processes every epoch (as in the fit loop), each with an empty memo.
4. **Stored preprocessing**: the time and disk its one build takes.

Usage (full size: about 12 GB under ``--work``; check ``df -h /tmp`` first)::

    OMP_NUM_THREADS=1 python benchmarks/full_size.py --records 21799 --work /tmp/ecgadapt-fullsize \\
        --out benchmarks/results/full-size.json --markdown benchmarks/results/full-size.md

``--keep`` keeps the dataset and caches; otherwise ``--work`` is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

BATCH_SIZE = 64
TASK = "all"
DEFAULT_MEMO_MB = 1024.0  # ECGADAPT_MEMO_MB's default
MEMO_LIMITS: dict[str, float] = {"unlimited": 1e9, "off": 0.0}
BYTES_PER_RECORD = 560_000  # records at both rates, both caches and one stored variant (measured: 0.56 MB)


# --- measuring ------------------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _rss_kb(pid: int) -> tuple[int, int]:
    """``(anonymous, file-backed)`` resident kB of ``pid`` (0, 0 once it has ended)."""
    anon = file = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith(("RssFile:", "RssShmem:")):
                    file += int(line.split()[1])
    except OSError:
        pass
    return anon, file


class PeakMemory(threading.Thread):
    """Samples the summed resident memory of a process tree every ``interval`` seconds; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_anon_kb = self.peak_file_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = [_rss_kb(p) for p in _tree(self.pid)]
            self.peak_anon_kb = max(self.peak_anon_kb, sum(a for a, _ in rss))
            self.peak_file_kb = max(self.peak_file_kb, sum(f for _, f in rss))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def disk_bytes(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks, not apparent sizes)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def run_child(name: str, params: dict) -> dict:
    """Run step ``name`` in a new process; its JSON result plus wall time, peak memory and load averages."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--params", json.dumps(params)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampler = PeakMemory(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"step {name} {params} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(
        wall_s=round(time.perf_counter() - start, 2),
        peak_anon_mb=round(sampler.peak_anon_kb / 1024, 1),
        peak_file_mb=round(sampler.peak_file_kb / 1024, 1),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
    )
    print(f"  {name} {params.get('label', '')}: {result['wall_s']:.1f} s", file=sys.stderr)
    return result


def _own_memory() -> dict:
    """This process's peak RSS and its waited-for children's (kB, as the kernel keeps them)."""
    return {
        "maxrss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "maxrss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


# --- the steps (run as children) --------------------------------------------------------------------------


def child_generate(p: dict) -> dict:
    """Write the synthetic dataset."""
    from ecgadapt.data.synthetic import ptbxl_fold_sizes, write_synthetic_ptbxl

    start = time.perf_counter()
    sizes = ptbxl_fold_sizes(p["records"])
    write_synthetic_ptbxl(
        p["root"],
        n_records=p["records"],
        seed=0,
        rates=(100, 500),
        fold_sizes=sizes,
        workers=len(os.sched_getaffinity(0)),
    )
    return {"seconds": time.perf_counter() - start, "fold_sizes": list(sizes), **_own_memory()}


def child_prepare(p: dict) -> dict:
    """Prepare the cache at one rate with every core."""
    from ecgadapt.data.cache import prepare_cache

    start = time.perf_counter()
    path = prepare_cache(p["root"], p["rate"], cache_dir=p["cache_dir"], progress=False)
    return {"seconds": time.perf_counter() - start, "path": str(path), **_own_memory()}


def _transform(cache, model: str, train: bool = True):
    from ecgadapt.data.transforms import build_transforms
    from ecgadapt.models import model_info

    return build_transforms(model_info(model).input_spec, cache.rate, train=train)


def child_store(p: dict) -> dict:
    """Build the stored variant of ``model``'s fixed preprocessing with every core."""
    from ecgadapt.data.cache import open_cache
    from ecgadapt.data.preprocessed import write_preprocessed

    cache = open_cache(p["cache"])
    prefix, _ = _transform(cache, p["model"]).split_deterministic()
    start = time.perf_counter()
    stored = write_preprocessed(cache, prefix, progress=False)
    return {
        "seconds": time.perf_counter() - start,
        "path": str(stored.path),
        "shape": list(stored.signals.shape),
        **_own_memory(),
    }


def child_loader(p: dict) -> dict:
    """Epochs of the fit loop's training loader with a no-op model; items/s and the memo after each epoch."""
    import torch

    from ecgadapt.data.cache import open_cache
    from ecgadapt.data.dataset import ECGDataset
    from ecgadapt.engine.budget import batches_per_epoch
    from ecgadapt.engine.loop import make_loader
    from ecgadapt.engine.seeding import SeededItems, epoch_generator, item_seed_base

    torch.set_num_threads(1)
    cache = open_cache(p["cache"])
    ds = ECGDataset(
        cache,
        TASK,
        "train",
        transform=_transform(cache, p["model"]),
        memo_mb=p["memo_mb"] if p["memo"] == "default" else MEMO_LIMITS[p["memo"]],
        cache_preprocessing=p["path"] == "stored",
    )
    if (p["path"] == "stored") != ds.preprocessing_stored:
        raise RuntimeError(f"asked for the {p['path']} path, the dataset uses the other")
    _, drop_last = batches_per_epoch(len(ds), BATCH_SIZE)
    epochs = []
    for epoch in range(p["epochs"]):
        loader = make_loader(
            SeededItems(ds, item_seed_base(0, 0, epoch)),
            BATCH_SIZE,
            p["workers"],
            shuffle=True,
            generator=epoch_generator(0, 0, epoch),
            drop_last=drop_last,
        )
        start, items = time.perf_counter(), 0
        for x, _ in loader:  # the model: nothing
            items += len(x)
        seconds = time.perf_counter() - start
        anon, file = _rss_kb(os.getpid())
        epochs.append(
            {
                "items": items,
                "seconds": round(seconds, 3),
                "items_per_s": items / seconds,
                "memo_records": len(ds._memo),
                "memo_mb": round(sum(v.nbytes for v in ds._memo.values()) / 1e6, 1),
                "rss_anon_mb": round(anon / 1024, 1),
                "rss_file_mb": round(file / 1024, 1),
            }
        )
    return {"n_items": len(ds), "item_shape": list(ds[0][0].shape), "epochs": epochs, **_own_memory()}


CHILDREN = {
    "generate": child_generate,
    "prepare": child_prepare,
    "store": child_store,
    "loader": child_loader,
}


# --- the benchmark ----------------------------------------------------------------------------------------


def loader_runs(workers: list[int]) -> list[dict]:
    """The loader configurations, in the order they run (the stored ones after the variant is built)."""
    runs = [{"path": "computed", "memo": "default", "workers": 0, "epochs": 2}]
    runs += [
        {"path": "computed", "memo": m, "workers": 0, "epochs": 2 if m == "unlimited" else 1}
        for m in ("unlimited", "off")
    ]
    runs += [{"path": "computed", "memo": "default", "workers": w, "epochs": 1} for w in workers if w > 0]
    runs += [
        {"path": "stored", "memo": "default", "workers": w, "epochs": 2 if w == 0 else 1} for w in workers
    ]
    return runs


def measure(args: argparse.Namespace) -> dict:
    """Every step at ``args.records`` records; the results as one dict."""
    work = Path(args.work)
    root, cache_dir = work / "data", work / "cache"
    work.mkdir(parents=True, exist_ok=True)
    need = args.records * BYTES_PER_RECORD
    free = shutil.disk_usage(work).free
    if free < 1.2 * need:
        raise SystemExit(
            f"{work} has {free / 1e9:.1f} GB free; {args.records} records need about {need / 1e9:.1f} GB"
        )
    results: dict = {
        "records": args.records,
        "model": args.model,
        "loader_rate": args.loader_rate,
        "memo_mb": args.memo_mb,
        "environment": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "python": platform.python_version(),
            "cpu_cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
            "load_start": os.getloadavg(),
        },
    }
    print(f"full-size benchmark: {args.records} records under {work}", file=sys.stderr)
    results["generate"] = run_child("generate", {"root": str(root), "records": args.records})
    results["generate"]["disk"] = {f"records{r}": disk_bytes(root / f"records{r}") for r in (100, 500)}
    results["prepare"] = {}
    for rate in (100, 500):
        step = run_child(
            "prepare", {"root": str(root), "rate": rate, "cache_dir": str(cache_dir), "label": rate}
        )
        step["disk"] = disk_bytes(Path(step["path"]))
        results["prepare"][rate] = step
    cache = results["prepare"][args.loader_rate]["path"]
    common = {"cache": cache, "model": args.model, "memo_mb": args.memo_mb}
    results["loader"] = {"runs": []}
    for run in loader_runs(args.workers):
        if run["path"] == "stored" and "store" not in results:
            results["store"] = run_child("store", {**common, "label": "build"})
            results["store"]["disk"] = disk_bytes(Path(results["store"]["path"]))
        label = f"{run['path']}, memo {run['memo']}, {run['workers']} workers"
        results["loader"]["runs"].append({**run, **run_child("loader", {**common, **run, "label": label})})
    results["environment"]["load_end"] = os.getloadavg()
    return results


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def markdown(r: dict) -> str:
    """The results as Markdown tables."""
    env = r["environment"]
    loads = [r["generate"]["load_before"]] + [s["load_before"] for s in r["prepare"].values()]
    loads += [run["load_before"] for run in r["loader"]["runs"]]
    out = [
        "Seconds are each step's own (a child process's start and imports left out).",
        f"Measured {env['date']} on {env['cpu_cores']} CPU cores, {env['memory_gb']} GB RAM, Python {env['python']}; "
        f"load average (1 min) at the start of each step {min(loads):.1f}-{max(loads):.1f}.",
        "",
        f"**Generate** {r['records']:,} records (folds {', '.join(map(str, r['generate']['fold_sizes']))}) at 100 "
        f"and 500 Hz: {r['generate']['seconds']:.0f} s with every core; records on disk "
        f"{_gb(r['generate']['disk']['records100'])} GB (100 Hz) + {_gb(r['generate']['disk']['records500'])} GB "
        "(500 Hz).",
        "",
        "| prepare | seconds | records/s | peak RSS of one process (MB) | peak memory of all processes, anonymous "
        "/ file pages (MB) | cache on disk (GB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for rate, s in r["prepare"].items():
        largest = max(s["maxrss_self_mb"], s["maxrss_children_mb"])
        out.append(
            f"| {rate} Hz | {s['seconds']:.1f} | {r['records'] / s['seconds']:,.0f} | {largest:,.0f} | "
            f"{s['peak_anon_mb']:,.0f} / {s['peak_file_mb']:,.0f} | {_gb(s['disk'])} |"
        )
    runs = r["loader"]["runs"]
    first = runs[0]
    out += [
        "",
        f"**Loader**: one training epoch ({first['n_items']:,} items of folds 1-8, batch {BATCH_SIZE}, shuffled) of "
        f"`{r['model']}`'s training transform from the {r['loader_rate']} Hz cache (item {'x'.join(map(str, first['item_shape']))}), "
        "model replaced by nothing. Epoch 2 of the memo runs reads what epoch 1 remembered.",
        "",
        "| data path | memo limit | loader workers | epoch 1 items/s | epoch 2 items/s | memo after epoch 1: "
        "records / MB | peak anonymous memory, all processes (MB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        e = run["epochs"]
        second = f"{e[1]['items_per_s']:,.0f}" if len(e) > 1 else ""
        memo = (
            f"{e[0]['memo_records']:,} / {e[0]['memo_mb']:,.0f}"
            if run["workers"] == 0 and run["path"] == "computed"
            else "(in the workers)"
            if run["path"] == "computed"
            else "none needed"
        )
        default = f"{r['memo_mb']:g} MB" + (" (default)" if r["memo_mb"] == DEFAULT_MEMO_MB else "")
        limit = {"default": default, "unlimited": "unlimited", "off": "off (0)"}[run["memo"]]
        out.append(
            f"| {run['path']} | {limit if run['path'] == 'computed' else ''} | {run['workers']} | "
            f"{e[0]['items_per_s']:,.0f} | {second} | {memo} | {run['peak_anon_mb']:,.0f} |"
        )
    if "store" in r:
        s = r["store"]
        out += [
            "",
            f"**Stored preprocessing**: built once in {s['seconds']:.1f} s with every core "
            f"({r['records'] / s['seconds']:,.0f} records/s), {_gb(s['disk'])} GB on disk "
            f"({'x'.join(map(str, s['shape']))} float32).",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=21799, help="synthetic records (21,799: PTB-XL 1.0.3)")
    p.add_argument("--work", default="/tmp/ecgadapt-fullsize", help="where the dataset and caches go")
    p.add_argument("--model", default="st_mem_vit_b75", help="whose input spec the loader serves")
    p.add_argument("--loader-rate", type=int, choices=(100, 500), default=500, help="cache the loader reads")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts")
    p.add_argument(
        "--memo-mb",
        type=float,
        default=DEFAULT_MEMO_MB,
        help="the memo limit of the 'default' runs (below the default: a small dataset that overflows its memo)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    p.add_argument("--keep", action="store_true", help="keep --work (deleted at the end otherwise)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.params))))
        return 0
    try:
        results = measure(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    text = markdown(results)
    print(text)
    for path, content in ((args.out, json.dumps(results, indent=2) + "\n"), (args.markdown, text + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
