"""Data sources behind one protocol: PTB-XL, PhysioNet/CinC 2020/2021 folders and labelled WFDB folders.

A :class:`Source` is what the one cache writer (:func:`ecgadapt.data.cache.write_cache`) needs of a dataset:
its records (one row each: ecg_id, patient_id, strat_fold, filename, scp_codes), how their labels read, what
identifies it (metadata fingerprint, the files its records are read from), and how to read a record. Every
source is so cached in one format, and :class:`~ecgadapt.data.dataset.ECGDataset`, the transforms,
``finetune`` and ``evaluate`` work on each unchanged.

- ``ptbxl``: ``ptbxl_database.csv`` and ``scp_statements.csv`` with the 100 and 500 Hz WFDB records.
- ``cinc``: WFDB headers (``.hea``) with ``.mat`` (``val``) or ``.dat`` signals and ``# Dx:`` lines of
  SNOMED-CT codes, mapped to PTB-XL statements by the shipped table ``snomed_ptbxl.csv``. Codes without
  a statement are counted in :attr:`SourceRecords.unmapped`, never dropped silently.
- ``folder``: WFDB records plus a CSV ``record,labels[,fold]``; labels are PTB-XL statement codes or a
  task's class names, separated by ``;``.

CinC and folder records are read as real-world headers need (:mod:`ecgadapt.data.records`). A record of up to
10 s is cached as one row (shorter ones zero-padded right, as the evaluation crop does); a longer one as
``ceil(T / 10 s)`` evenly spaced 10 s segments covering it (first at its start, last at its end, as
``predict``'s windows), consecutive cache rows sharing its ``ecg_id``. :class:`~ecgadapt.data.dataset.ECGDataset`
trains on a random segment of such a record and evaluates every segment, averaging their probabilities per
record as ``predict`` does.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from ecgadapt.data.ptbxl import (
    DATABASE_CSV,
    FILENAME_COLUMN,
    STATEMENTS_CSV,
    check_rate,
    check_records_present,
    read_database,
    read_header,
    read_record,
    read_statements,
)
from ecgadapt.data.records import RECORD_FIX, n_segments, read_dx, read_segments
from ecgadapt.data.splits import priority_order
from ecgadapt.data.tasks import TASKS, statement_map, task_classes, task_labels
from ecgadapt.errors import ConfigError, DataError

SOURCES: tuple[str, ...] = ("ptbxl", "cinc", "folder")
MAPPING_FILE = "snomed_ptbxl.csv"
STATEMENTS_FILE = "ptbxl_statements.csv"
MAPPING_COLUMNS = ("snomed_code", "abbreviation", "term", "ptbxl_statement", "relation", "source")
DURATION_S = 10.0  # cache length of source records (PTB-XL's record length)
N_FOLDS = 10

RecordReader = Callable[[str, int], np.ndarray]
"""``reader(base path, rate) -> (12, T)`` or ``(S, 12, T)`` float32 millivolts; picklable (runs in workers)."""


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
    """Multi-hot labels over ``task``'s classes, each label read on its own; Counter of labels marking none.

    A PTB-XL statement code marks the class it maps to (as in :func:`~ecgadapt.data.tasks.task_labels`), any
    other label the class of that name. No code is a class name of a task that maps elsewhere, so a file that
    mixes codes and class names reads every row as meant.
    """
    mapping = statement_map(statements, task)
    classes = task_classes(statements, task)
    col = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(label_sets), len(classes)), dtype=np.uint8)
    other: Counter = Counter()
    for i, names in enumerate(label_sets):
        for name in names:
            target = mapping.get(name) or (name if name in col else None)
            if target is not None:
                y[i, col[target]] = 1
            else:
                other[name] += 1
    return y, classes, other


def unmatched_labels(label_sets: list[dict], statements: pd.DataFrame, task: str, kind: str) -> Counter:
    """Labels of the records (statements or class names) that mark no class of ``task``, with their counts."""
    if kind == "classes":
        return class_labels(label_sets, statements, task)[2]
    mapping = statement_map(statements, task)
    return Counter(code for codes in label_sets for code in codes if code not in mapping)


def source_labels(
    label_sets: Iterable[dict], statements: pd.DataFrame, task: str, kind: str, ids: Sequence | None = None
) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels (N, C) over ``task``'s classes of records labelled by statement codes or class names.

    ``kind`` is the source's :attr:`Source.labels`; ``ids`` only name records in error messages.
    """
    if kind == "classes":
        y, classes, _ = class_labels(list(label_sets), statements, task)
        return y, classes
    return task_labels(label_sets, statements, task, ids=ids)


# --- the protocol --------------------------------------------------------------------------------------------


class Source(Protocol):
    """What the cache writer needs of a dataset: its records and labels, what identifies it, how to read it."""

    name: str  # "ptbxl", "cinc" or "folder"
    root: Path
    labels: str  # "statements" (PTB-XL codes only) or "classes" (class names too, read label by label)
    stale_message: str  # why a cache is rebuilt when fingerprint() differs from the cache's
    table: pd.DataFrame  # one row per record: ecg_id, patient_id, strat_fold, scp_codes, file name(s)
    statements: pd.DataFrame  # the statement table the records' codes refer to

    def index(self, rate: int) -> pd.DataFrame:
        """One row per record: ecg_id, patient_id, strat_fold, filename (base path under root), scp_codes."""
        ...

    def fingerprint(self) -> dict:
        """What identifies the source's metadata (CSVs, tables, seed); its record files are fingerprinted apart."""
        ...

    def record_files(self, rate: int) -> list[str]:
        """Every file (relative to root) that the records at ``rate`` are read from."""
        ...

    def cache_tag(self) -> str | None:
        """What tells this source's caches from other sources' caches of the same folder (None: none needed)."""
        ...

    def layout(self, rate: int) -> tuple[np.ndarray, int]:
        """Cache rows of each record and samples per row, at ``rate``."""
        ...

    def reader(self, rate: int) -> RecordReader:
        """The picklable function that reads one record at ``rate``."""
        ...

    def write_statements(self, path: Path) -> None:
        """Write the statement table the records' codes refer to (read back as ``scp_statements.csv``)."""
        ...

    def manifest_fields(self) -> dict:
        """Entries the cache's manifest records beside the common ones."""
        ...

    def manifest_problem(self, manifest: dict) -> str | None:
        """Why a cache's otherwise valid manifest does not fit this source (e.g. an older layout), or None."""
        ...

    def notes(self) -> list[str]:
        """Lines to tell the user after the cache is prepared (e.g. codes without a statement)."""
        ...


# --- PTB-XL ----------------------------------------------------------------------------------------------------


@dataclass
class PtbxlSource:
    """A PTB-XL folder: the database CSV lists the records, the statements CSV defines their codes."""

    root: Path
    database: pd.DataFrame
    statements: pd.DataFrame
    name: str = "ptbxl"
    labels: str = "statements"
    stale_message: str = "the source CSVs changed since the cache was built"

    @property
    def table(self) -> pd.DataFrame:
        """The database (one row per record, both rates' file names)."""
        return self.database

    def index(self, rate: int) -> pd.DataFrame:
        """The database's records with the file names of ``rate``; DataError naming rows without one."""
        column = FILENAME_COLUMN[check_rate(rate)]
        db = self.database
        check_records_present(self.root, db, rate)  # e.g. a 100 Hz-only copy (ptbxl-2285) asked for 500 Hz
        if db[column].isna().any():
            ids = db.loc[db[column].isna(), "ecg_id"].tolist()
            raise DataError(
                f"{self.root / DATABASE_CSV}: {column} is empty for ecg_id(s) {ids[:5]}; fill it or drop those rows"
            )
        return pd.DataFrame(
            {
                "ecg_id": db["ecg_id"],
                "patient_id": db["patient_id"],
                "strat_fold": db["strat_fold"],
                "filename": db[column].astype(str),
                "scp_codes": db["scp_codes"],
            }
        )

    def fingerprint(self) -> dict:
        """Sizes and modification times of the two CSVs plus the record count: changes when the source changes."""
        out: dict = {"n_records": len(self.database)}
        for name in (DATABASE_CSV, STATEMENTS_CSV):
            st = (self.root / name).stat()
            out[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return out

    def record_files(self, rate: int) -> list[str]:
        """``<base>.hea`` and ``<base>.dat`` of every record at ``rate``."""
        return [f"{base}{ext}" for base in self.index(rate)["filename"] for ext in (".hea", ".dat")]

    def cache_tag(self) -> str | None:
        """None: a PTB-XL cache is named by its folder and rate alone."""
        return None

    def layout(self, rate: int) -> tuple[np.ndarray, int]:
        """One row per record, as long as the first record."""
        first = self.index(rate)["filename"].iloc[0]
        return np.ones(len(self.database), dtype=np.int64), read_header(self.root / first).sig_len

    def reader(self, rate: int) -> RecordReader:
        """:func:`~ecgadapt.data.ptbxl.read_record` (the header must give ``rate``)."""
        return read_record

    def write_statements(self, path: Path) -> None:
        """A byte copy of the folder's ``scp_statements.csv``."""
        shutil.copyfile(self.root / STATEMENTS_CSV, path)

    def manifest_fields(self) -> dict:
        """None beyond the common ones."""
        return {}

    def manifest_problem(self, manifest: dict) -> str | None:
        """None: every PTB-XL cache of this format fits."""
        return None

    def notes(self) -> list[str]:
        """None."""
        return []


def scan_ptbxl(root: str | os.PathLike) -> PtbxlSource:
    """Read a PTB-XL folder's two CSVs (every code defined, at least one record); no signal is read."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"PTB-XL folder {root} not found; pass the folder that holds {DATABASE_CSV} (--data for finetune, benchmark, prepare and data stats)"
        )
    database = read_database(root)
    statements = read_statements(root)
    task_labels(
        database["scp_codes"], statements, "all", ids=database["ecg_id"].tolist()
    )  # every code defined
    if len(database) == 0:
        raise DataError(f"{root / DATABASE_CSV} lists no records; nothing to prepare")
    return PtbxlSource(root, database, statements)


# --- CinC and labelled folders ------------------------------------------------------------------------------


@dataclass
class SourceRecords:
    """A scanned CinC or labelled folder: one row per record plus what the labels could not express."""

    name: str
    root: Path
    table: pd.DataFrame  # ecg_id, patient_id, strat_fold, filename, scp_codes
    labels: str  # "statements" (PTB-XL codes only) or "classes" (class names too, read label by label)
    identity: dict  # what identifies the metadata: record count, labels CSV or mapping table, seed
    unmapped: dict[str, int] = field(default_factory=dict)  # SNOMED code -> records
    labels_csv: Path | None = None
    stale_message: str = "the source changed since the cache was built"

    def summary(self) -> dict:
        """Records, label kind and the unmapped codes (most frequent first)."""
        return {
            "source": self.name,
            "root": str(self.root),
            "labels_csv": None if self.labels_csv is None else str(self.labels_csv),
            "n_records": len(self.table),
            "labels": self.labels,
            "unmapped_codes": dict(sorted(self.unmapped.items(), key=lambda kv: (-kv[1], kv[0]))),
            "n_unmapped": int(sum(self.unmapped.values())),
        }

    @property
    def statements(self) -> pd.DataFrame:
        """PTB-XL's statement table as shipped with ecgadapt."""
        return ptbxl_statements()

    def index(self, rate: int) -> pd.DataFrame:
        """The scanned table (the same at every rate)."""
        return self.table

    def fingerprint(self) -> dict:
        """The identity recorded at scan time."""
        return self.identity

    def record_files(self, rate: int) -> list[str]:
        """Every record's header and the signal files (``.dat``, ``.mat``) it names."""
        files = []
        for base in self.table["filename"]:
            signals = dict.fromkeys(read_header(self.root / base, RECORD_FIX).files)
            files += [f"{base}.hea", *(str(Path(base).parent / f) for f in signals)]
        return files

    def cache_tag(self) -> str | None:
        """The source's name and a hash of its labels CSV's path."""
        return f"{self.name}-{hashlib.sha256(str(self.labels_csv).encode()).hexdigest()[:8]}"

    def layout(self, rate: int) -> tuple[np.ndarray, int]:
        """Rows of 10 s at ``rate``: one per record of up to 10 s, ``ceil(T / 10 s)`` for a longer one."""
        n_samples = int(round(DURATION_S * rate))
        counts = [n_segments(self.root / f, rate, n_samples) for f in self.table["filename"]]
        return np.array(counts, dtype=np.int64), n_samples

    def reader(self, rate: int) -> RecordReader:
        """:func:`~ecgadapt.data.records.read_segments` into 10 s rows."""
        return partial(read_segments, n_samples=int(round(DURATION_S * rate)))

    def write_statements(self, path: Path) -> None:
        """PTB-XL's statement table as shipped with ecgadapt."""
        ptbxl_statements().to_csv(path)

    def manifest_fields(self) -> dict:
        """The segment length, the source, how its labels read, and its summary."""
        return {
            "segment_s": DURATION_S,
            "source": self.name,
            "labels": self.labels,
            "summary": self.summary(),
        }

    def manifest_problem(self, manifest: dict) -> str | None:
        """A cache of an older ecgadapt that kept only the central 10 s of long records does not fit."""
        if manifest.get("segment_s") != DURATION_S:
            return "the cache was built by an older ecgadapt (long records cut to their central 10 s)"
        return None

    def notes(self) -> list[str]:
        """The Dx codes without a PTB-XL statement, if any."""
        if not self.unmapped:
            return []
        return [
            f"{sum(self.unmapped.values())} Dx code(s) without a PTB-XL statement: {self.summary()['unmapped_codes']}"
        ]


def _headers(root: Path) -> list[Path]:
    bases = sorted(p.with_suffix("") for p in root.rglob("*.hea"))
    if not bases:
        raise DataError(f"{root} holds no WFDB header (*.hea); point --data at the folder of the records")
    return bases


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
    identity = {
        "source": "cinc",
        "n_records": len(bases),
        "mapping": mapping_digest,
        "seed": int(seed),
    }
    return SourceRecords(
        "cinc", root, _table(root, bases, label_sets, folds), "statements", identity, dict(unmapped)
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
    if len(df) == 0:
        raise DataError(
            f"{path} lists no records (only its header line); add one line per record: record,labels"
        )
    return df


def _record_bases(csv: Path, root: Path, records: pd.Series) -> list[Path]:
    """Each row's record as a path under ``root``, normalised (``x``, ``./x``, ``a/../x`` and ``x.hea`` are one).

    An empty, absolute or escaping path, one named twice, or one without a header is refused naming its row
    (the CSV's line number).
    """
    first_row: dict[str, tuple[int, str]] = {}
    bases = []
    for line, rec in enumerate(records, start=2):
        if not rec.strip():
            raise DataError(f"{csv}: row {line} names no record; give each row a record path")
        name = posixpath.normpath(rec.strip()).removesuffix(".hea")
        if posixpath.isabs(name):
            raise DataError(
                f"{csv}: row {line}: record {rec!r} is an absolute path; give it relative to the data folder {root}"
            )
        if name == ".." or name.startswith("../"):
            raise DataError(
                f"{csv}: row {line}: record {rec!r} leads outside the data folder {root}; move the record into "
                "it or point --data at a folder that holds every record"
            )
        if name in first_row:
            other, before = first_row[name]
            raise DataError(
                f"{csv}: rows {other} and {line} name the same record {name} ({before!r}, {rec!r}); list each "
                "record once"
            )
        first_row[name] = (line, rec)
        base = root / name
        if not Path(f"{base}.hea").is_file():
            raise DataError(
                f"{csv}: row {line}: record {rec!r} has no header {base}.hea; fix the record column or the folder"
            )
        bases.append(base)
    return bases


def scan_folder(
    root: str | os.PathLike, labels: str | os.PathLike | None = None, seed: int = 0
) -> SourceRecords:
    """Scan a folder of WFDB records labelled by a CSV ``record,labels[,fold]`` (default ``<root>/labels.csv``)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"folder {root} not found; pass --data the folder holding the WFDB records")
    csv = Path(labels).expanduser().resolve() if labels is not None else root / "labels.csv"
    df = _read_labels_csv(csv)
    bases = _record_bases(csv, root, df["record"])
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
        bad = np.flatnonzero(folds.isna() | ~folds.isin(range(1, N_FOLDS + 1)))
        if len(bad):
            raise DataError(
                f"{csv}: column fold must hold integers 1-{N_FOLDS} on every row, not on row(s) "
                f"{(bad + 2)[:5].tolist()}"
            )
        folds = folds.to_numpy(dtype=np.int64)
    else:
        folds = stratified_folds(label_sets, seed)
    st = csv.stat()
    identity = {
        "source": "folder",
        "n_records": len(bases),
        "labels_csv": {"path": str(csv), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "seed": int(seed),
    }
    table = _table(root, bases, label_sets, folds)
    return SourceRecords("folder", root, table, kind, identity, {}, csv)


def scan_source(
    source: str, root: str | os.PathLike, labels: str | os.PathLike | None = None, seed: int = 0
) -> Source:
    """:func:`scan_ptbxl`, :func:`scan_cinc` or :func:`scan_folder` by name (``labels`` only applies to folders)."""
    check_source(source)
    if source == "folder":
        return scan_folder(root, labels, seed)
    if labels is not None:
        where = "the headers' # Dx: lines" if source == "cinc" else "ptbxl_database.csv"
        raise ConfigError(f"--labels applies to --source folder; {source} labels come from {where}")
    return scan_cinc(root, seed) if source == "cinc" else scan_ptbxl(root)
