"""Fixed preprocessing stored in the cache: a model's deterministic transform steps, computed once per record.

Resampling to the model's rate, band-pass and per-record normalisation depend only on the record, never on the
random crop that follows them. :func:`write_preprocessed` runs those steps (the transform's
:meth:`~ecgadapt.data.transforms.Compose.split_deterministic` prefix) once over every row of a cache, through
the one cache writer (:func:`~ecgadapt.data.cache.write_signals_folder`), into
``<cache>/preprocessed/<key>/`` (``signals.npy`` float32 (N, C, T') and ``manifest.json``). The key hashes the
steps' parameters and the numpy and scipy versions that computed them, so a model with another input spec gets
its own folder, and a rebuilt cache replaces its whole folder, variants included. An epoch then only crops, and
its items are bit-identical to computing the steps anew (the stored rows are the steps' own float32 output).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy

from ecgadapt.data.cache import (
    MANIFEST_FILE,
    SIGNALS_FILE,
    ECGCache,
    check_workers,
    make_parent,
    write_signals_folder,
)
from ecgadapt.data.transforms import BandPass, Compose, MinMax, Resample, SelectLeads, Standardize
from ecgadapt.errors import DataError
from ecgadapt.fileio import human_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

PREPROCESSED_DIR = "preprocessed"
PREPROCESSED_FORMAT_VERSION = 1
STEP_PARAMETERS: dict[type, tuple[str, ...]] = {
    SelectLeads: ("indices",),
    Resample: ("src_rate", "dst_rate"),
    BandPass: ("rate", "low", "high", "order"),
    Standardize: ("mode", "eps"),
    MinMax: ("eps",),
}
"""The fixed steps a stored variant may hold, each with the attributes that fix its output."""

log = logging.getLogger(__name__)


def describe_steps(prefix: Compose) -> list[dict] | None:
    """The steps of ``prefix`` with their parameters (JSON), or None when it has no step or one this module does
    not know (a subclass or a user's own transform: its output cannot be keyed, so it is never stored)."""
    steps = []
    for step in prefix.transforms:
        names = STEP_PARAMETERS.get(type(step))
        if names is None:
            return None
        params = {name: getattr(step, name) for name in names}
        steps.append({"step": type(step).__name__, **json.loads(json.dumps(params))})
    return steps or None


def variant_key(steps: list[dict]) -> dict:
    """What a stored variant's rows depend on: the steps and the libraries that compute them."""
    return {
        "format_version": PREPROCESSED_FORMAT_VERSION,
        "steps": steps,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def key_digest(key: dict) -> str:
    """Folder name of the variant with ``key``: 16 hex digits of its canonical JSON's SHA-256."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def base_identity(cache: ECGCache) -> dict:
    """The cache build a variant was computed from (a rebuilt cache has another)."""
    return {"created": cache.manifest.get("created"), "fingerprint": cache.manifest.get("fingerprint")}


class PreprocessedCache:
    """A stored variant: read-only ``signals`` (N, C, T') float32, row for row the cache's rows through ``steps``."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._signals: np.memmap | None = None

    @property
    def signals(self) -> np.memmap:
        """Read-only memory map of the preprocessed rows."""
        if self._signals is None:
            self._signals = np.load(self.path / SIGNALS_FILE, mmap_mode="r")
        return self._signals

    @property
    def steps(self) -> list[dict]:
        """The fixed steps the rows went through, with their parameters."""
        return list(self.manifest["key"]["steps"])

    def __len__(self) -> int:
        return int(self.manifest["shape"][0])

    def __repr__(self) -> str:
        names = " -> ".join(s["step"] for s in self.steps)
        return f"PreprocessedCache({str(self.path)!r}, n={len(self)}, steps={names})"

    def __getstate__(self) -> dict:
        """Pickled (into loader workers) without the memory map: each process reopens it."""
        return {**self.__dict__, "_signals": None}


class RowsThrough:
    """A cache writer's reader: cache row ``int(key)`` of ``signals_path`` through the fixed ``steps``."""

    def __init__(self, signals_path: str, steps: Compose):
        self.signals_path = signals_path
        self.steps = steps
        self._signals: np.memmap | None = None

    def __call__(self, key: str, rate: int) -> np.ndarray:
        if self._signals is None:
            self._signals = np.load(self.signals_path, mmap_mode="r")
        return self.steps(np.array(self._signals[int(key)], dtype=np.float32))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_signals": None}


def preprocessed_path(cache: ECGCache, key: dict) -> Path:
    """Where the variant with ``key`` of ``cache`` lives."""
    return cache.path / PREPROCESSED_DIR / key_digest(key)


def preprocessed_problem(path: str | os.PathLike, cache: ECGCache, key: dict) -> str | None:
    """Why the folder ``path`` cannot serve as ``cache``'s variant with ``key``; None when it can."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        return "not stored yet"
    except (OSError, ValueError) as err:
        return f"unreadable manifest ({err})"
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        return "incomplete"
    if manifest.get("key") != key:
        return "stored for other steps or library versions"
    if manifest.get("base") != base_identity(cache):
        return "stored from another build of the cache"
    try:
        signals = np.load(path / SIGNALS_FILE, mmap_mode="r")
    except (OSError, ValueError) as err:
        return f"unreadable signals ({err})"
    if list(signals.shape) != list(manifest.get("shape", [])) or signals.shape[0] != len(cache):
        return f"holds {signals.shape[0]} rows, the cache {len(cache)}"
    return None


def open_preprocessed(cache: ECGCache, prefix: Compose) -> PreprocessedCache | None:
    """``cache``'s stored variant for the fixed steps ``prefix``, or None when none is stored (or storable)."""
    steps = describe_steps(prefix)
    if steps is None:
        return None
    key = variant_key(steps)
    path = preprocessed_path(cache, key)
    if preprocessed_problem(path, cache, key) is not None:
        return None
    return PreprocessedCache(path, json.loads((path / MANIFEST_FILE).read_text()))


@contextlib.contextmanager
def building(target: Path) -> Iterator[None]:
    """Hold the lock ``.<target name>.lock`` beside ``target`` (waiting for it): one process stores a variant,
    the others wait and then reuse it. The lock file stays (empty); the kernel drops the lock when its holder
    dies."""
    if fcntl is None:  # pragma: no cover - not POSIX: no locking
        yield
        return
    lock = target.parent / f".{target.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"ecgadapt: waiting for another process storing {target}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def write_preprocessed(
    cache: ECGCache, prefix: Compose, workers: int | None = None, progress: bool = True
) -> PreprocessedCache | None:
    """Store every row of ``cache`` through the fixed steps ``prefix`` (once: a valid variant is reused).

    Returns None when ``prefix`` has no step or one that cannot be keyed (see :func:`describe_steps`). A folder
    that cannot be written, or a full disk, is a WriteError naming the fix; the caller may then compute the steps
    per item instead. ``workers`` processes compute rows in parallel (default: all available cores); concurrent
    callers wait for the one that stores it. Storing is always said on stderr; ``progress`` adds a bar.
    """
    steps = describe_steps(prefix)
    if steps is None:
        return None
    key = variant_key(steps)
    target = preprocessed_path(cache, key)
    if preprocessed_problem(target, cache, key) is None:
        log.info("reusing stored preprocessing %s", target)
        return open_preprocessed(cache, prefix)
    workers = check_workers(workers)
    make_parent(target)
    with building(target):
        if preprocessed_problem(target, cache, key) is None:  # another process stored it while we waited
            return open_preprocessed(cache, prefix)
        return _store(cache, prefix, steps, key, target, workers, progress)


def _store(
    cache: ECGCache, prefix: Compose, steps: list[dict], key: dict, target: Path, workers: int, progress: bool
) -> PreprocessedCache:
    """Build the variant ``target`` of ``cache`` through ``prefix`` with the one cache writer."""
    first = prefix(np.array(cache.signals[0], dtype=np.float32))
    if first.ndim != 2:
        raise DataError(f"fixed steps {prefix} give {first.shape} per record, not (leads, samples)")
    shape = (len(cache), *first.shape)
    names = " -> ".join(s["step"] for s in steps)
    size = human_bytes(4 * int(np.prod(shape)))
    print(
        f"ecgadapt: storing the fixed preprocessing ({names}) of {len(cache)} records ({size}) in {target}",
        file=sys.stderr,
    )

    def finish(tmp: Path) -> dict:
        """The variant's manifest (it has no other file)."""
        return {
            "format_version": PREPROCESSED_FORMAT_VERSION,
            "complete": True,
            "key": key,
            "base": base_identity(cache),
            "shape": list(shape),
            "dtype": "float32",
        }

    manifest = write_signals_folder(
        target,
        shape,
        [(row, str(row)) for row in range(len(cache))],
        RowsThrough(str(cache.path / SIGNALS_FILE), prefix),
        cache.rate,
        workers,
        progress,
        f"preprocess {cache.path.name} ({names})",
        finish,
        lambda: preprocessed_problem(target, cache, key) is None,
    )
    if manifest is None:  # a concurrent writer stored it first
        return open_preprocessed(cache, prefix)
    log.info("stored the fixed preprocessing in %s (%.1f s)", target, manifest["seconds"])
    return PreprocessedCache(target, manifest)
