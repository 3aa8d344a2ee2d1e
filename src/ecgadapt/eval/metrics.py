"""Multi-label ranking metrics: per-class and macro AUROC / AUPRC, vectorised for bootstrapping.

AUROC is the Mann-Whitney statistic (a tied positive/negative pair counts one half), which equals
sklearn's ``roc_auc_score``. AUPRC is average precision with sklearn's step-wise definition
(``average_precision_score``): tied scores form one threshold, no interpolation. Its chance level is
the class prevalence. A class with no positive or no negative record cannot be scored: it is left out
of the macro averages and listed in ``excluded_classes``; so are classes with fewer than ``min_positives``
positives and classes the caller names (e.g. those without a training positive), each with its reason.

Every metric here is computed from one descending sort per class (:class:`RankedScores`). Because a
bootstrap resample is the original records with integer multiplicities, the sort is reused for every
resample: :meth:`RankedScores.per_class` takes those multiplicities as weights (one vector or a batch).

Why not scikit-learn: its ``roc_auc_score`` and ``average_precision_score`` are the reference these functions
are tested against (``tests/eval/test_metrics.py``, equal within 1e-10, ties included), but they sort every
class again for every call. On 2,198 records x 71 classes one scoring takes 33 ms here against 275 ms with
sklearn, and 200 bootstrap resamples 0.8 s against 76 s (2-core machine, one thread).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ecgadapt.errors import DataError

__all__ = [
    "MetricInputError",
    "RankedScores",
    "check_inputs",
    "classification_metrics",
    "exclusion_reasons",
    "macro_auprc",
    "macro_auroc",
    "per_class_table",
    "score",
]

# Cap on elements per batched weight array (B * N * C) (small batches stay in cache).
_MAX_BATCH_ELEMENTS = 1 << 16


class MetricInputError(DataError, ValueError):
    """Labels or scores that cannot be scored (wrong shape, non-binary labels, NaN/inf scores)."""


def _as_2d(name: str, array: Any) -> np.ndarray:
    """Return ``array`` as a 2-D (records, classes) array; a 1-D array is one class."""
    arr = np.asarray(array)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise MetricInputError(
            f"{name} must have shape (records, classes) or (records,), got shape {arr.shape}"
        )
    return arr


def check_inputs(y_true: Any, y_score: Any, score_name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(y_true as int8 (N, C), y_score as float64 (N, C))``."""
    yt = _as_2d("y_true", y_true)
    ys = _as_2d(score_name, y_score)
    if yt.shape != ys.shape:
        raise MetricInputError(
            f"y_true has shape {yt.shape} but {score_name} has shape {ys.shape}: "
            "both must be (records, classes) with the same records and classes in the same order"
        )
    if yt.shape[0] == 0 or yt.shape[1] == 0:
        raise MetricInputError(f"y_true is empty (shape {yt.shape}): need at least one record and one class")
    if yt.dtype != bool:
        if not np.issubdtype(yt.dtype, np.number):
            raise MetricInputError(f"y_true must be numeric 0/1 labels, got dtype {yt.dtype}")
        bad = ~np.isin(yt, (0, 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise MetricInputError(
                f"y_true must contain only 0 and 1, found {yt[r, c]!r} at record {r}, class {c} "
                f"({int(bad.sum())} bad entries): binarise the labels first"
            )
    if not np.issubdtype(ys.dtype, np.number) or np.issubdtype(ys.dtype, np.complexfloating):
        raise MetricInputError(f"{score_name} must be real-valued, got dtype {ys.dtype}")
    ys = ys.astype(np.float64, copy=False)
    finite = np.isfinite(ys)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        n_nan = int(np.isnan(ys).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise MetricInputError(
            f"{score_name} contains non-finite values ({n_nan} NaN, {n_inf} inf; first at record {r}, "
            f"class {c}): the model produced NaN/inf outputs, fix training (e.g. lower the learning rate) "
            "before scoring"
        )
    return yt.astype(np.int8, copy=False), ys


def _class_names(class_names: Sequence[str] | None, n_classes: int) -> list[str]:
    """Return the class names, defaulting to ``class_0 ...``; checks the count."""
    if class_names is None:
        return [f"class_{i}" for i in range(n_classes)]
    names = [str(n) for n in class_names]
    if len(names) != n_classes:
        raise MetricInputError(f"class_names has {len(names)} names but the labels have {n_classes} classes")
    return names


class RankedScores:
    """Labels and scores sorted once per class, ready to score any reweighting (bootstrap) of the records."""

    def __init__(self, y_true: Any, y_score: Any, *, validate: bool = True) -> None:
        if validate:
            yt, ys = check_inputs(y_true, y_score)
        else:
            yt, ys = _as_2d("y_true", y_true), _as_2d("y_score", y_score)
        n, c = ys.shape
        self.n_records, self.n_classes = n, c
        # Class-major layout (C, N): each class's records in descending score order, contiguous in memory.
        # Tie order is irrelevant because tied scores are handled as one group.
        scores_t = np.ascontiguousarray(ys.T)
        self.order = np.argsort(-scores_t, axis=1, kind="stable")
        sorted_scores = np.take_along_axis(scores_t, self.order, axis=1)
        self.labels = np.take_along_axis(np.ascontiguousarray(yt.T), self.order, axis=1).astype(np.int64)
        idx = np.broadcast_to(np.arange(n)[None, :], (c, n))
        new_group = np.ones((c, n), dtype=bool)
        new_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
        # First and last sorted position of each position's tie group, as flat indices into (C * N).
        group_start = np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
        is_end = np.empty((c, n), dtype=bool)
        is_end[:, :-1] = new_group[:, 1:]
        is_end[:, -1] = True
        group_end = np.minimum.accumulate(np.where(is_end, idx, n)[:, ::-1], axis=1)[:, ::-1]
        rows = np.arange(c)[:, None] * n
        start_flat = (group_start + rows).ravel()
        end_flat = (group_end + rows).ravel()
        self._order_flat = self.order.ravel()
        self._last_flat = np.arange(c) * n + (n - 1)
        self.n_pos = self.labels.sum(axis=1)
        self.n_neg = n - self.n_pos
        self.scorable = (self.n_pos > 0) & (self.n_neg > 0)
        # Only positives contribute to the sums, so the per-resample work beyond one cumsum is O(positives).
        # Positives are listed class by class; cumulative sums over that list are indexed with a leading 0.
        lab_flat = self.labels.ravel()
        pos = np.flatnonzero(lab_flat)
        pos_class = pos // n
        self._offsets = np.concatenate([[0], np.cumsum(self.n_pos)])
        clab = np.cumsum(self.labels, axis=1).ravel()
        base = self._offsets[pos_class]
        self._pos, self._pos_class, self._pos_base = pos, pos_class, base
        self._pos_end, self._pos_start = end_flat[pos], start_flat[pos]
        # Positives up to the end of, and strictly before the start of, each positive's tie group.
        self._pos_k_end = base + clab[self._pos_end]
        self._pos_k_before = base + clab[self._pos_start] - lab_flat[self._pos_start]

    def per_class(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-class ``(auroc, auprc)``; NaN for unscorable classes.

        ``weights`` are integer record multiplicities: shape (N,) gives arrays of shape (C,); shape (B, N)
        gives (B, C), one row per reweighting. ``None`` means every record once.
        """
        if weights is None:
            auroc, auprc = self._batch(np.ones((1, self.n_classes * self.n_records)))
            return auroc[0], auprc[0]
        w = np.asarray(weights)
        single = w.ndim == 1
        w2 = w[None] if single else w
        if w2.ndim != 2 or w2.shape[1] != self.n_records:
            raise MetricInputError(
                f"weights must have shape ({self.n_records},) or (B, {self.n_records}), got {w.shape}"
            )
        if np.any(w2 < 0):
            raise MetricInputError("weights must be non-negative record multiplicities")
        w2 = w2.astype(np.float64, copy=False)
        step = max(1, _MAX_BATCH_ELEMENTS // max(self.n_records * self.n_classes, 1))
        aurocs, auprcs = [], []
        for lo in range(0, w2.shape[0], step):
            a, p = self._batch(w2[lo : lo + step][:, self._order_flat])
            aurocs.append(a)
            auprcs.append(p)
        auroc, auprc = np.concatenate(aurocs), np.concatenate(auprcs)
        return (auroc[0], auprc[0]) if single else (auroc, auprc)

    def _segment_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum (B, P) per-positive values class by class into (B, C)."""
        b = values.shape[0]
        padded = np.concatenate([values, np.zeros((b, 1))], axis=1)
        sums = np.add.reduceat(padded, self._offsets[:-1], axis=1)
        sums[:, self.n_pos == 0] = 0.0
        return sums

    def _batch(self, ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metrics for float multiplicities ``ws`` (B, C*N) in sorted class-major order; two (B, C) arrays."""
        b = ws.shape[0]
        c, n = self.n_classes, self.n_records
        cw = np.cumsum(ws.reshape(b, c, n), axis=2).reshape(b, c * n)
        wp = ws[:, self._pos]
        cpw = np.zeros((b, wp.shape[1] + 1))
        np.cumsum(wp, axis=1, out=cpw[:, 1:])
        base = cpw[:, self._pos_base]
        tp_end = cpw[:, self._pos_k_end] - base
        tot_end = cw[:, self._pos_end]
        fp_end = tot_end - tp_end
        fp_before = cw[:, self._pos_start] - ws[:, self._pos_start] - (cpw[:, self._pos_k_before] - base)
        n_pos = cpw[:, self._offsets[1:]] - cpw[:, self._offsets[:-1]]
        n_neg = cw[:, self._last_flat] - n_pos
        ok = (n_pos > 0) & (n_neg > 0)
        # Each positive beats the negatives below its tie group and ties half of those inside it.
        wins = self._segment_sum(wp * (n_neg[:, self._pos_class] - 0.5 * (fp_end + fp_before)))
        denom = n_pos * n_neg
        auroc = np.divide(wins, denom, out=np.full_like(denom, np.nan), where=ok)
        # Each positive contributes the precision at the end of its tie group (its threshold).
        precision = np.divide(tp_end, tot_end, out=np.zeros_like(tot_end), where=tot_end > 0)
        auprc = np.divide(self._segment_sum(wp * precision), n_pos, out=np.full_like(n_pos, np.nan), where=ok)
        return auroc, auprc


def _require_scorable(ranked: RankedScores, what: str) -> None:
    """Raise when no class has both a positive and a negative record."""
    if not ranked.scorable.any():
        raise MetricInputError(
            f"cannot compute {what}: none of the {ranked.n_classes} classes has both a positive and a "
            f"negative record among the {ranked.n_records} records; score a larger or more varied split"
        )


def exclusion_reasons(
    n_pos: np.ndarray,
    n_neg: np.ndarray,
    class_names: Sequence[str],
    min_positives: int = 1,
    exclude: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``{class: reason}`` of the classes left out of the macro metrics.

    A class is left out when it has no negative, fewer than ``min_positives`` positives (at least one is
    always needed), or is named in ``exclude`` (e.g. no positive in the training split) with its reason.
    """
    k = max(int(min_positives), 1)
    exclude = exclude or {}
    reasons = {}
    for name, pos, neg in zip(class_names, n_pos, n_neg):
        if name in exclude:
            reasons[name] = exclude[name]
        elif pos == 0:
            reasons[name] = "no positive in the scored split"
        elif pos < k:
            reasons[name] = f"{int(pos)} positive(s) in the scored split, fewer than the minimum {k}"
        elif neg == 0:
            reasons[name] = "no negative in the scored split"
    return reasons


def classification_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    class_names: Sequence[str] | None = None,
    min_positives: int = 1,
    exclude: Mapping[str, str] | None = None,
) -> dict:
    """Per-class and macro AUROC / AUPRC. The macro averages leave out the classes of :func:`exclusion_reasons`
    (listed with their reasons in ``exclusions``); per-class values are kept for every scorable class."""
    ranked = RankedScores(y_true, y_score)
    names = _class_names(class_names, ranked.n_classes)
    _require_scorable(ranked, "macro AUROC/AUPRC")
    auroc, auprc = ranked.per_class()
    n = ranked.n_records
    reasons = exclusion_reasons(ranked.n_pos, ranked.n_neg, names, min_positives, exclude)
    in_macro = np.array([name not in reasons for name in names])
    if not in_macro.any():
        raise MetricInputError(
            f"cannot compute macro AUROC/AUPRC: every one of the {len(names)} classes is left out "
            f"({'; '.join(f'{c}: {r}' for c, r in list(reasons.items())[:3])})"
        )
    per_class = []
    for i, name in enumerate(names):
        ok = bool(ranked.scorable[i])
        per_class.append(
            {
                "class": name,
                "auroc": float(auroc[i]) if ok else None,
                "auprc": float(auprc[i]) if ok else None,
                "prevalence": float(ranked.n_pos[i]) / n,
                "n_pos": int(ranked.n_pos[i]),
                "n_neg": int(ranked.n_neg[i]),
            }
        )
    return {
        "macro_auroc": float(np.mean(auroc[in_macro])),
        "macro_auprc": float(np.mean(auprc[in_macro])),
        "n_records": int(n),
        "n_classes_scored": int(in_macro.sum()),
        "excluded_classes": list(reasons),
        "exclusions": [{"class": c, "reason": r} for c, r in reasons.items()],
        "min_positives": max(int(min_positives), 1),
        "per_class": per_class,
    }


def score(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    class_names: Sequence[str] | None = None,
    min_positives: int = 1,
    exclude: Mapping[str, str] | None = None,
) -> dict:
    """Classification metrics plus mean BCE ``loss``; macro metrics are NaN when no class can be scored.

    ``min_positives`` and ``exclude`` decide which classes the macro averages leave out
    (:func:`exclusion_reasons`)."""
    p = np.clip(y_prob.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))
    try:
        metrics = classification_metrics(y_true, y_prob, class_names, min_positives, exclude)
    except MetricInputError:
        metrics = {"macro_auroc": math.nan, "macro_auprc": math.nan, "per_class": [], "excluded_classes": []}
    metrics["loss"] = loss
    return metrics


def macro_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Unweighted mean AUROC over the classes that have a positive and a negative record."""
    ranked = RankedScores(y_true, y_score)
    _require_scorable(ranked, "macro AUROC")
    return float(np.mean(ranked.per_class()[0][ranked.scorable]))


def macro_auprc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Unweighted mean average precision over the classes that have a positive and a negative record."""
    ranked = RankedScores(y_true, y_score)
    _require_scorable(ranked, "macro AUPRC")
    return float(np.mean(ranked.per_class()[1][ranked.scorable]))


def per_class_table(y_true: np.ndarray, y_score: np.ndarray, class_names: Sequence[str] | None = None):
    """Per-class metrics as a pandas DataFrame (one row per class, excluded classes with NaN metrics)."""
    import pandas as pd

    result = classification_metrics(y_true, y_score, class_names)
    table = pd.DataFrame(
        result["per_class"], columns=["class", "auroc", "auprc", "prevalence", "n_pos", "n_neg"]
    )
    table[["auroc", "auprc"]] = table[["auroc", "auprc"]].astype(float)
    table["scored"] = table["auroc"].notna()
    return table
