"""Fingerprints of the files a cache was read from: size and modification time always, SHA-256 under --verify.

The cache writer stores them in ``records.json`` beside the signals; :func:`records_problem` later says which
files changed (deleted, resized, touched, or with other content) since the cache was built.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECORDS_FILE = "records.json"
"""Per record file (``.hea``, ``.dat``) of the source: size, modification time and SHA-256 when the cache was built."""


def stat_records(root: str | os.PathLike, files: list[str]) -> dict[str, list[int]]:
    """``{file: [size, mtime_ns]}`` (``[-1, -1]`` for a missing file): cheap, and changes when a file does."""
    out = {}
    for name in files:
        try:
            st = (Path(root) / name).stat()
            out[name] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[name] = [-1, -1]
    return out


def stats_digest(stats: dict) -> str:
    """SHA-256 of :func:`stat_records`' result: the manifest's one-line summary of every file's state."""
    return hashlib.sha256(json.dumps(stats, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_records(root: str | os.PathLike, files: list[str], workers: int = 4) -> dict[str, str]:
    """``{file: SHA-256}`` of record files (threads: hashing releases the GIL)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return dict(zip(files, pool.map(lambda f: _sha256(Path(root) / f), files)))


def _describe(changed: list[str], what: str) -> str:
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{len(changed)} record file(s) {what} since the cache was built: {shown}"


def records_problem(path: Path, root: str | os.PathLike, manifest: dict, verify: bool = False) -> str | None:
    """What changed in the record files since the cache at ``path`` was built (None when nothing did).

    Sizes and modification times always; with ``verify`` also the content (SHA-256) of every file.
    """
    try:
        saved = json.loads((path / RECORDS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return f"the cache has no readable {RECORDS_FILE} (built by an older ecgadapt)"
    files = list(saved.get("stat", {}))
    now = stat_records(root, files)
    if stats_digest(now) != manifest["fingerprint"].get("records") or now != saved["stat"]:
        changed = []
        for f in files:
            old, new = saved["stat"][f], now[f]
            if new == old:
                continue
            if new[0] < 0:
                changed.append(f"{f} (deleted)")
            elif new[0] != old[0]:
                changed.append(f"{f} (size {old[0]} -> {new[0]} bytes)")
            else:
                changed.append(f"{f} (modified)")
        return (
            _describe(changed, "changed") if changed else "the record files changed since the cache was built"
        )
    if verify:
        hashes = hash_records(root, files)
        changed = [f for f in files if hashes[f] != saved.get("sha256", {}).get(f)]
        if changed:
            return _describe([f"{f} (content differs)" for f in changed], "changed content")
    return None
