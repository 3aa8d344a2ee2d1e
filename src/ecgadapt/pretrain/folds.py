"""PTB-XL folds of pretraining corpora: parse and format fold lists, and select the rows of some folds, refusing the
evaluation folds 9 and 10 unless they are allowed."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecgadapt.data.ptbxl import read_database
from ecgadapt.errors import ConfigError, DataError
from ecgadapt.pretrain.corpus import IDS_FILE, Corpus

ALL_FOLDS = tuple(range(1, 11))
EVAL_FOLDS = (9, 10)
"""PTB-XL's recommended validation and test folds: a corpus holding records of them needs ``allow_eval_folds``."""


def with_folds_from(corpus: Corpus, ptbxl_root: str | os.PathLike) -> Corpus:
    """``corpus`` with the strat_fold of each ecg_id from ``ptbxl_root``'s database (0 for ids it lacks).

    Only corpora that know their ecg_ids but not their folds (``npy:`` arrays with ``ecg_ids.csv``) change.
    """
    if corpus.ecg_ids is None or corpus.folds is not None:
        return corpus
    database = read_database(ptbxl_root)
    fold_of = dict(zip(database["ecg_id"].tolist(), database["strat_fold"].tolist()))
    folds = np.array([fold_of.get(int(i), 0) for i in corpus.ecg_ids], dtype=np.int64)
    return dataclasses.replace(corpus, folds=folds)


def parse_folds(text: str) -> list[int]:
    """``"1-8"`` or ``"1,3,5-7"`` -> the sorted strat_folds it names (each 1-10)."""
    folds: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ConfigError(
                f"corpus folds {text!r}: {part!r} is not a fold or a range; write e.g. 1-8 or 1,2,5-8"
            )
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if not 1 <= low <= high <= 10:
            raise ConfigError(f"corpus folds {text!r}: {part!r} is not within PTB-XL's folds 1-10")
        folds.update(range(low, high + 1))
    return sorted(folds)


def format_folds(folds: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> ``"1-3,5"``."""
    runs: list[list[int]] = []
    for fold in sorted(set(int(f) for f in folds)):
        if runs and fold == runs[-1][-1] + 1:
            runs[-1].append(fold)
        else:
            runs.append([fold])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


@dataclass(frozen=True)
class CorpusUse:
    """The rows of a corpus that a run uses, with the PTB-XL ecg_ids among them and a one-line summary."""

    rows: np.ndarray
    ptbxl_ids: np.ndarray  # PTB-XL ecg_ids of those rows (empty when the corpus holds no PTB-XL records)
    folds: list[int] | None  # strat_folds of those rows (None: not PTB-XL records, or folds unknown)
    summary: str


def select_rows(corpus: Corpus, folds: Sequence[int] | None, allow_eval_folds: bool = False) -> CorpusUse:
    """The rows of ``corpus`` in ``folds`` (None: all), refusing evaluation folds unless ``allow_eval_folds``.

    Corpora without PTB-XL records (generated, synthetic, other WFDB folders) are used whole. An array whose
    ecg_ids are known but whose folds are not cannot be filtered: a fold filter on it is a ConfigError.
    """
    everything = np.arange(len(corpus), dtype=np.int64)
    fix = "pass --corpus-folds 1-8 to leave them out, or --allow-eval-folds to pretrain on them anyway"
    if corpus.inside_ptbxl is not None and not allow_eval_folds:
        raise ConfigError(
            f"corpus {corpus.name} is a folder of WFDB records inside the PTB-XL folder {corpus.inside_ptbxl}, "
            f"so its records' folds (including the evaluation folds {format_folds(EVAL_FOLDS)}) cannot be told "
            f"apart; pass --corpus {corpus.inside_ptbxl} with --corpus-folds 1-8 instead, or --allow-eval-folds"
        )
    if corpus.folds is not None:
        keep = np.ones(len(corpus), dtype=bool) if folds is None else np.isin(corpus.folds, list(folds))
        rows = np.flatnonzero(keep)
        present = sorted(set(corpus.folds.tolist()) - {0})
        if len(rows) == 0:
            raise DataError(
                f"corpus {corpus.name} holds no record of folds {format_folds(folds)}; its folds are "
                f"{format_folds(present) or 'none that the database lists'}"
            )
        used = np.bincount(corpus.folds[rows], minlength=11)
        in_eval = {f: int(used[f]) for f in EVAL_FOLDS if used[f]}
        if in_eval and not allow_eval_folds:
            counts = ", ".join(f"fold {f}: {n}" for f, n in in_eval.items())
            raise ConfigError(
                f"corpus {corpus.name} would include {sum(in_eval.values())} records of the evaluation folds "
                f"{format_folds(list(in_eval))} ({counts}), whose signals an encoder must not see before it is "
                f"scored on them; {fix}"
            )
        used_folds = [f for f in ALL_FOLDS if used[f]]
        unlisted = f", {int(used[0])} not listed in its fold database" if used[0] else ""
        summary = (
            f"PTB-XL folds {format_folds(used_folds)}"
            + (" (all)" if folds is None else f" (filter {format_folds(folds)})")
            + f": {len(rows)} of {len(corpus)} records{unlisted}"
            + (
                f"; includes evaluation folds {format_folds(list(in_eval))} (--allow-eval-folds)"
                if in_eval
                else ""
            )
        )
        return CorpusUse(rows, corpus.ecg_ids[rows], used_folds, summary)
    if corpus.ecg_ids is not None:
        if folds is not None:
            raise ConfigError(
                f"corpus {corpus.name} lists PTB-XL ecg_ids ({IDS_FILE}) but not their folds, so --corpus-folds "
                "cannot select from it; add --corpus-folds-from DIR, a PTB-XL folder whose ptbxl_database.csv "
                "gives their strat_folds (e.g. ../shared/data/ptbxl-2285)"
            )
        summary = (
            f"{len(corpus)} PTB-XL records, folds unknown (add --corpus-folds-from DIR to check or filter them); "
            "their ecg_ids are recorded as seen"
        )
        return CorpusUse(everything, corpus.ecg_ids, None, summary)
    summary = f"{len(corpus)} {corpus.origin} records, not PTB-XL's: used whole, no fold filter applies"
    return CorpusUse(everything, np.zeros(0, dtype=np.int64), None, summary)
