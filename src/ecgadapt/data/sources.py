"""Data sources beside PTB-XL: PhysioNet/CinC 2020/2021 folders and generic labelled WFDB folders.

A source is scanned into a :class:`SourceRecords` table (one row per record: ecg_id, patient_id,
strat_fold, filename, scp_codes) and read through :func:`prepare_source_cache` into the same cache
format as PTB-XL, so :class:`~ecgadapt.data.dataset.ECGDataset`, the transforms, ``finetune`` and
``evaluate`` work on it unchanged.

- ``cinc``: WFDB headers (``.hea``) with ``.mat`` (``val``) or ``.dat`` signals and ``# Dx:`` lines of
  SNOMED-CT codes, mapped to PTB-XL statements by the shipped table ``snomed_ptbxl.csv``. Codes without
  a statement are counted in :attr:`SourceRecords.unmapped`, never dropped silently.
- ``folder``: WFDB records plus a CSV ``record,labels[,fold]``; labels are PTB-XL statement codes or a
  task's class names, separated by ``;``.

Records are read as a user would expect of real-world headers: lead names match case-insensitively and
are reordered by name (extra signals are ignored), gains and units (``mV``, ``uV``, ``V``) come from the
header, and other sampling rates are resampled to the cache rate. A record of up to 10 s is cached as one row
(shorter ones zero-padded right, as the evaluation crop does); a longer one as ``ceil(T / 10 s)`` evenly spaced
10 s segments covering it (first at its start, last at its end, as ``predict``'s windows), consecutive cache
rows sharing its ``ecg_id``. :class:`~ecgadapt.data.dataset.ECGDataset` trains on a random segment of such a
record and evaluates every segment, averaging their probabilities per record as ``predict`` does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ecgadapt import LEADS
from ecgadapt.data.ptbxl import STATEMENTS_CSV, Header, _read_simple, _read_wfdb, check_rate, read_header
from ecgadapt.data.splits import priority_order
from ecgadapt.data.tasks import TASKS, statement_map, task_classes
from ecgadapt.data.transforms import CenterCrop, FixedWindows, Resample
from ecgadapt.errors import ConfigError, DataError

SOURCES: tuple[str, ...] = ("ptbxl", "cinc", "folder")
MAPPING_FILE = "snomed_ptbxl.csv"
STATEMENTS_FILE = "ptbxl_statements.csv"
MAPPING_COLUMNS = ("snomed_code", "abbreviation", "term", "ptbxl_statement", "relation", "source")
DURATION_S = 10.0  # cache length of source records (PTB-XL's record length)
N_FOLDS = 10
UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nv": 1e-6}


def check_source(source: str) -> str:
    """Return ``source`` if it names a data source, else raise ConfigError listing the valid ones."""
    if source not in SOURCES:
        raise ConfigError(f"unknown data source {source!r}; valid sources: {', '.join(SOURCES)}")
    return source


# --- shipped tables ------------------------------------------------------------------------------------


def _package_file(name: str) -> Path:
    return Path(str(resources.files("ecgadapt.data") / name))


def ptbxl_statements() -> pd.DataFrame:
    """PTB-XL's statement attributes (shipped ``ptbxl_statements.csv``), shaped like ``read_statements``."""
    df = pd.read_csv(_package_file(STATEMENTS_FILE), index_col=0, keep_default_na=False, na_values=[""])
    df.index = df.index.astype(str)
    df.index.name = None
    for col in ("diagnostic", "form", "rhythm"):
        df[col] = df[col].astype(np.int64)
    return df.sort_index()


def load_mapping() -> pd.DataFrame:
    """The shipped SNOMED-CT -> PTB-XL statement table, one row per (code, statement); empty statement: none."""
    df = pd.read_csv(_package_file(MAPPING_FILE), dtype=str, keep_default_na=False)
    if tuple(df.columns) != MAPPING_COLUMNS:
        raise DataError(f"{MAPPING_FILE} has columns {list(df.columns)}, expected {list(MAPPING_COLUMNS)}")
    unknown = sorted(set(df["ptbxl_statement"]) - set(ptbxl_statements().index) - {""})
    if unknown:
        raise DataError(f"{MAPPING_FILE} maps to statement(s) {unknown} that PTB-XL does not define")
    return df


def snomed_map(mapping: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """SNOMED code -> the PTB-XL statements it stands for (codes mapped to none are absent)."""
    mapping = load_mapping() if mapping is None else mapping
    out: dict[str, list[str]] = {}
    for code, stmt in zip(mapping["snomed_code"], mapping["ptbxl_statement"]):
        if stmt:
            out.setdefault(code, []).append(stmt)
    return out


def class_coverage(task: str, mapping: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """For each class of ``task``: the SNOMED codes that map to it (an empty list: no counterpart)."""
    statements = ptbxl_statements()
    to_class = statement_map(statements, task)
    out: dict[str, list[str]] = {c: [] for c in task_classes(statements, task)}
    for code, stmts in snomed_map(mapping).items():
        for s in stmts:
            if s in to_class:
                out[to_class[s]].append(code)
    return out


# --- labels of cached sources ----------------------------------------------------------------------------


def class_labels(
    label_sets: list[dict], statements: pd.DataFrame, task: str
) -> tuple[np.ndarray, list[str], Counter]:
    """Multi-hot labels over ``task``'s classes from records labelled by class names; Counter of other names."""
    classes = task_classes(statements, task)
    col = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(label_sets), len(classes)), dtype=np.uint8)
    other: Counter = Counter()
    for i, names in enumerate(label_sets):
        for name in names:
            if name in col:
                y[i, col[name]] = 1
            else:
                other[name] += 1
    return y, classes, other


def unmatched_labels(label_sets: list[dict], statements: pd.DataFrame, task: str, kind: str) -> Counter:
    """Labels of the records (statements or class names) that mark no class of ``task``, with their counts."""
    if kind == "classes":
        return class_labels(label_sets, statements, task)[2]
    mapping = statement_map(statements, task)
    return Counter(code for codes in label_sets for code in codes if code not in mapping)


# --- headers and signals ---------------------------------------------------------------------------------


def header_units(header: Header) -> list[str]:
    """The unit of each signal in the header (WFDB's default ``mV`` when the gain field gives none)."""
    lines = [ln.strip() for ln in header.path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    units = []
    for ln in lines[1 : 1 + header.n_sig]:
        f = ln.split(maxsplit=8)
        gain = f[2] if len(f) > 2 else ""
        units.append(gain.split("/", 1)[1] if "/" in gain else "mV")
    return units


def header_comments(base: str | os.PathLike) -> list[str]:
    """The ``#`` comment lines of ``<base>.hea`` without the leading ``#``."""
    text = Path(f"{base}.hea").read_text(errors="replace")
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("#")]


def read_dx(base: str | os.PathLike) -> list[str]:
    """The SNOMED-CT codes of the ``# Dx:`` line(s) of a CinC header, in order, without duplicates."""
    codes: list[str] = []
    for comment in header_comments(base):
        key, _, value = comment.partition(":")
        if key.strip().lower() == "dx":
            codes += [c.strip() for c in value.split(",") if c.strip() and c.strip() not in codes]
    return codes


def source_lead_order(header: Header, required: tuple[str, ...] = LEADS) -> np.ndarray:
    """Signal indices that give ``required`` leads, matched by name case-insensitively (DataError otherwise)."""
    upper = [s.strip().upper() for s in header.sig_names]
    bad = [lead for lead in required if upper.count(lead.upper()) != 1]
    if bad:
        raise DataError(
            f"record {header.path.stem}: its leads {list(header.sig_names)} cannot supply the model input "
            f"{list(required)} (missing or repeated: {bad}); header {header.path}. Lead names match "
            "case-insensitively; rename the signals in the header or drop the record"
        )
    return np.array([upper.index(lead.upper()) for lead in required])


def _read_mat(base: Path, header: Header) -> np.ndarray:
    from scipy.io import loadmat

    mat = base.parent / header.files[0]
    try:
        val = np.asarray(loadmat(str(mat))["val"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"record {base.name}: {mat} is not a readable .mat file with a 'val' array ({err})"
        ) from err
    if val.ndim != 2 or val.shape[0] != header.n_sig:
        raise DataError(
            f"record {base.name}: {mat} holds 'val' of shape {val.shape}, header declares {header.n_sig} signals"
        )
    phys = (val - np.asarray(header.baselines, dtype=np.float64)[:, None]) / np.asarray(header.gains)[:, None]
    return phys.T


def read_any_record(base: str | os.PathLike) -> tuple[np.ndarray, float]:
    """One WFDB record (``.mat`` or ``.dat``) as float32 millivolts (12, T) in ``LEADS`` order, and its rate."""
    base = Path(base)
    header = read_header(base)
    order = source_lead_order(header)
    units = header_units(header)
    if header.files[0].lower().endswith(".mat"):
        phys = _read_mat(base, header)
    else:
        phys = _read_simple(base, header) if header.simple else _read_wfdb(base, header)
    scale = []
    for i in order:
        unit = units[i].strip().lower()
        if unit not in UNITS_TO_MV:
            raise DataError(
                f"record {base.name}: lead {header.sig_names[i]} has unit {units[i]!r}; "
                f"use one of mV, uV or V in header {header.path}"
            )
        scale.append(UNITS_TO_MV[unit])
    x = phys[:, order].T * np.asarray(scale)[:, None]
    if not np.isfinite(x).all():
        raise DataError(
            f"record {base.name}: {int((~np.isfinite(x)).sum())} missing (NaN) sample(s) in {base}"
        )
    return np.ascontiguousarray(x, dtype=np.float32), float(header.fs)


def read_window(base: str | os.PathLike, rate: int, n_samples: int) -> np.ndarray:
    """:func:`read_any_record` resampled to ``rate`` and cut to the central ``n_samples`` (zero-padded if shorter)."""
    x, fs = read_any_record(base)
    if abs(fs - rate) > 1e-6:
        x = Resample(fs, rate)(x)
    return CenterCrop(n_samples)(x)


def n_segments(base: str | os.PathLike, rate: int, n_samples: int) -> int:
    """Cache rows of a record (its header's length at ``rate`` over ``n_samples``, rounded up; at least 1)."""
    header = read_header(base)
    length = header.sig_len
    if abs(header.fs - rate) > 1e-6:
        r = Resample(header.fs, rate)
        length = -(-length * r.up // r.down)  # resample_poly's output length
    return max(1, -(-length // n_samples))


def read_segments(base: str | os.PathLike, rate: int, n_samples: int) -> np.ndarray:
    """:func:`read_any_record` at ``rate`` as :func:`n_segments` evenly spaced windows (S, 12, ``n_samples``).

    One segment is :func:`read_window`'s central window; more cover the record from its start to its end.
    """
    x, fs = read_any_record(base)
    if abs(fs - rate) > 1e-6:
        x = Resample(fs, rate)(x)
    return FixedWindows(n_samples, n_segments(base, rate, n_samples))(x)


# --- scanning a source ------------------------------------------------------------------------------------


@dataclass
class SourceRecords:
    """A scanned source: one row per record plus what the labels could not express."""

    source: str
    root: Path
    table: pd.DataFrame  # ecg_id, patient_id, strat_fold, filename, scp_codes
    labels: str  # "statements" (PTB-XL codes) or "classes" (a task's class names)
    fingerprint: dict
    unmapped: dict[str, int] = field(default_factory=dict)  # SNOMED code -> records
    labels_csv: Path | None = None

    def summary(self) -> dict:
        """Records, label kind and the unmapped codes (most frequent first)."""
        return {
            "source": self.source,
            "root": str(self.root),
            "labels_csv": None if self.labels_csv is None else str(self.labels_csv),
            "n_records": len(self.table),
            "labels": self.labels,
            "unmapped_codes": dict(sorted(self.unmapped.items(), key=lambda kv: (-kv[1], kv[0]))),
            "n_unmapped": int(sum(self.unmapped.values())),
        }


def _headers(root: Path) -> list[Path]:
    bases = sorted(p.with_suffix("") for p in root.rglob("*.hea"))
    if not bases:
        raise DataError(f"{root} holds no WFDB header (*.hea); point --data at the folder of the records")
    return bases


def _files_digest(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def stratified_folds(label_sets: list, seed: int = 0) -> np.ndarray:
    """Folds 1-10 dealt round-robin along a seeded stratified ordering of the records' label sets."""
    vocab = sorted({lab for labs in label_sets for lab in labs})
    col = {v: i for i, v in enumerate(vocab)}
    y = np.zeros((len(label_sets), len(vocab)), dtype=np.uint8)
    for i, labs in enumerate(label_sets):
        y[i, [col[v] for v in labs]] = 1
    folds = np.empty(len(label_sets), dtype=np.int64)
    folds[priority_order(y, seed)] = np.arange(len(label_sets)) % N_FOLDS + 1
    return folds


def _table(root: Path, bases: list[Path], label_sets: list[dict], folds: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ecg_id": np.arange(1, len(bases) + 1, dtype=np.int64),
            "patient_id": pd.array([pd.NA] * len(bases), dtype="Int64"),
            "strat_fold": np.asarray(folds, dtype=np.int64),
            "filename": [str(b.relative_to(root)) for b in bases],
            "scp_codes": label_sets,
        }
    )


def scan_cinc(root: str | os.PathLike, seed: int = 0) -> SourceRecords:
    """Scan a CinC 2020/2021 folder: every header's ``# Dx:`` codes mapped to PTB-XL statements."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"CinC folder {root} not found; pass --data the folder holding the .hea/.mat records")
    bases = _headers(root)
    to_stmt = snomed_map()
    unmapped: Counter = Counter()
    label_sets = []
    for base in bases:
        codes = read_dx(base)
        if not codes:
            raise DataError(f"record {base.name}: header {base}.hea has no '# Dx:' line of SNOMED-CT codes")
        stmts: dict[str, float] = {}
        for code in codes:
            if code in to_stmt:
                stmts.update({s: 100.0 for s in to_stmt[code]})
            else:
                unmapped[code] += 1
        label_sets.append(stmts)
    folds = stratified_folds(label_sets, seed)
    mapping_digest = hashlib.sha256(_package_file(MAPPING_FILE).read_bytes()).hexdigest()[:16]
    fingerprint = {
        "source": "cinc",
        "n_records": len(bases),
        "headers": _files_digest(root, [Path(f"{b}.hea") for b in bases]),
        "mapping": mapping_digest,
        "seed": int(seed),
    }
    return SourceRecords(
        "cinc", root, _table(root, bases, label_sets, folds), "statements", fingerprint, dict(unmapped)
    )


def _read_labels_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"labels CSV {path} not found; pass --labels a CSV with columns record,labels[,fold]")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is not a readable CSV ({err}); it needs columns record,labels[,fold]"
        ) from err
    missing = [c for c in ("record", "labels") if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; it needs columns record,labels[,fold]")
    if df["record"].duplicated().any():
        raise DataError(
            f"{path}: record(s) {sorted(set(df['record'][df['record'].duplicated()]))[:5]} appear twice"
        )
    return df


def scan_folder(
    root: str | os.PathLike, labels: str | os.PathLike | None = None, seed: int = 0
) -> SourceRecords:
    """Scan a folder of WFDB records labelled by a CSV ``record,labels[,fold]`` (default ``<root>/labels.csv``)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"folder {root} not found; pass --data the folder holding the WFDB records")
    csv = Path(labels).expanduser().resolve() if labels is not None else root / "labels.csv"
    df = _read_labels_csv(csv)
    bases = []
    for rec in df["record"]:
        base = root / rec.removesuffix(".hea")
        if not Path(f"{base}.hea").is_file():
            raise DataError(
                f"{csv}: record {rec!r} has no header {base}.hea; fix the record column or the folder"
            )
        bases.append(base)
    label_sets = [{t.strip(): 100.0 for t in str(s).split(";") if t.strip()} for s in df["labels"]]
    known = set(ptbxl_statements().index)
    kind = "statements" if all(set(s) <= known for s in label_sets) else "classes"
    if kind == "classes":
        every = {c for task in TASKS for c in task_classes(ptbxl_statements(), task)}
        strange = sorted({t for s in label_sets for t in s} - every)
        if strange:
            raise DataError(
                f"{csv}: label(s) {strange[:8]} are neither PTB-XL statement codes nor class names of a task "
                f"({', '.join(TASKS)}); use codes from scp_statements.csv or a task's class names, separated by ';'"
            )
    if "fold" in df.columns:
        folds = pd.to_numeric(df["fold"], errors="coerce")
        if folds.isna().any() or not folds.isin(range(1, N_FOLDS + 1)).all():
            raise DataError(f"{csv}: column fold must hold integers 1-{N_FOLDS} on every row")
        folds = folds.to_numpy(dtype=np.int64)
    else:
        folds = stratified_folds(label_sets, seed)
    st = csv.stat()
    fingerprint = {
        "source": "folder",
        "n_records": len(bases),
        "labels_csv": {"path": str(csv), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "headers": _files_digest(root, [Path(f"{b}.hea") for b in bases]),
        "seed": int(seed),
    }
    table = _table(root, bases, label_sets, folds)
    return SourceRecords("folder", root, table, kind, fingerprint, {}, csv)


def scan_source(
    source: str, root: str | os.PathLike, labels: str | os.PathLike | None = None, seed: int = 0
) -> SourceRecords:
    """:func:`scan_cinc` or :func:`scan_folder` by name (``labels`` only applies to folders)."""
    check_source(source)
    if source == "cinc":
        if labels is not None:
            raise ConfigError(
                "--labels applies to --source folder; CinC labels come from the headers' # Dx: lines"
            )
        return scan_cinc(root, seed)
    if source == "folder":
        return scan_folder(root, labels, seed)
    raise ConfigError("source 'ptbxl' is read by ecgadapt.data.cache.prepare_cache, not scanned here")


# --- caching ---------------------------------------------------------------------------------------------


def source_cache_path(records: SourceRecords, rate: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/<root name>-<hash>-<source>-<hash of labels>/rate<rate>``."""
    from ecgadapt.data.cache import default_cache_path

    base = default_cache_path(records.root, rate, cache_dir)
    tag = hashlib.sha256(str(records.labels_csv).encode()).hexdigest()[:8]
    return base.parent.with_name(f"{base.parent.name}-{records.source}-{tag}") / base.name


def _source_problem(target: Path, records: SourceRecords, rate: int) -> str | None:
    from ecgadapt.data.cache import read_manifest

    manifest, problem = read_manifest(target)
    if problem is not None:
        return problem
    if manifest.get("rate") != rate or manifest.get("fingerprint") != records.fingerprint:
        return "the source changed since the cache was built"
    if manifest.get("segment_s") != DURATION_S:
        return "the cache was built by an older ecgadapt (long records cut to their central 10 s)"
    return None


def prepare_source_cache(
    records: SourceRecords,
    rate: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Read a scanned source into a cache at ``rate`` Hz (PTB-XL's format); reuse a valid, current one."""
    from ecgadapt.data import cache as c

    rate = check_rate(rate)
    workers = c._default_workers() if workers is None else int(workers)
    target = source_cache_path(records, rate, cache_dir)
    problem = _source_problem(target, records, rate)
    if problem is None:
        c._say(progress, f"reusing valid cache {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    c._remove_stale(target)
    n_samples = int(round(DURATION_S * rate))
    bases = [str(records.root / f) for f in records.table["filename"]]
    counts = np.array([n_segments(b, rate, n_samples) for b in bases], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    shape = (int(counts.sum()), len(LEADS), n_samples)
    start = time.perf_counter()
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        signals_path = tmp / c.SIGNALS_FILE
        np.lib.format.open_memmap(signals_path, mode="w+", dtype=np.float32, shape=shape).flush()
        items = [(int(row), base) for row, base in zip(starts, bases)]
        n_chunks = max(1, min(len(items), workers * 8, math.ceil(len(items) / 4)))
        size = math.ceil(len(items) / n_chunks)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        reader = partial(read_segments, n_samples=n_samples)
        c._read_all(
            str(signals_path),
            chunks,
            rate,
            workers,
            progress,
            f"prepare {records.root.name} @ {rate} Hz",
            reader,
        )
        c._write_index(tmp / c.INDEX_FILE, records.table.loc[records.table.index.repeat(counts)], "filename")
        ptbxl_statements().to_csv(tmp / STATEMENTS_CSV)
        manifest = {
            "format_version": c.CACHE_FORMAT_VERSION,
            "complete": True,
            "rate": rate,
            "shape": list(shape),
            "dtype": "float32",
            "leads": list(LEADS),
            "units": "mV",
            "source_root": str(records.root),
            "segment_s": DURATION_S,
            "source": records.source,
            "labels": records.labels,
            "summary": records.summary(),
            "fingerprint": records.fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - start, 3),
        }
        (tmp / c.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        c._swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rows = f" ({shape[0]} cache rows: longer records segmented)" if shape[0] > len(bases) else ""
    c._say(progress, f"prepared {len(bases)} {records.source} records{rows} at {rate} Hz into {target}")
    if records.unmapped:
        c._say(
            progress,
            f"{sum(records.unmapped.values())} Dx code(s) without a PTB-XL statement: {records.summary()['unmapped_codes']}",
        )
    return target


def load_source(
    source: str,
    root: str | os.PathLike,
    rate: int,
    labels: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    seed: int = 0,
):
    """Scan ``source`` at ``root`` and open its cache at ``rate`` (prepared first when missing or stale)."""
    from ecgadapt.data.cache import open_cache

    records = scan_source(source, root, labels, seed)
    return open_cache(prepare_source_cache(records, rate, cache_dir, workers, progress))
