"""The report's statistics: seed summaries, the seed-averaged record bootstrap and paired recipe comparisons.

* **mean ± std** is over training seeds (std with ddof=1).
* **CI (records)** is a 95% percentile bootstrap over *test records* of the *seed-averaged* metric: the
  same resampled records score every seed's predictions, the per-seed metrics are averaged, and the
  interval is taken over resamples (the redraw rule of :func:`~ecgadapt.eval.bootstrap.resample_indices`
  keeps every class scorable). It covers test-set sampling only; the trained models are held fixed.
* **CI (seeds, t)** is a t-interval of the mean over seeds (:func:`~ecgadapt.eval.bootstrap.seed_summary`):
  training variation only.
* A comparison of two recipes gives the relative improvement of the seed means, ``(a - b) / b * 100 %``,
  a paired t-test over seeds (:func:`~ecgadapt.eval.bootstrap.paired_seed_difference`) and a paired
  record bootstrap of the seed-averaged difference (:func:`~ecgadapt.eval.bootstrap.pooled_paired_bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.errors import DataError
from ecgadapt.eval.bootstrap import (
    grouping_name,
    paired_seed_difference,
    pooled_paired_bootstrap,
    resample_counts,
    seed_summary,
)
from ecgadapt.eval.metrics import MetricInputError, RankedScores
from ecgadapt.eval.results import check_bootstrap_groups, load_predictions, read_final, run_patient_ids

__all__ = [
    "METRICS",
    "Predictions",
    "align_predictions",
    "patient_groups",
    "compare_recipes",
    "relative_improvement",
    "sd",
    "seed_averaged_bootstrap",
    "summarise",
]

METRICS = ("macro_auroc", "macro_auprc")


def relative_improvement(new: float, base: float) -> float:
    """``(new - base) / base * 100``: the relative change in percent (NaN when ``base`` is 0 or missing)."""
    if base is None or new is None or not np.isfinite(base) or not np.isfinite(new) or base == 0:
        return math.nan
    return (new - base) / base * 100.0


def seed_averaged_bootstrap(
    y_true: np.ndarray,
    scores: Sequence[np.ndarray],
    metric: str = "macro_auroc",
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap over records (over ``groups``, e.g. patients, when given) of the seed-averaged
    ``metric``: ``{point, low, high, n_runs, grouping}``.

    Every run (seed) is scored on the same resampled records; the statistic is the mean over runs.
    """
    if metric not in METRICS:
        raise DataError(f"seed_averaged_bootstrap supports {METRICS}, not {metric!r}")
    if not scores:
        raise MetricInputError("seed_averaged_bootstrap needs at least one run's scores")
    col = METRICS.index(metric)
    counts, n_redrawn = resample_counts(y_true, n_resamples, seed, groups)
    points, samples = [], []
    for s in scores:
        ranked = RankedScores(y_true, s)
        ok = ranked.scorable
        points.append(float(np.mean(ranked.per_class()[col][ok])))
        samples.append(ranked.per_class(counts)[col][:, ok].mean(axis=1))
    avg = np.mean(samples, axis=0)
    low, high = np.quantile(avg, [alpha / 2, 1 - alpha / 2])
    return {
        "metric": metric,
        "point": float(np.mean(points)),
        "low": float(low),
        "high": float(high),
        "n_runs": len(scores),
        "n_resamples": int(n_resamples),
        "n_redrawn": int(n_redrawn),
        "alpha": alpha,
        "grouping": grouping_name(groups),
    }


def summarise(table: pd.DataFrame, by: Sequence[str], column: str, alpha: float = 0.05) -> pd.DataFrame:
    """Mean, std, n and t-interval over seeds of ``column`` per group ``by``."""
    rows = []
    for keys, part in table.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        values = part[column].dropna().to_numpy(float)
        values = values[np.isfinite(values)]
        if len(values):
            s = seed_summary(values, alpha)
        else:
            s = {"mean": math.nan, "std": math.nan, "n": 0, "ci_low": math.nan, "ci_high": math.nan}
        rows.append(
            {
                **dict(zip(by, keys)),
                "mean": s["mean"],
                "std": s["std"],
                "n": s["n"],
                "t_low": s["ci_low"],
                "t_high": s["ci_high"],
            }
        )
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "t_low", "t_high"])


class Predictions:
    """Test predictions of runs, loaded once, aligned on the first run's record order; ``grouping``
    (``records`` or ``patient``) is what the bootstraps resample."""

    def __init__(self, grouping: str = "records") -> None:
        self._cache: dict[str, dict] = {}
        self.grouping = check_bootstrap_groups(grouping)

    @property
    def unit(self) -> str:
        """What a bootstrap resamples, in words: ``records`` or ``patients``."""
        return "patients" if self.grouping == "patient" else "records"

    def get(self, run_dir: str) -> dict:
        """The run's test predictions, with ``excluded``: the classes its macro metrics left out (and, when
        bootstrapping patients, each record's ``patient_ids``)."""
        if run_dir not in self._cache:
            pred = dict(load_predictions(run_dir, "test"))
            pred["excluded"] = set((read_final(run_dir).get("test") or {}).get("excluded_classes") or [])
            if self.grouping == "patient":
                pred["patient_ids"] = run_patient_ids(run_dir, "test", pred)
            self._cache[run_dir] = pred
        return self._cache[run_dir]

    def groups(self, run_dirs: Sequence[str]) -> np.ndarray | None:
        """The bootstrap groups of the records :meth:`aligned` returns (the first run's patients in sorted
        record order, a record of unknown patient its own group), or None when bootstrapping records."""
        if self.grouping != "patient":
            return None
        return patient_groups(self.get(run_dirs[0]))

    def aligned(self, run_dirs: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """``(y_true, [scores per run])`` on common record order, or None when the runs scored different records.

        Classes that any of the runs left out of its macro metrics are dropped, so the bootstrap averages the
        same classes as the reported macro metrics."""
        preds = [self.get(d) for d in run_dirs]
        names = list(preds[0]["class_names"])
        excluded = set().union(*(p["excluded"] for p in preds))
        keep = np.array([c not in excluded for c in names])
        if not keep.any():
            return None
        aligned = align_predictions(preds)
        if aligned is None:
            return None
        y, scores = aligned
        return y[:, keep], [s[:, keep] for s in scores]


def patient_groups(pred: dict) -> np.ndarray:
    """Bootstrap groups of a predictions dict in its sorted record order (the order of
    :func:`align_predictions`): each record's patient, a record of unknown patient (-1) a group of its own."""
    order = np.argsort(pred["ecg_ids"], kind="stable")
    patients = np.asarray(pred["patient_ids"], dtype=np.int64)[order]
    unknown = patients < 0
    if unknown.all():
        raise DataError(
            "no test record's patient is known (a CinC source, or a folder without a patient_id column): "
            "bootstrap records instead (--bootstrap-groups records)"
        )
    singletons = patients.max() + 1 + np.arange(len(patients))
    return np.where(unknown, singletons, patients)


def align_predictions(preds: Sequence[dict]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """``(y_true, [y_score per run])`` of several runs' predictions in the first run's sorted record order, or
    None when they scored different records, classes or labels."""
    ref = preds[0]
    names = list(ref["class_names"])
    order_ref = np.argsort(ref["ecg_ids"], kind="stable")
    ids_ref = ref["ecg_ids"][order_ref]
    y = ref["y_true"][order_ref]
    out = []
    for p in preds:
        if len(p["ecg_ids"]) != len(ids_ref) or list(p["class_names"]) != names:
            return None
        order = np.argsort(p["ecg_ids"], kind="stable")
        if not np.array_equal(p["ecg_ids"][order], ids_ref) or not np.array_equal(p["y_true"][order], y):
            return None
        out.append(p["y_score"][order])
    return y, out


def compare_recipes(
    table: pd.DataFrame,
    a: str = "post_training",
    b: str = "baseline_ft",
    keys: Sequence[str] = ("setting", "task", "fraction"),
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    predictions: Predictions | None = None,
) -> pd.DataFrame:
    """Recipe ``a`` against ``b`` per group ``keys`` and metric: seed means, relative improvement (%),
    paired seed difference (t) and paired record bootstrap of the seed-averaged difference."""
    predictions = predictions or Predictions()
    rows = []
    for group, part in table.groupby(list(keys), sort=False):
        group = group if isinstance(group, tuple) else (group,)
        pa, pb = part[part["recipe"] == a], part[part["recipe"] == b]
        if pa.empty or pb.empty:
            continue
        common = sorted(set(pa["seed"]) & set(pb["seed"]))
        for metric in METRICS:
            col = f"test_{metric}"
            mean_a, mean_b = float(pa[col].mean()), float(pb[col].mean())
            row: dict[str, Any] = {
                **dict(zip(keys, group)),
                "metric": metric,
                "a": a,
                "b": b,
                "mean_a": mean_a,
                "mean_b": mean_b,
                "rel_improvement_pct": relative_improvement(mean_a, mean_b),
                "n_seeds": len(common),
                "seed_diff": math.nan,
                "seed_low": math.nan,
                "seed_high": math.nan,
                "seed_p": math.nan,
                "boot_diff": math.nan,
                "boot_low": math.nan,
                "boot_high": math.nan,
                "boot_p": math.nan,
                "note": "",
            }
            if len(common) >= 1:
                sa = dict(zip(pa["seed"], pa[col]))
                sb = dict(zip(pb["seed"], pb[col]))
                try:
                    d = paired_seed_difference({s: sa[s] for s in common}, {s: sb[s] for s in common}, alpha)
                    row.update(
                        seed_diff=d["mean_diff"],
                        seed_low=d["ci_low"],
                        seed_high=d["ci_high"],
                        seed_p=d["p_value"],
                    )
                except MetricInputError as err:
                    row["note"] = str(err)
            if len(common) < len(set(pa["seed"]) | set(pb["seed"])):
                row["note"] = f"paired over the {len(common)} seeds both recipes ran"
            dirs_a = list(pa["run_dir"])
            dirs_b = list(pb["run_dir"])
            aligned = predictions.aligned(dirs_a + dirs_b)
            if aligned is None:
                row["note"] = "runs scored different test records: no record bootstrap"
            else:
                y, scores = aligned
                try:
                    boot = pooled_paired_bootstrap(
                        y,
                        scores[: len(dirs_a)],
                        scores[len(dirs_a) :],
                        metric,
                        n_resamples,
                        seed,
                        alpha,
                        groups=predictions.groups(dirs_a + dirs_b),
                    )
                    row.update(
                        boot_diff=boot["diff"],
                        boot_low=boot["low"],
                        boot_high=boot["high"],
                        boot_p=boot["p_value"],
                    )
                except MetricInputError as err:
                    row["note"] = f"no record bootstrap: {err}"
            rows.append(row)
    return pd.DataFrame(rows)


def sd(values: Sequence[float]) -> float:
    """Sample standard deviation (NaN for fewer than two values)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
