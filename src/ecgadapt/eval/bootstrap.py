"""Uncertainty for benchmark numbers: record-level bootstrap intervals, paired tests, seed-level statistics.

Record level (one test set, fixed predictions): :func:`bootstrap_ci` resamples records with replacement
and reports a percentile interval; :func:`paired_bootstrap` compares two runs on the *same* resampled
records; :func:`pooled_paired_bootstrap` does the same for the seed-averaged metric of two groups of runs.
Following the PTB-XL benchmark, a resample in which a class that is scorable on the full set has no
positive (or no negative) record is redrawn, so every resample scores the same classes.

``groups`` (one label per record, e.g. its patient) resamples groups instead of records: a drawn group brings
all its records, so records of one patient, which are alike, never count as independent evidence
(:func:`resample_counts`; :func:`grouping_name` names the unit a result used).

Seed level (one number per training seed): :func:`seed_summary` gives a t-interval for the mean and
:func:`paired_seed_difference` a paired t-test (and Wilcoxon signed-rank test from 6 seeds) of two
recipes run with the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ecgadapt.errors import ConfigError
from ecgadapt.eval.metrics import MetricInputError, RankedScores, check_inputs

__all__ = [
    "METRICS",
    "bootstrap_ci",
    "paired_bootstrap",
    "paired_seed_difference",
    "pooled_paired_bootstrap",
    "grouping_name",
    "resample_counts",
    "resample_indices",
    "seed_summary",
]

Metric = str | Callable[[np.ndarray, np.ndarray], float]

#: Built-in metric names, computed with the fast sorted-once path of :class:`RankedScores`.
METRICS = ("macro_auroc", "macro_auprc")

_CHUNK = 256  # resamples drawn (and scored) per batch


def _check_alpha(alpha: float, n_resamples: int) -> None:
    """Validate the interval level and resample count."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}; use 0.05 for a 95% interval")
    if int(n_resamples) < 1:
        raise ConfigError(f"n_resamples must be a positive integer, got {n_resamples}")


def resample_indices(
    y_true: np.ndarray, n_resamples: int = 1000, seed: int = 0, max_draws_factor: int = 100
) -> tuple[np.ndarray, int]:
    """Draw ``(indices (n_resamples, N), n_rejected)``: bootstrap resamples keeping every scorable class scorable.

    A class with a positive and a negative record in ``y_true`` must keep at least one of each in every
    resample; resamples that break this are redrawn. At most ``max_draws_factor * n_resamples`` draws are
    made before giving up with an error.
    """
    y = np.asarray(y_true)
    y = y[:, None] if y.ndim == 1 else y
    required, n_pos = _required_classes(y)
    n = y.shape[0]
    rng = np.random.default_rng(seed)

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, n, size=(k, n))
        return idx, _counts(idx, n)

    def give_up(n_drawn: int, n_accepted: int) -> MetricInputError:
        rarest = np.argsort(np.minimum(n_pos, n - n_pos) + np.where(required, 0, n))[:3]
        detail = ", ".join(f"class {j} ({int(n_pos[j])} of {n} positive)" for j in rarest if required[j])
        return MetricInputError(
            f"bootstrap gave up after {n_drawn} draws: only {n_accepted} of {int(n_resamples)} resamples kept a "
            f"positive and a negative for every class (rarest: {detail}); drop or merge classes this rare, "
            "or evaluate on a larger split"
        )

    return _accepted_resamples(draw, y[:, required], n_resamples, max_draws_factor, give_up)


def _counts(drawn: np.ndarray, n: int) -> np.ndarray:
    """``(k, n)`` counts of each of ``n`` items in each row of ``drawn`` (k rows of drawn item indices)."""
    k = len(drawn)
    return np.bincount((drawn + (np.arange(k) * n)[:, None]).ravel(), minlength=k * n).reshape(k, n)


def _accepted_resamples(
    draw: Callable[[int], tuple[np.ndarray, np.ndarray]],
    y_required: np.ndarray,
    n_resamples: int,
    max_draws_factor: int,
    give_up: Callable[[int, int], MetricInputError],
) -> tuple[np.ndarray, int]:
    """``(n_resamples kept resamples, n_rejected)`` by rejection sampling, for records and groups alike.

    ``draw(k)`` gives ``k`` resamples as ``(what to keep of each, (k, N) count of each record in each)``; a
    resample is kept when every class of ``y_required`` (N, C) has a positive and a negative in it. After
    ``max_draws_factor * n_resamples`` draws, ``give_up(n_drawn, n_accepted)`` is raised.
    """
    y_req = y_required.astype(np.float64)
    n_resamples = int(n_resamples)
    max_draws = max(int(max_draws_factor) * n_resamples, n_resamples)
    accepted: list[np.ndarray] = []
    n_accepted = n_drawn = n_rejected = 0
    while n_accepted < n_resamples:
        k = min(_CHUNK, max(n_resamples - n_accepted, 16))
        keep, counts = draw(k)
        n_drawn += k
        pos = counts @ y_req
        ok = np.all((pos > 0) & (pos < counts.sum(axis=1, keepdims=True)), axis=1)
        n_rejected += int(np.sum(~ok))
        take = keep[ok][: n_resamples - n_accepted]
        accepted.append(take)
        n_accepted += len(take)
        if n_accepted < n_resamples and n_drawn >= max_draws:
            raise give_up(n_drawn, n_accepted)
    return np.concatenate(accepted), n_rejected


def grouping_name(groups: np.ndarray | None) -> str:
    """The resampling unit of a bootstrap: ``"records"``, or ``"patients"`` when ``groups`` are given."""
    return "records" if groups is None else "patients"


def _group_codes(groups: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """``(group index of each record, number of groups)`` of a per-record label array."""
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise MetricInputError(f"groups must hold one label per record ({n}), got shape {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1


def resample_counts(
    y_true: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
    max_draws_factor: int = 100,
) -> tuple[np.ndarray, int]:
    """``(counts (n_resamples, N), n_rejected)``: how often each record is in each bootstrap resample.

    Without ``groups`` the resamples of :func:`resample_indices` (records drawn with replacement). With
    ``groups`` (one label per record), each resample draws as many groups as there are, with replacement, and
    holds every record of each drawn group (so a resample's size varies); a resample that leaves a scorable
    class without a positive or a negative is redrawn, as for records.
    """
    y = np.asarray(y_true)
    y = y[:, None] if y.ndim == 1 else y
    if groups is None:
        idx, rejected = resample_indices(y, n_resamples, seed, max_draws_factor)
        return _counts(idx, y.shape[0]), rejected
    required, _ = _required_classes(y)
    codes, n_groups = _group_codes(groups, y.shape[0])
    if n_groups < 2:
        raise MetricInputError(f"a grouped bootstrap needs at least two groups, got {n_groups}")
    rng = np.random.default_rng(seed)

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        counts = _counts(rng.integers(0, n_groups, size=(k, n_groups)), n_groups)[:, codes]
        return counts, counts

    def give_up(n_drawn: int, n_accepted: int) -> MetricInputError:
        return MetricInputError(
            f"grouped bootstrap gave up after {n_drawn} draws: only {n_accepted} of {int(n_resamples)} resamples of "
            f"the {n_groups} groups kept a positive and a negative for every class; a class this rare is in "
            "too few groups (drop or merge it, or bootstrap records)"
        )

    return _accepted_resamples(draw, y[:, required], n_resamples, max_draws_factor, give_up)


def _required_classes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(classes that are scorable on the full set, positives per class)``; an error when none is."""
    if y.ndim != 2 or y.shape[0] < 2:
        raise MetricInputError(f"bootstrap needs y_true of shape (records >= 2, classes), got {y.shape}")
    n = y.shape[0]
    n_pos = y.sum(axis=0)
    required = (n_pos > 0) & (n_pos < n)
    if not required.any():
        raise MetricInputError(
            f"cannot bootstrap: none of the {y.shape[1]} classes has both a positive and a negative record "
            f"among the {n} records"
        )
    return required, n_pos


class _Scorer:
    """Score one run's predictions on many resamples (fast path for built-in metrics)."""

    def __init__(self, y_true: np.ndarray, y_score: np.ndarray, metric: Metric, score_name: str) -> None:
        self.y_true, self.y_score = check_inputs(y_true, y_score, score_name)
        self.metric = metric
        if isinstance(metric, str):
            if metric not in METRICS:
                raise ConfigError(
                    f"unknown bootstrap metric {metric!r}; choose one of {METRICS} or pass a callable"
                )
            self.ranked = RankedScores(self.y_true, self.y_score, validate=False)
            self.column = METRICS.index(metric)
            self.scorable = self.ranked.scorable
            if not self.scorable.any():
                raise MetricInputError(
                    f"cannot compute {metric}: no class has both a positive and a negative record"
                )
        elif not callable(metric):
            raise ConfigError(
                f"metric must be one of {METRICS} or a callable (y_true, y_score) -> float, got {metric!r}"
            )

    def point(self) -> float:
        """The metric on the full set."""
        if isinstance(self.metric, str):
            return float(np.mean(self.ranked.per_class()[self.column][self.scorable]))
        return float(self.metric(self.y_true, self.y_score))

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        """The metric on each resample (rows of ``counts``: how often each record is in it)."""
        if isinstance(self.metric, str):
            out = np.empty(len(counts))
            for lo in range(0, len(counts), _CHUNK):
                rows = counts[lo : lo + _CHUNK]
                per_class = self.ranked.per_class(rows)[self.column]
                out[lo : lo + len(rows)] = per_class[:, self.scorable].mean(axis=1)
            return out
        n = self.y_true.shape[0]
        rows = [np.repeat(np.arange(n), row) for row in counts]
        return np.array([float(self.metric(self.y_true[i], self.y_score[i])) for i in rows])


def _metric_name(metric: Metric) -> str:
    """A printable name for a metric."""
    return metric if isinstance(metric, str) else getattr(metric, "__name__", repr(metric))


def _result(
    head: dict[str, Any],
    samples: np.ndarray,
    extra: dict[str, Any],
    alpha: float,
    n_resamples: int,
    n_redrawn: int,
    seed: int,
    return_samples: bool,
) -> dict[str, Any]:
    """``{**head, low, high, std, **extra, alpha, n_resamples, n_redrawn, seed[, samples]}`` of bootstrap ``samples``."""
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    out: dict[str, Any] = {
        **head,
        "low": float(low),
        "high": float(high),
        "std": float(np.std(samples, ddof=1)) if len(samples) > 1 else float("nan"),
        **extra,
        "alpha": alpha,
        "n_resamples": int(n_resamples),
        "n_redrawn": int(n_redrawn),
        "seed": seed,
    }
    if return_samples:
        out["samples"] = samples
    return out


def bootstrap_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    metric: Metric = "macro_auroc",
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    return_samples: bool = False,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap interval over records (over ``groups``, e.g. patients, when given):
    ``{point, low, high, std, n_resamples, n_redrawn, grouping, ...}``."""
    _check_alpha(alpha, n_resamples)
    scorer = _Scorer(y_true, y_score, metric, "y_score")
    counts, n_redrawn = resample_counts(scorer.y_true, n_resamples, seed, groups)
    head = {"metric": _metric_name(metric), "point": scorer.point()}
    extra = {"grouping": grouping_name(groups)}
    return _result(head, scorer.resampled(counts), extra, alpha, n_resamples, n_redrawn, seed, return_samples)


def pooled_paired_bootstrap(
    y_true: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    metric: Metric = "macro_auroc",
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    return_samples: bool = False,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of ``mean_s metric(a_s) - mean_s metric(b_s)`` over runs (seeds) on the same records
    (resampled by ``groups``, e.g. patients, when given).

    Every run of both groups is scored on the same resampled records. The statistic is the difference of
    the seed-averaged metrics; the interval covers record-sampling uncertainty only (the runs are held
    fixed), so report it next to :func:`paired_seed_difference`, which covers seed-to-seed variation.
    The p-value is two-sided, ``min(1, 2 * min((1 + #{d <= 0}), (1 + #{d >= 0})) / (B + 1))``.
    """
    _check_alpha(alpha, n_resamples)
    if len(scores_a) == 0 or len(scores_b) == 0:
        raise MetricInputError("pooled_paired_bootstrap needs at least one run in each group")
    scorers_a = [_Scorer(y_true, s, metric, f"score_a[{i}]") for i, s in enumerate(scores_a)]
    scorers_b = [_Scorer(y_true, s, metric, f"score_b[{i}]") for i, s in enumerate(scores_b)]
    counts, n_redrawn = resample_counts(scorers_a[0].y_true, n_resamples, seed, groups)
    point_a = float(np.mean([s.point() for s in scorers_a]))
    point_b = float(np.mean([s.point() for s in scorers_b]))
    samples_a = np.mean([s.resampled(counts) for s in scorers_a], axis=0)
    samples_b = np.mean([s.resampled(counts) for s in scorers_b], axis=0)
    diffs = samples_a - samples_b
    n_le, n_ge = int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0))
    p_value = min(1.0, 2.0 * min(1 + n_le, 1 + n_ge) / (len(diffs) + 1))
    head = {"metric": _metric_name(metric), "diff": point_a - point_b}
    extra = {
        "p_value": float(p_value),
        "point_a": point_a,
        "point_b": point_b,
        "n_runs_a": len(scorers_a),
        "n_runs_b": len(scorers_b),
        "grouping": grouping_name(groups),
    }
    return _result(head, diffs, extra, alpha, n_resamples, n_redrawn, seed, return_samples)


def paired_bootstrap(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    metric: Metric = "macro_auroc",
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    return_samples: bool = False,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of ``metric(a) - metric(b)`` on the same resampled records (or ``groups``): diff,
    interval, p-value."""
    out = pooled_paired_bootstrap(
        y_true, [score_a], [score_b], metric, n_resamples, seed, alpha, return_samples, groups
    )
    del out["n_runs_a"], out["n_runs_b"]
    return out


def _finite_values(values: Sequence[float], name: str) -> np.ndarray:
    """Values as a finite 1-D float array, or a clear error."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise MetricInputError(f"{name} must be a non-empty sequence of numbers, got {values!r}")
    if not np.isfinite(arr).all():
        raise MetricInputError(f"{name} contains NaN or inf: {arr.tolist()}; a run failed, rerun or drop it")
    return arr


def seed_summary(values: Sequence[float], alpha: float = 0.05) -> dict[str, Any]:
    """Mean, std (ddof=1), n and a t-interval of the mean of per-seed values (std/interval NaN when n = 1)."""
    _check_alpha(alpha, 1)
    arr = _finite_values(values, "values")
    n = arr.size
    mean = float(arr.mean())
    if n < 2:
        nan = float("nan")
        return {"mean": mean, "std": nan, "sem": nan, "n": 1, "ci_low": nan, "ci_high": nan, "alpha": alpha}
    std = float(arr.std(ddof=1))
    sem = std / np.sqrt(n)
    half = float(stats.t.ppf(1 - alpha / 2, df=n - 1)) * sem
    return {
        "mean": mean,
        "std": std,
        "sem": float(sem),
        "n": int(n),
        "ci_low": mean - half,
        "ci_high": mean + half,
        "alpha": alpha,
    }


def paired_seed_difference(
    a_by_seed: Mapping[Hashable, float], b_by_seed: Mapping[Hashable, float], alpha: float = 0.05
) -> dict[str, Any]:
    """Paired comparison of two recipes run with the same seeds: mean difference a-b, t-interval, p-values.

    ``p_value`` is the two-sided paired t-test; ``wilcoxon_p`` the two-sided Wilcoxon signed-rank test,
    given from 6 seeds on (None below). When every difference is equal the t-test is degenerate: its
    p-value is then 1.0 if the differences are all zero and 0.0 otherwise.
    """
    _check_alpha(alpha, 1)
    keys_a, keys_b = set(a_by_seed), set(b_by_seed)
    if keys_a != keys_b:
        raise MetricInputError(
            f"paired seed comparison needs the same seeds in both runs: only in a: {sorted(keys_a - keys_b, key=str)}, "
            f"only in b: {sorted(keys_b - keys_a, key=str)}; rerun the missing seeds or drop them from both"
        )
    seeds = sorted(keys_a, key=lambda k: (str(type(k)), k))
    a = _finite_values([a_by_seed[s] for s in seeds], "a_by_seed")
    b = _finite_values([b_by_seed[s] for s in seeds], "b_by_seed")
    diffs = a - b
    summary = seed_summary(diffs, alpha)
    n = diffs.size
    if n < 2:
        p_value = float("nan")
    elif np.all(diffs == diffs[0]):
        p_value = 1.0 if diffs[0] == 0 else 0.0
    else:
        p_value = float(stats.ttest_rel(a, b).pvalue)
    wilcoxon_p = None
    if n >= 6:
        wilcoxon_p = 1.0 if np.all(diffs == 0) else float(stats.wilcoxon(diffs).pvalue)
    return {
        "mean_diff": summary["mean"],
        "std_diff": summary["std"],
        "n": int(n),
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "p_value": p_value,
        "wilcoxon_p": wilcoxon_p,
        "alpha": alpha,
        "per_seed": {s: float(d) for s, d in zip(seeds, diffs)},
    }
