"""Formatting helpers shared by the report's sections (numbers, intervals, p-values, slugs, ordering)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ecgadapt.eval.report.stats import sd

__all__ = [
    "METRIC_NAMES",
    "boot_p_text",
    "budget_text",
    "ci",
    "deltas",
    "early_stopping_text",
    "fmt",
    "mean_std",
    "order",
    "p_text",
    "pm",
    "seed_p_text",
    "signed",
    "signed_ci",
    "slug",
]

METRIC_NAMES = {"macro_auroc": "macro AUROC", "macro_auprc": "macro AUPRC"}


def order(values: Sequence[str], canonical: Sequence[str]) -> list[str]:
    """The distinct ``values``: those in ``canonical`` in its order, then the others sorted."""
    values = list(dict.fromkeys(values))
    known = [v for v in canonical if v in values]
    return known + sorted(v for v in values if v not in canonical)


def fmt(x: Any, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; – for a missing or non-finite value."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def pm(mean: float, std: float) -> str:
    """``mean ± std`` (the mean alone when the std is not finite)."""
    if not np.isfinite(std):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` of ``values`` (sample std; the mean alone for one value)."""
    return pm(float(np.mean(values)), sd(values))


def ci(low: float, high: float) -> str:
    """``[low, high]``; – when either bound is not finite."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return f"[{fmt(low)}, {fmt(high)}]"


def signed(x: float, digits: int = 3) -> str:
    """``x`` with its sign (``+0.012``, ``−0.014``: a true minus sign); – when missing."""
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}".replace("-", "−")


def signed_ci(low: float, high: float, digits: int = 3) -> str:
    """``[−0.030, +0.002]``; – when either bound is not finite."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return f"[{signed(low, digits)}, {signed(high, digits)}]"


def deltas(comp: pd.DataFrame, prefix: str) -> list[str]:
    """``Δ [low, high]`` cells (signed) from the ``{prefix}_diff/_low/_high`` columns of a comparison table."""
    cols = (comp[f"{prefix}_diff"], comp[f"{prefix}_low"], comp[f"{prefix}_high"])
    return [f"{signed(d)} {signed_ci(lo, hi)}" if np.isfinite(d) else "–" for d, lo, hi in zip(*cols)]


def p_text(p: float) -> str:
    """A p-value with three significant digits, ``<0.001`` below that; – when missing."""
    if p is None or not np.isfinite(p):
        return "–"
    return f"{p:.3g}" if p >= 1e-3 else "<0.001"


#: Fewer seeds than this give no seed-level p-value.
MIN_SEEDS_FOR_P = 3


def seed_p_text(p: float, n_seeds: int) -> str:
    """A paired t-test p over ``n_seeds`` seeds, as far as they support it: – with fewer than
    :data:`MIN_SEEDS_FOR_P`; below ``2 ** (1 - n)``, the smallest p that a sign-flip test over n seeds can
    reach, ``<`` that floor."""
    if n_seeds < MIN_SEEDS_FOR_P:
        return "–"
    floor = 2.0 ** (1 - n_seeds)
    if p is not None and np.isfinite(p) and p < floor:
        return f"<{floor:.3g}"
    return p_text(p)


def boot_p_text(p: float, n_resamples: int) -> str:
    """A paired-bootstrap p from ``n_resamples`` resamples: at its floor ``2 / (B + 1)`` (every resample on one
    side of zero) ``≤`` that floor, since fewer resamples than that cannot say how small it is."""
    floor = 2.0 / (n_resamples + 1)
    if p is not None and np.isfinite(p) and p <= floor * (1 + 1e-9):
        return f"≤{floor:.3g}"
    return p_text(p)


def slug(text: str) -> str:
    """``text`` as a lower-case file-name and anchor fragment (non-alphanumerics become ``-``)."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def budget_text(part: pd.DataFrame) -> str:
    """``"240 / 181"``: the runs' maximum optimiser steps and the mean they used (– when unrecorded)."""
    if "max_total_steps" not in part or part["max_total_steps"].isna().all():
        return "–"
    limits = sorted({int(v) for v in part["max_total_steps"].dropna()})
    used = pd.to_numeric(part["steps_run"], errors="coerce")
    return f"{'/'.join(str(v) for v in limits)} / {used.mean():.0f}"


def _stage_early_stopping(row: pd.Series) -> list[tuple[Any, Any]]:
    """(patience, min_delta) of each stage of one results row (from its ``recipe.stages.N.*`` columns)."""
    out, i = [], 0
    while f"recipe.stages.{i}.patience" in row.index or f"recipe.stages.{i}.min_delta" in row.index:
        patience, min_delta = row.get(f"recipe.stages.{i}.patience"), row.get(f"recipe.stages.{i}.min_delta")
        if pd.isna(patience) and pd.isna(min_delta):
            break  # a recipe with fewer stages than another in the same table
        out.append(
            (None if pd.isna(patience) else int(patience), None if pd.isna(min_delta) else float(min_delta))
        )
        i += 1
    return out


def early_stopping_text(part: pd.DataFrame) -> str:
    """``"5 (min Δ 0.001)"``: the runs' early-stopping patience and min_delta, per stage where the stages differ
    (``"5, 10 (min Δ 0.001)"``), ``off`` for a stage that never stops early; – when unrecorded."""
    texts = set()
    for _, row in part.iterrows():
        stages = _stage_early_stopping(row)
        if not stages:
            continue
        patience = [("off" if p is None else str(p)) for p, _ in stages]
        deltas_ = sorted({d for _, d in stages if d is not None})
        text = patience[0] if len(set(patience)) == 1 else ", ".join(patience)
        if deltas_:
            text += f" (min Δ {'/'.join(f'{d:g}' for d in deltas_)})"
        texts.add(text)
    return "; ".join(sorted(texts)) if texts else "–"
