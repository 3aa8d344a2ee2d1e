"""A prepared, memory-mapped copy of a dataset source at one sampling rate, and the one writer that builds it.

:func:`write_cache` reads every record of a :class:`~ecgadapt.data.sources.Source` (PTB-XL, CinC or a labelled
folder) once (in parallel) into ``signals.npy`` (N, 12, T) float32 and writes ``index.csv`` (ecg_id,
patient_id, strat_fold, row, filename, scp_codes), the statement table, ``records.json`` (every record file's
size, modification time and SHA-256) and ``manifest.json``. It builds in a temporary folder beside the target
and renames it into place only when complete, so an interrupted or failing prepare never leaves (or damages) a
cache that ``open_cache`` accepts. :func:`prepare_cache` and :func:`load_or_prepare` are its front door.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd

from ecgadapt.constants import LEADS
from ecgadapt.data.fingerprint import RECORDS_FILE, hash_records, records_problem, stat_records, stats_digest
from ecgadapt.data.ptbxl import DATABASE_CSV, STATEMENTS_CSV, check_rate, read_record
from ecgadapt.data.sources import Source, scan_source, source_labels
from ecgadapt.data.tasks import check_task
from ecgadapt.errors import ConfigError, DataError, WriteError
from ecgadapt.fileio import free_bytes, human_bytes, is_write_problem, write_error, write_json
from ecgadapt.paths import default_cache_dir
from ecgadapt.procs import init_worker, stop_pool

CACHE_FORMAT_VERSION = 1
SIGNALS_FILE = "signals.npy"
INDEX_FILE = "index.csv"
MANIFEST_FILE = "manifest.json"
INDEX_COLUMNS = ("ecg_id", "patient_id", "strat_fold", "row", "filename", "scp_codes")

log = logging.getLogger(__name__)


def default_cache_path(
    root: str | os.PathLike, rate: int, cache_dir: str | os.PathLike | None = None
) -> Path:
    """``<cache_dir>/<root's name>-<hash of its absolute path>/rate<rate>`` (cache_dir defaults to the user cache)."""
    root = Path(root).expanduser().resolve()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name).strip("._") or "root"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / f"{name}-{digest}" / f"rate{check_rate(rate)}"


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _fill(signals_path: str, items: list[tuple[int, str]], rate: int, reader=None) -> int:
    """Read records ``(row, base path)`` with ``reader(base, rate)`` into rows of the signals file; return how many.

    ``reader`` defaults to :func:`read_record` (PTB-XL); other sources pass theirs (a picklable callable), which
    may return several rows (S, 12, T) for one record: they fill rows ``row`` to ``row + S - 1``."""
    reader = read_record if reader is None else reader
    out = np.load(signals_path, mmap_mode="r+")
    try:
        for row, base in items:
            x = reader(base, rate)
            if x.shape[-2:] != out.shape[1:]:
                raise DataError(
                    f"record {Path(base).name}: shape {x.shape} differs from the dataset's {out.shape[1:]} "
                    f"(every record must last as long as the first); exclude it from {DATABASE_CSV}"
                )
            if x.ndim == out.ndim:
                out[row : row + len(x)] = x
            else:
                out[row] = x
    finally:  # no msync: the pages reach the file through the OS page cache, which other processes share
        del out
    return len(items)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def _remove_stale(target: Path) -> None:
    """Remove temporary folders that killed prepares of ``target`` left behind."""
    for tmp in target.parent.glob(f".{target.name}.*-*-*"):
        try:
            pid = int(tmp.name.rsplit("-", 2)[1])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST_FILE
    if not file.is_file():
        raise DataError(f"{path} is not an ecgadapt cache ({MANIFEST_FILE} missing); {_rebuild_hint(path)}")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{file} is unreadable ({err}); {_rebuild_hint(path)}") from err
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        raise DataError(f"{path} is an incomplete cache (interrupted prepare?); {_rebuild_hint(path)}")
    if manifest.get("format_version") != CACHE_FORMAT_VERSION:
        raise DataError(
            f"{path} has cache format {manifest.get('format_version')!r}, this version reads "
            f"{CACHE_FORMAT_VERSION}; {_rebuild_hint(path)}"
        )
    return manifest


def _rebuild_hint(path: Path, manifest: dict | None = None) -> str:
    manifest = manifest or {}
    source = manifest.get("source", "ptbxl")
    root = manifest.get("source_root", "<PTB-XL folder>")
    labels = (manifest.get("summary") or {}).get("labels_csv")
    rate = manifest.get("rate", "<100|500>")
    extra = f" --labels {labels}" if source == "folder" and labels else ""
    return f"delete {path} and run `ecgadapt prepare {source} --data {root}{extra} --rate {rate}`"


class ECGCache:
    """An opened cache: read-only ``signals`` (N, 12, T) float32 memmap, ``index`` (one row per record) and labels."""

    def __init__(self, path: Path, manifest: dict, index: pd.DataFrame, statements: pd.DataFrame):
        self.path = Path(path)
        self.manifest = manifest
        self.index = index
        self.statements = statements
        self.rate = int(manifest["rate"])
        self.root = Path(manifest["source_root"])
        self._signals: np.memmap | None = None
        self._labels: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._row_of = pd.Series(index["row"].to_numpy(), index=index["ecg_id"].to_numpy())

    @property
    def signals(self) -> np.memmap:
        """Read-only memory map of the signals, (N, 12, T) float32 millivolts, leads in ``LEADS`` order."""
        if self._signals is None:
            self._signals = np.load(self.path / SIGNALS_FILE, mmap_mode="r")
        return self._signals

    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, 12, T)."""
        return tuple(self.manifest["shape"])

    @property
    def leads(self) -> tuple[str, ...]:
        """Lead names in the order of axis 1."""
        return tuple(self.manifest["leads"])

    def __len__(self) -> int:
        return int(self.manifest["shape"][0])

    def __repr__(self) -> str:
        return f"ECGCache({str(self.path)!r}, n={len(self)}, rate={self.rate}, root={str(self.root)!r})"

    def labels(self, task: str) -> tuple[np.ndarray, list[str]]:
        """Multi-hot labels (N, C) uint8 aligned to cache rows, and the class names, for a benchmark task."""
        check_task(task)
        if task not in self._labels:
            y, classes = source_labels(
                self.index["scp_codes"],
                self.statements,
                task,
                self.manifest.get("labels", "statements"),
                ids=self.index["ecg_id"].tolist(),
            )
            y.setflags(write=False)
            self._labels[task] = (y, classes)
        y, classes = self._labels[task]
        return y, list(classes)

    def rows_of(self, ecg_ids: np.ndarray | list[int]) -> np.ndarray:
        """Cache rows of the given ecg_ids (DataError naming any id the cache lacks)."""
        ids = np.asarray(ecg_ids, dtype=np.int64)
        missing = ids[~np.isin(ids, self._row_of.index.to_numpy())]
        if len(missing):
            raise DataError(f"ecg_id(s) {missing[:5].tolist()} are not in cache {self.path}")
        return self._row_of.loc[ids].to_numpy(dtype=np.int64)

    def __getstate__(self) -> dict:
        # Pickled into DataLoader workers: never ship the memory map's contents, reopen it there.
        state = self.__dict__.copy()
        state["_signals"] = None
        state["_labels"] = {}
        return state


def open_cache(path: str | os.PathLike) -> ECGCache:
    """Open a complete cache folder written by :func:`prepare_cache` (DataError with the fix otherwise)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(
            f"cache folder {path} not found; run `ecgadapt prepare ptbxl --data <PTB-XL folder> --rate <100|500>`"
        )
    manifest = _read_manifest(path)
    hint = _rebuild_hint(path, manifest)
    try:
        signals = np.load(path / SIGNALS_FILE, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataError(f"{path / SIGNALS_FILE} is missing or unreadable ({err}); {hint}") from err
    if list(signals.shape) != list(manifest["shape"]) or str(signals.dtype) != manifest["dtype"]:
        raise DataError(
            f"{path / SIGNALS_FILE} holds {signals.dtype}{list(signals.shape)}, the manifest says "
            f"{manifest['dtype']}{manifest['shape']}; {hint}"
        )
    try:
        index = pd.read_csv(path / INDEX_FILE)
        statements = pd.read_csv(path / STATEMENTS_CSV, index_col=0)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path} has an unreadable index or statements file ({err}); {hint}") from err
    if list(index.columns) != list(INDEX_COLUMNS) or not np.array_equal(
        index["row"].to_numpy(), np.arange(len(signals))
    ):
        raise DataError(f"{path / INDEX_FILE} does not match {SIGNALS_FILE} row for row; {hint}")
    index["scp_codes"] = [json.loads(s) for s in index["scp_codes"]]
    index["patient_id"] = index["patient_id"].astype("Int64")
    statements.index = statements.index.astype(str)
    for col in ("diagnostic", "form", "rhythm"):
        statements[col] = pd.to_numeric(statements[col], errors="coerce").fillna(0).astype(np.int64)
    cache = ECGCache(path, manifest, index, statements)
    cache._signals = signals
    return cache


def read_manifest(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """``(manifest, None)`` of the cache at ``path``, or ``(None, why it cannot be read)``."""
    if not Path(path).exists():
        return None, "no cache yet"
    try:
        return open_cache(path).manifest, None
    except DataError as err:
        return None, str(err)


def cache_path(source: Source, rate: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``source``'s cache at ``rate`` lives: :func:`default_cache_path`, tagged by the source if it asks."""
    base = default_cache_path(source.root, rate, cache_dir)
    tag = source.cache_tag()
    return base if tag is None else base.parent.with_name(f"{base.parent.name}-{tag}") / base.name


def source_problem(path: str | os.PathLike, source: Source, rate: int, verify: bool = False) -> str | None:
    """Why the cache at ``path`` cannot stand for ``source`` at ``rate``; None when it is valid and current.

    The source's fingerprint (its CSVs or tables) and every record file are compared by size and modification
    time; ``verify`` also compares the record files' content hashes."""
    manifest, problem = read_manifest(path)
    if problem is not None:
        return problem
    if manifest["rate"] != rate:
        return f"cache holds {manifest['rate']} Hz, {rate} Hz requested"
    try:
        current = source.fingerprint()
    except OSError as err:
        return f"source unreadable ({err})"
    if current != {k: v for k, v in manifest["fingerprint"].items() if k != "records"}:
        return source.stale_message
    problem = source.manifest_problem(manifest)
    if problem is not None:
        return problem
    return records_problem(Path(path), source.root, manifest, verify=verify)


def cache_problem(
    path: str | os.PathLike, root: str | os.PathLike, rate: int, verify: bool = False
) -> str | None:
    """:func:`source_problem` for the PTB-XL folder ``root`` (its CSVs and record files)."""
    try:
        source = scan_source("ptbxl", root)
    except DataError as err:
        return f"source unreadable ({err})"
    return source_problem(path, source, rate, verify)


def _say(progress: bool, msg: str) -> None:
    log.info(msg)
    if progress:
        print(f"ecgadapt: {msg}", file=sys.stderr)


def write_cache(
    source: Source,
    rate: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    verify: bool = False,
) -> Path:
    """Read every record of ``source`` at ``rate`` Hz into a cache; return the cache folder.

    A valid cache that matches the source (its fingerprint and record files by size and modification time; with
    ``verify`` also by content hash) is reused as is; otherwise it is rebuilt, saying what changed. ``workers``
    processes read records in parallel (default: all available cores; 1 reads in this process).
    """
    rate = check_rate(rate)
    workers = check_workers(workers)
    root = source.root
    target = cache_path(source, rate, cache_dir)
    identity = source.fingerprint()
    problem = source_problem(target, source, rate, verify=verify)
    if problem is None:
        _say(progress, f"reusing valid cache {target}")
        return target
    if target.exists():
        _say(True, f"rebuilding cache {target}: {problem}")  # always said: the user should know what changed
    make_parent(target)

    index = source.index(rate)
    counts, n_samples = source.layout(rate)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    shape = (int(counts.sum()), len(LEADS), n_samples)
    items = [(int(row), str(root / f)) for row, f in zip(starts, index["filename"])]

    def finish(tmp: Path) -> dict:
        """Write the index, statements and record fingerprints beside the signals; return the manifest."""
        _write_index(tmp / INDEX_FILE, index.loc[index.index.repeat(counts)])
        files = source.record_files(rate)
        stats = stat_records(root, files)
        write_json(tmp / RECORDS_FILE, {"stat": stats, "sha256": hash_records(root, files, workers)})
        source.write_statements(tmp / STATEMENTS_CSV)
        return {
            "format_version": CACHE_FORMAT_VERSION,
            "complete": True,
            "rate": rate,
            "shape": list(shape),
            "dtype": "float32",
            "leads": list(LEADS),
            "units": "mV",
            "source_root": str(root),
            **source.manifest_fields(),
            "fingerprint": {**identity, "records": stats_digest(stats)},
        }

    manifest = write_signals_folder(
        target,
        shape,
        items,
        source.reader(rate),
        rate,
        workers,
        progress,
        f"prepare {root.name} @ {rate} Hz",
        finish,
        lambda: source_problem(target, source, rate, verify=verify) is None,
    )
    if manifest is None:
        _say(progress, f"reusing valid cache {target} (another prepare finished first)")
        return target
    rows = f" ({shape[0]} cache rows: longer records segmented)" if shape[0] > len(index) else ""
    _say(
        progress,
        f"prepared {len(index)} records{rows} at {rate} Hz into {target} ({manifest['seconds']:.1f} s)",
    )
    for note in source.notes():
        _say(progress, note)
    return target


def check_workers(workers: int | None) -> int:
    """``workers`` as a positive int (None: every available core); a ConfigError below 1."""
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ConfigError(f"workers={workers} must be at least 1")
    return workers


def make_parent(target: Path) -> None:
    """Create ``target``'s parent folder (a WriteError naming the fix when it cannot be written) and remove the
    temporary folders that killed writers of ``target`` left there."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_write_problem(err):
            raise write_error(
                target.parent, err, "pass --cache DIR (or set ECGADAPT_CACHE) to a writable folder"
            ) from None
        raise
    _remove_stale(target)


def write_signals_folder(
    target: Path,
    shape: tuple[int, ...],
    items: list[tuple[int, str]],
    reader: Callable[[str, int], np.ndarray] | None,
    rate: int,
    workers: int,
    progress: bool,
    desc: str,
    finish: Callable[[Path], dict],
    is_current: Callable[[], bool],
) -> dict | None:
    """The one cache writer: fill ``signals.npy`` (float32 ``shape``) of a new folder ``target``, atomically.

    ``workers`` processes call ``reader(key, rate)`` for every ``(row, key)`` of ``items`` and write its rows;
    ``finish(tmp)`` then writes the folder's other files and returns its manifest, completed here with
    ``created`` and ``seconds`` and written as ``manifest.json``. The folder is built beside ``target`` and renamed
    into place only when complete; if ``is_current()`` says a concurrent writer finished first, its folder is
    kept and None is returned. A full disk or an unwritable folder is a WriteError naming the fix.
    """
    start = time.perf_counter()
    need = _check_space(target, shape)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()
        signals_path = tmp / SIGNALS_FILE
        np.lib.format.open_memmap(signals_path, mode="w+", dtype=np.float32, shape=shape).flush()
        _allocate(signals_path)  # real blocks now: a full disk is an error here, never a Bus error mid-write
        n_chunks = max(1, min(len(items), workers * 8, math.ceil(len(items) / 4)))
        size = math.ceil(len(items) / n_chunks)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        _read_all(str(signals_path), chunks, rate, workers, progress, desc, reader)
        manifest = {
            **finish(tmp),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - start, 3),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if is_current():  # a concurrent writer finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        _swap_into_place(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_write_problem(err):
            raise _space_error(target, need, err) from None
        raise
    return manifest


def prepare_cache(
    root: str | os.PathLike,
    rate: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    verify: bool = False,
    source: str = "ptbxl",
    labels: str | os.PathLike | None = None,
) -> Path:
    """:func:`write_cache` of the folder ``root`` read as ``source`` (PTB-XL by default; ``labels`` for folders)."""
    rate = check_rate(rate)
    return write_cache(scan_source(source, root, labels), rate, cache_dir, workers, progress, verify)


def _check_space(target: Path, shape: tuple[int, ...]) -> int:
    """Bytes the cache of ``shape`` needs; a DataError saying how much and where when the disk lacks them."""
    need = int(np.prod(shape)) * 4 + (8 << 20)  # signals plus index, statements, manifest
    free = free_bytes(target.parent)
    if free is not None and free < need:
        raise _space_error(target, need, OSError(errno.ENOSPC, "No space left on device"), free)
    return need


def _space_error(target: Path, need: int, err: BaseException, free: int | None = None) -> WriteError:
    if getattr(err, "errno", None) not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return write_error(
            target.parent, err, "pass --cache DIR (or set ECGADAPT_CACHE) to a writable folder"
        )
    free = free_bytes(target.parent) if free is None else free
    have = f"only {human_bytes(free)} free" if free is not None else "not enough free"
    return WriteError(
        f"not enough disk space for the cache {target}: it needs {human_bytes(need)} in {target.parent}, which has "
        f"{have}; free space there or pass --cache DIR (or set ECGADAPT_CACHE) on a disk with room"
    )


def _allocate(path: Path) -> None:
    """Reserve the disk blocks of a freshly created (sparse) file; a no-op where the file system cannot."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not POSIX
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        raise
    finally:
        os.close(fd)


def _init_reader(parent_pid: int) -> None:
    """Initializer of a reader process: die with the parent, and end quietly when the parent stops the pool.

    A reader holds nothing to clean up (the parent removes the temporary folder), so SIGTERM takes its default
    action instead of the command line's ``Interrupted``, whose traceback would bury the real error."""
    init_worker(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _read_all(
    signals_path: str, chunks: list, rate: int, workers: int, progress: bool, desc: str, reader=None
) -> None:
    from tqdm.auto import tqdm

    total = sum(len(c) for c in chunks)
    with tqdm(total=total, desc=desc, unit="rec", disable=not progress, file=sys.stderr) as bar:
        if workers == 1 or len(chunks) == 1:
            for chunk in chunks:
                bar.update(_fill(signals_path, chunk, rate, reader))
            return
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(chunks)), initializer=_init_reader, initargs=(os.getpid(),)
        )  # workers die with this process: a killed prepare leaves none writing
        try:
            pending = {pool.submit(_fill, signals_path, chunk, rate, reader) for chunk in chunks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    bar.update(fut.result())  # re-raises a worker's DataError here
        except BaseException:
            stop_pool(pool)
            raise
        pool.shutdown(wait=True)


def _write_index(path: Path, rows: pd.DataFrame) -> None:
    """``index.csv``: one line per cache row (a long record's rows repeat its line), codes as JSON."""
    index = pd.DataFrame(
        {
            "ecg_id": rows["ecg_id"].to_numpy(dtype=np.int64),
            "patient_id": rows["patient_id"].to_numpy(),
            "strat_fold": rows["strat_fold"].to_numpy(dtype=np.int64),
            "row": np.arange(len(rows), dtype=np.int64),
            "filename": rows["filename"].astype(str).to_numpy(),
            "scp_codes": [json.dumps(c) for c in rows["scp_codes"]],
        }
    )
    index.to_csv(path, index=False)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` folder to ``target``, replacing an old (invalid or stale) cache there."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_or_prepare(
    root: str | os.PathLike,
    rate: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    source: str = "ptbxl",
    labels: str | os.PathLike | None = None,
) -> ECGCache:
    """Open the cache of ``root`` at ``rate``, preparing it first when it is missing or stale.

    ``source`` "cinc" or "folder" (with its ``labels`` CSV) reads that source (:mod:`ecgadapt.data.sources`)."""
    return open_cache(
        prepare_cache(
            root, rate, cache_dir=cache_dir, workers=workers, progress=progress, source=source, labels=labels
        )
    )


def load_source(
    source: str,
    root: str | os.PathLike,
    rate: int,
    labels: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> ECGCache:
    """Scan ``source`` at ``root`` and open its cache at ``rate`` (prepared first when missing or stale)."""
    records = scan_source(source, root, labels, seed)
    return open_cache(write_cache(records, rate, cache_dir, workers, progress))
