"""What identifies a cached record as a PTB-XL record, and its patient, on every source; and the pretraining
overlap those identities allow to count.

A PTB-XL cache's ecg_ids and patient_ids are PTB-XL's own. A CinC or folder cache numbers its records by
position, so a record is identified instead by

- an ``ecg_id`` column (and a ``patient_id`` column) in a folder's labels CSV, PTB-XL's numbers;
- else its file name: PTB-XL's ``00123_lr`` / ``00123_hr``, or CinC's re-export of PTB-XL ``HR00123``.

A record none of these identifies has no PTB-XL identity: whether an encoder saw it cannot be checked, and
:func:`pretraining_overlap_counts` says so rather than counting it as unseen.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.data import synthetic
from ecgadapt.errors import DataError

PTBXL_FILE_NAME = re.compile(r"^(\d{5})_(?:lr|hr)$")
"""A PTB-XL record's file name (``records100/00000/00123_lr``): group 1 is its ecg_id."""
CINC_PTBXL_NAME = re.compile(r"^HR(\d{5})$")
"""A record of CinC 2020/2021's re-export of PTB-XL (``HR00123``): group 1 is its PTB-XL ecg_id."""

BY_DATABASE = "ptbxl_database.csv"
BY_LABELS_CSV = "labels CSV ecg_id column"
BY_FILE_NAME = "PTB-XL file name"


def ptbxl_id_from_name(path: str) -> int | None:
    """The PTB-XL ecg_id a record's file name carries (``.../00123_hr`` or ``HR00123``, extension optional)."""
    name = posixpath.basename(str(path).replace("\\", "/"))
    name = re.sub(r"\.(hea|dat|mat)$", "", name)
    for pattern in (PTBXL_FILE_NAME, CINC_PTBXL_NAME):
        match = pattern.match(name)
        if match:
            return int(match.group(1))
    return None


@dataclass
class RecordIdentity:
    """Per record of a cache (one row each): its cache ``ecg_id``, ``strat_fold``, PTB-XL ecg_id
    (``ptbxl_ecg_id``, NA when unknown) and PTB-XL ``patient_id`` (NA when unknown); ``how`` names what gave the
    identities (None: nothing did) and ``reason`` says why some or all records have none."""

    table: pd.DataFrame
    how: str | None
    reason: str | None = None


def _integer_column(values: pd.Series, csv: Path, column: str) -> pd.Series:
    """A CSV column of integers (blank cells: NA); any other text is an error naming its row."""
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = np.flatnonzero((text != "").to_numpy() & (numbers.isna() | (numbers % 1 != 0)).to_numpy())
    if len(bad):
        raise DataError(
            f"{csv}: column {column} must hold PTB-XL's integer {column}s (or be blank), not on row(s) "
            f"{(bad + 2)[:5].tolist()}"
        )
    return numbers.astype("Int64")


def _labels_csv_identities(csv: Path, filenames: pd.Series) -> pd.DataFrame | None:
    """The ``ecg_id`` / ``patient_id`` columns of a folder's labels CSV, aligned to the cache's records by their
    normalised record path; None when the CSV has neither column (or is gone)."""
    if not csv.is_file():
        return None
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if "record" not in df.columns or not {"ecg_id", "patient_id"} & set(df.columns):
        return None
    keys = [posixpath.normpath(r.strip()).removesuffix(".hea") for r in df["record"]]
    out = pd.DataFrame(index=keys)
    for column in ("ecg_id", "patient_id"):
        values = df[column] if column in df.columns else pd.Series([""] * len(df))
        out[column] = _integer_column(values.reset_index(drop=True), csv, column).to_numpy()
    return out.reindex([str(f) for f in filenames])


def record_identities(cache: Any) -> RecordIdentity:
    """The PTB-XL identity of each record of ``cache`` (an opened :class:`~ecgadapt.data.cache.ECGCache`)."""
    index = cache.index.drop_duplicates("ecg_id")  # a long record's segments share its ecg_id
    table = pd.DataFrame(
        {
            "ecg_id": index["ecg_id"].to_numpy(np.int64),
            "strat_fold": index["strat_fold"].to_numpy(np.int64),
            "ptbxl_ecg_id": pd.array([pd.NA] * len(index), dtype="Int64"),
            "patient_id": pd.array([pd.NA] * len(index), dtype="Int64"),
        }
    )
    source = cache.manifest.get("source", "ptbxl")
    if source == "ptbxl":
        if (Path(cache.root) / synthetic.MARKER_NAME).is_file():
            return RecordIdentity(table, None, "ecgadapt's synthetic data: its ecg_ids are not PTB-XL's")
        table["ptbxl_ecg_id"] = table["ecg_id"].astype("Int64")
        table["patient_id"] = pd.array(index["patient_id"], dtype="Int64")
        return RecordIdentity(table, BY_DATABASE)
    filenames = index["filename"].astype(str).reset_index(drop=True)
    hows = []
    labels_csv = (cache.manifest.get("summary") or {}).get("labels_csv")
    given = _labels_csv_identities(Path(labels_csv), filenames) if source == "folder" and labels_csv else None
    if given is not None:
        table["ptbxl_ecg_id"] = pd.array(given["ecg_id"].to_numpy(), dtype="Int64")
        table["patient_id"] = pd.array(given["patient_id"].to_numpy(), dtype="Int64")
        if table["ptbxl_ecg_id"].notna().any():
            hows.append(BY_LABELS_CSV)
    from_names = pd.array([ptbxl_id_from_name(f) for f in filenames], dtype="Int64")
    fill = table["ptbxl_ecg_id"].isna() & pd.Series(from_names).notna()
    if fill.any():
        table.loc[fill, "ptbxl_ecg_id"] = pd.Series(from_names)[fill]
        hows.append(BY_FILE_NAME)
    missing = int(table["ptbxl_ecg_id"].isna().sum())
    reason = None
    if missing:
        reason = (
            f"{missing} of {len(table)} {source} record(s) carry no PTB-XL identity (no PTB-XL file name such as "
            "00123_hr or HR00123" + (", no ecg_id in the labels CSV" if source == "folder" else "") + ")"
        )
    return RecordIdentity(table, ", ".join(hows) or None, reason)


def _split_masks(folds: np.ndarray, test_fold: int, val_fold: int) -> dict[str, np.ndarray]:
    test, val = folds == test_fold, folds == val_fold
    return {"train": ~test & ~val, "val": val, "test": test}


def pretraining_overlap_counts(
    identity: RecordIdentity,
    seen_ids: Collection[int],
    seen_patients: Mapping[int, int],
    test_fold: int,
    val_fold: int,
) -> dict[str, Any]:
    """Per split, the records an encoder was pretrained on (``train``/``val``/``test``) and, in ``same_patient``,
    the records it did not see whose patient it saw other records of, with what could not be checked.

    ``seen_ids``: the PTB-XL ecg_ids of the pretraining records; ``seen_patients``: ``{ecg_id: patient_id}`` of
    those whose patient is known. Records without identity count as unknown (``n_unidentified``), never as
    unseen; the record counts are None when no record has an identity, ``same_patient`` when no patient can be
    matched. ``unknown`` lists, in words, what could not be checked.
    """
    t = identity.table
    masks = _split_masks(t["strat_fold"].to_numpy(), test_fold, val_fold)
    known = t["ptbxl_ecg_id"].notna().to_numpy()
    ids = t["ptbxl_ecg_id"].fillna(-1).to_numpy(np.int64)
    is_seen = known & np.isin(ids, np.fromiter(seen_ids, dtype=np.int64, count=len(seen_ids)))
    unknown: list[str] = []
    out: dict[str, Any] = {"identity": identity.how, "n_seen_pretraining": len(seen_ids)}
    if identity.how is None:
        out.update({split: None for split in masks})
        unknown.append(f"{identity.reason}: whether the encoder saw them cannot be checked")
    else:
        out.update({split: int((is_seen & m).sum()) for split, m in masks.items()})
        if identity.reason:
            unknown.append(f"{identity.reason}: they are not counted")
    out["n_unidentified"] = {split: int((~known & m).sum()) for split, m in masks.items()}
    patients = t["patient_id"]
    has_patient = patients.notna().to_numpy()
    n_seen_known = len([i for i in seen_ids if i in seen_patients])
    seen_patient_ids = np.fromiter(
        {int(p) for i, p in seen_patients.items() if i in seen_ids}, dtype=np.int64
    )
    if n_seen_known == 0 or not has_patient.any():
        out["same_patient"] = None
        why = (
            "the patients of the records the encoder saw are unknown (not in this dataset's database, and no "
            "patient list beside the checkpoint)"
            if n_seen_known == 0
            else "this dataset's records carry no patient_id"
        )
        unknown.append(f"{why}: records of patients it saw cannot be counted")
    else:
        shares = has_patient & np.isin(patients.fillna(-1).to_numpy(np.int64), seen_patient_ids) & ~is_seen
        out["same_patient"] = {split: int((shares & m).sum()) for split, m in masks.items()}
        if n_seen_known < len(seen_ids):
            unknown.append(
                f"the patients of {len(seen_ids) - n_seen_known} of the {len(seen_ids)} records the encoder saw are "
                "unknown: shared patients were counted for the others only"
            )
        missing = int((~has_patient & (masks["val"] | masks["test"])).sum())
        if missing:
            unknown.append(f"{missing} validation or test record(s) carry no patient_id: not counted")
    out["unknown"] = unknown
    return out


# --- patients, for a bootstrap that resamples them -------------------------------------------------------------

UNKNOWN_PATIENT = -1
"""The ``patient_ids`` value of a record whose patient is unknown (predictions files store integers)."""


def _patients_by_record(table: pd.DataFrame, source: str, labels_csv: str | Path | None) -> pd.Series:
    """Each record's patient within its dataset, by cache ecg_id (NA when unknown): PTB-XL's database
    ``patient_id``; a folder's labels CSV ``patient_id`` column; none for CinC."""
    index = table.drop_duplicates("ecg_id")
    ids = index["ecg_id"].to_numpy(np.int64)
    if source == "ptbxl":
        return pd.Series(pd.array(index["patient_id"], dtype="Int64"), index=ids)
    if source == "folder" and labels_csv:
        given = _labels_csv_identities(Path(labels_csv), index["filename"].astype(str).reset_index(drop=True))
        if given is not None:
            return pd.Series(pd.array(given["patient_id"].to_numpy(), dtype="Int64"), index=ids)
    return pd.Series(pd.array([pd.NA] * len(ids), dtype="Int64"), index=ids)


def _lookup(patients: pd.Series, ecg_ids: np.ndarray) -> np.ndarray:
    out = patients.reindex(np.asarray(ecg_ids, dtype=np.int64))
    return out.fillna(UNKNOWN_PATIENT).to_numpy(np.int64)


def cache_patient_ids(cache: Any, ecg_ids: np.ndarray) -> np.ndarray:
    """The patient of each of ``ecg_ids`` in an opened cache (:data:`UNKNOWN_PATIENT` where unknown)."""
    source = cache.manifest.get("source", "ptbxl")
    labels_csv = (cache.manifest.get("summary") or {}).get("labels_csv")
    return _lookup(_patients_by_record(cache.index, source, labels_csv), ecg_ids)


def source_patient_ids(
    source: str, root: str | Path, labels: str | Path | None, ecg_ids: np.ndarray, seed: int = 0
) -> np.ndarray:
    """The patient of each of ``ecg_ids`` read from a dataset's own table (no cache needed): for predictions
    saved before they carried ``patient_ids``."""
    from ecgadapt.data.sources import scan_source

    scanned = scan_source(source, root, labels, seed)
    table = scanned.index(100)  # the same table at every rate (PTB-XL's filename column differs, not its ids)
    labels_csv = getattr(scanned, "labels_csv", None)
    return _lookup(_patients_by_record(table, source, labels_csv), ecg_ids)
