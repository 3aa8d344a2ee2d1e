"""The benchmark report: ``report.md`` and a self-contained ``report.html`` (inline CSS, base64 PNG figures).

Statistics, stated once so that every table reads the same way:

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

import base64
import datetime as _dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ecgadapt.errors import DataError
from ecgadapt.eval.bootstrap import (
    paired_seed_difference,
    pooled_paired_bootstrap,
    resample_indices,
    seed_summary,
)
from ecgadapt.eval.calibration import reliability_curve
from ecgadapt.eval.figures import (
    ablation_figure,
    data_efficiency_figure,
    figure_png,
    recipe_colors,
    reliability_figure,
    training_dynamics_figure,
)
from ecgadapt.eval.metrics import MetricInputError, RankedScores
from ecgadapt.eval.results import (
    ROTATE,
    collect_per_class,
    collect_results,
    load_metrics,
    load_predictions,
    read_final,
)
from ecgadapt.eval.robustness import robustness_section

__all__ = [
    "Report",
    "build_report",
    "compare_recipes",
    "relative_improvement",
    "seed_averaged_bootstrap",
    "select_spec_runs",
    "summarise",
]

TASK_ORDER = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
RECIPE_ORDER = (
    "scratch",
    "linear_probe",
    "baseline_ft",
    "baseline_ft_tuned",
    "lp_ft",
    "post_training",
    "post_training_no_lp",
    "post_training_no_sd",
    "post_training_no_dropout",
)
ABLATIONS = ("post_training_no_lp", "post_training_no_sd", "post_training_no_dropout", "lp_ft")
METRICS = ("macro_auroc", "macro_auprc")
METRIC_NAMES = {"macro_auroc": "macro AUROC", "macro_auprc": "macro AUPRC"}
OFFICIAL_NOTE = (
    "Only the official PTB-XL split (train folds 1-8, validation fold 9, test fold 10) is comparable with "
    "published numbers."
)


# --- statistics --------------------------------------------------------------------------------------------


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
) -> dict[str, Any]:
    """Percentile bootstrap over records of the seed-averaged ``metric``: ``{point, low, high, n_runs}``.

    Every run (seed) is scored on the same resampled records; the statistic is the mean over runs.
    """
    if metric not in METRICS:
        raise DataError(f"seed_averaged_bootstrap supports {METRICS}, not {metric!r}")
    if not scores:
        raise MetricInputError("seed_averaged_bootstrap needs at least one run's scores")
    col = METRICS.index(metric)
    idx, n_redrawn = resample_indices(y_true, n_resamples, seed)
    n = len(y_true)
    counts = np.stack([np.bincount(row, minlength=n) for row in idx])
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


class _Predictions:
    """Test predictions of runs, loaded once, aligned on the first run's record order."""

    def __init__(self) -> None:
        self._cache: dict[str, dict] = {}

    def get(self, run_dir: str) -> dict:
        """The run's test predictions, with ``excluded``: the classes its macro metrics left out."""
        if run_dir not in self._cache:
            pred = dict(load_predictions(run_dir, "test"))
            pred["excluded"] = set((read_final(run_dir).get("test") or {}).get("excluded_classes") or [])
            self._cache[run_dir] = pred
        return self._cache[run_dir]

    def aligned(self, run_dirs: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """``(y_true, [scores per run])`` on common record order, or None when the runs scored different records.

        Classes that any of the runs left out of its macro metrics are dropped, so the bootstrap averages the
        same classes as the reported macro metrics."""
        preds = [self.get(d) for d in run_dirs]
        ref = preds[0]
        names = list(ref["class_names"])
        excluded = set().union(*(p["excluded"] for p in preds))
        keep = np.array([c not in excluded for c in names])
        if not keep.any():
            return None
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
            out.append(p["y_score"][order][:, keep])
        return y[:, keep], out


def compare_recipes(
    table: pd.DataFrame,
    a: str = "post_training",
    b: str = "baseline_ft",
    keys: Sequence[str] = ("setting", "task", "fraction"),
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    predictions: _Predictions | None = None,
) -> pd.DataFrame:
    """Recipe ``a`` against ``b`` per group ``keys`` and metric: seed means, relative improvement (%),
    paired seed difference (t) and paired record bootstrap of the seed-averaged difference."""
    predictions = predictions or _Predictions()
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
                        y, scores[: len(dirs_a)], scores[len(dirs_a) :], metric, n_resamples, seed, alpha
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


# --- report structure --------------------------------------------------------------------------------------


@dataclass
class Figure_:
    """A rendered figure: file name, PNG bytes, caption."""

    name: str
    png: bytes
    caption: str


@dataclass
class Section:
    """One report section: text paragraphs, tables and figures, or the reason it is absent."""

    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)  # str (paragraph) | pd.DataFrame | Figure_ | ("h3", str)
    absent: str | None = None


@dataclass
class Report:
    """Where the report went and what it holds."""

    markdown: Path
    html: Path
    figures: list[Path]
    sections: list[str]  # titles of rendered sections
    absent: dict[str, str]  # title -> why it is absent


def _budget_text(part: pd.DataFrame) -> str:
    """``"240 / 181"``: the runs' maximum optimiser steps and the mean they used (– when unrecorded)."""
    if "max_total_steps" not in part or part["max_total_steps"].isna().all():
        return "–"
    limits = sorted({int(v) for v in part["max_total_steps"].dropna()})
    used = pd.to_numeric(part["steps_run"], errors="coerce")
    return f"{'/'.join(str(v) for v in limits)} / {used.mean():.0f}"


def _tuned_text(part: pd.DataFrame) -> str:
    """``"lr=0.001, head_lr_scale=10 (3); lr=0.0003, head_lr_scale=1 (2)"``, or – for an untuned recipe."""
    if "tuned" not in part:
        return "–"
    chosen = [t for t in part["tuned"].fillna("") if t]
    if not chosen:
        return "–"
    counts = pd.Series(chosen).value_counts()
    return "; ".join(f"{k} ({n})" for k, n in counts.items())


def select_spec_runs(table: pd.DataFrame, results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of the spec in ``results_dir/spec.yaml`` and a table of the other finished runs with the reason
    each was left out (not a cell of the spec; or stale: run with a config other than the spec's)."""
    from ecgadapt.runs.hashing import saved_config_sha256

    spec_path = results_dir / "spec.yaml"
    resolved = (
        (yaml.safe_load(spec_path.read_text()) or {}).get("resolved") or {} if spec_path.is_file() else {}
    )
    cells = resolved.get("cells")
    if not cells:
        return table, pd.DataFrame(columns=["Run", "Reason"])
    wanted = set(cells)
    hashes = resolved.get("cell_config_sha256") or {}
    keep, left = [], []
    for i, r in table.iterrows():
        cid, sha = r["cell_id"], r.get("config_sha256")
        if cid not in wanted:
            left.append({"Run": cid, "Reason": "not a cell of the spec in spec.yaml"})
        elif (
            cid in hashes
            and isinstance(sha, str)
            and sha != hashes[cid]
            and saved_config_sha256(r["run_dir"]) != hashes[cid]
        ):
            left.append(
                {"Run": cid, "Reason": "stale: run with a config other than the spec's (config hash differs)"}
            )
        else:
            keep.append(i)
    return table.loc[keep].reset_index(drop=True), pd.DataFrame(left, columns=["Run", "Reason"])


def _order(values: Sequence[str], canonical: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    known = [v for v in canonical if v in values]
    return known + sorted(v for v in values if v not in canonical)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    if not np.isfinite(std):
        return _fmt(mean)
    return f"{_fmt(mean)} ± {_fmt(std)}"


def _ci(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return f"[{_fmt(low)}, {_fmt(high)}]"


def _deltas(comp: pd.DataFrame, prefix: str) -> list[str]:
    """``Δ [low, high]`` cells from the ``{prefix}_diff/_low/_high`` columns of a comparison table."""
    cols = (comp[f"{prefix}_diff"], comp[f"{prefix}_low"], comp[f"{prefix}_high"])
    return [f"{_fmt(d, 4)} {_ci(lo, hi)}" if np.isfinite(d) else "–" for d, lo, hi in zip(*cols)]


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return f"{p:.3g}" if p >= 1e-3 else "<0.001"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


class _Builder:
    def __init__(
        self, table: pd.DataFrame, results_dir: Path, n_resamples: int, alpha: float, seed: int
    ) -> None:
        table, self.left_out = select_spec_runs(table, results_dir)
        if table.empty:
            raise DataError(
                f"{results_dir} holds no finished run of the spec in its spec.yaml ({len(self.left_out)} other run(s) "
                "left out); run `ecgadapt benchmark` with this --out first"
            )
        spec_path = results_dir / "spec.yaml"
        resolved = (
            (yaml.safe_load(spec_path.read_text()) or {}).get("resolved") or {} if spec_path.is_file() else {}
        )
        self.spec_cells: list[str] = list(resolved.get("cells") or [])
        table = table.copy()
        table["setting"] = [
            m if p != ROTATE else f"{m} (rotate-folds)" for m, p in zip(table["model"], table["protocol"])
        ]
        self.table = table
        self.results_dir = results_dir
        self.n_resamples, self.alpha, self.seed = n_resamples, alpha, seed
        self.tasks = _order(table["task"], TASK_ORDER)
        self.recipes = _order(table["recipe"], RECIPE_ORDER)
        self.settings = list(dict.fromkeys(table["setting"]))
        self.fractions = sorted(set(table["fraction"]))
        self.main_fraction = 1.0 if 1.0 in self.fractions else max(self.fractions)
        self.main = table[table["fraction"] == self.main_fraction]
        self.colors = recipe_colors(self.recipes)
        self.predictions = _Predictions()
        self.figures: list[Figure_] = []

    def figure(self, name: str, fig, caption: str) -> Figure_:
        f = Figure_(name=f"{name}.png", png=figure_png(fig), caption=caption)
        self.figures.append(f)
        return f

    def sort(self, df: pd.DataFrame) -> pd.DataFrame:
        keys = [k for k in ("setting", "task", "recipe", "fraction") if k in df.columns]
        rank = {
            "task": {t: i for i, t in enumerate(self.tasks)},
            "recipe": {r: i for i, r in enumerate(self.recipes)},
            "setting": {s: i for i, s in enumerate(self.settings)},
        }
        return df.sort_values(
            keys, key=lambda col: col.map(rank[col.name]) if col.name in rank else col, kind="stable"
        )

    # --- sections ---
    def overview(self) -> Section:
        t = self.table
        spec_path = self.results_dir / "spec.yaml"
        spec = yaml.safe_load(spec_path.read_text()) if spec_path.is_file() else {}
        name = (spec.get("spec") or {}).get("name", "(no spec.yaml)")
        protocols = sorted(set(t["protocol"]))
        lines = [
            f"Spec **{name}**; results folder `{self.results_dir}`; {len(t)} finished cells "
            f"({int(t['n_folds'].sum())} fine-tuning runs); "
            f"generated {_dt.datetime.now().isoformat(timespec='seconds')}.",
            f"Models: {', '.join(self.settings)}. Tasks: {', '.join(self.tasks)}. Recipes: {', '.join(self.recipes)}. "
            f"Training fractions: {', '.join(f'{f:g}' for f in self.fractions)}. "
            f"Seeds: {', '.join(str(s) for s in sorted(set(t['seed'])))}.",
            f"Protocol: {', '.join(protocols)}. {OFFICIAL_NOTE}",
        ]
        if ROTATE in protocols:
            lines.append(
                "Rotate-folds cells ran ten times (fold k tests, fold k % 10 + 1 validates, the other eight train) and "
                "are scored on the pooled out-of-fold test predictions, so every record is scored exactly once; "
                "those numbers are NOT comparable with published ones."
            )
        lines.append(
            "Statistics: mean ± std over seeds; **CI (records)** = 95% percentile bootstrap over test records of the "
            f"seed-averaged metric ({self.n_resamples} resamples, classes kept scorable); **CI (seeds, t)** = 95% "
            "t-interval of the seed mean."
        )
        blocks: list[Any] = []
        if not self.left_out.empty:
            blocks = [
                f"Left out: {len(self.left_out)} other finished run(s) in the folder are not part of this spec's grid "
                "(or were run with another config) and appear nowhere in this report:",
                self.left_out,
            ]
        missing = sorted(set(self.spec_cells) - set(t["cell_id"]))
        if missing:
            lines.append(
                f"Note: {len(missing)} cell(s) of the spec have not finished (e.g. {', '.join(missing[:3])}); rerun "
                "`ecgadapt benchmark` with the same --out to finish them."
            )
        seen = (
            t[["pretraining_overlap_test", "pretraining_overlap_val"]]
            .apply(pd.to_numeric, errors="coerce")
            .fillna(0)
        )
        tainted = seen[(seen > 0).any(axis=1)]
        if len(tainted):
            lines.append(
                f"**Warning:** {len(tainted)} run(s) start from weights pretrained on the (unlabelled) signals of "
                f"records in their test fold (up to {int(tainted['pretraining_overlap_test'].max())}) or validation "
                f"fold (up to {int(tainted['pretraining_overlap_val'].max())}): their scores are optimistic "
                "(`pretraining_overlap` in each run's final.json; the checkpoint's model card says how to leave them out)."
            )
        counts = t.groupby(["setting", "task", "recipe", "fraction"]).size()
        if counts.nunique() > 1:
            lines.append(
                f"Note: groups have unequal numbers of finished seeds ({counts.min()} to {counts.max()}); "
                "rerun `ecgadapt benchmark` to finish the grid."
            )
        return Section("overview", "Overview", [*lines, *blocks])

    def main_table(self) -> Section:
        rows = []
        for (setting, task, recipe), part in self.main.groupby(["setting", "task", "recipe"], sort=False):
            row = {"Model": setting, "Task": task, "Recipe": recipe, "Seeds": len(part)}
            aligned = self.predictions.aligned(list(part["run_dir"]))
            for metric in METRICS:
                values = part[f"test_{metric}"].to_numpy(float)
                s = seed_summary(values, self.alpha) if np.isfinite(values).all() else None
                label = METRIC_NAMES[metric]
                row[f"{label} mean ± std"] = _pm(s["mean"], s["std"]) if s else "–"
                ci = "–"
                if aligned is not None:
                    try:
                        b = seed_averaged_bootstrap(
                            aligned[0], aligned[1], metric, self.n_resamples, self.seed, self.alpha
                        )
                        ci = _ci(b["low"], b["high"])
                    except MetricInputError:
                        pass
                row[f"{label} CI (records)"] = ci
                row[f"{label} CI (seeds, t)"] = _ci(s["ci_low"], s["ci_high"]) if s else "–"
            ece = part["test_ece"].to_numpy(float)
            row["ECE mean ± std"] = _pm(
                float(np.mean(ece)), float(np.std(ece, ddof=1)) if len(ece) > 1 else math.nan
            )
            if ROTATE in set(part["protocol"]):
                for metric in METRICS:
                    fold_mean = pd.to_numeric(part.get(f"fold_mean_test_{metric}"), errors="coerce").to_numpy(
                        float
                    )
                    row[f"{METRIC_NAMES[metric]} per-fold mean"] = (
                        _fmt(float(np.nanmean(fold_mean))) if np.isfinite(fold_mean).any() else "–"
                    )
            row["Steps: max / used (mean)"] = _budget_text(part)
            row["Chosen on fold 9 (seeds)"] = _tuned_text(part)
            rows.append(row)
        df = pd.DataFrame(rows)
        for col in ("Chosen on fold 9 (seeds)", "Steps: max / used (mean)"):
            if col in df and not (df[col] != "–").any():
                df = df.drop(columns=[col])
        df = df.assign(setting=df["Model"], task=df["Task"], recipe=df["Recipe"])
        df = self.sort(df).drop(columns=["setting", "task", "recipe"])
        text = (
            f"Test-set results at training fraction {self.main_fraction:g}: mean ± std over seeds, "
            "95% record-bootstrap CI of the seed-averaged metric, and 95% seed t-interval. Steps: the recipe's "
            "maximum optimiser steps (every recipe of a comparison gets the same) and the mean it used before early "
            "stopping. Chosen on fold 9: a tuned recipe's values picked by validation macro AUROC, with how many seeds "
            "picked them."
        )
        if ROTATE in set(self.main["protocol"]):
            text += (
                " Rotate-folds rows also give the per-fold mean: the mean of the ten folds' own test metrics, beside "
                "the pooled out-of-fold score."
            )
        return Section("main-results", "Main results", [text, df])

    def exclusions(self) -> Section:
        title = "Classes left out of the macro metrics"
        rows = []
        for _, r in self.table.iterrows():
            test = read_final(r["run_dir"]).get("test") or {}
            reasons = {e["class"]: e["reason"] for e in test.get("exclusions") or []}
            for cls in test.get("excluded_classes") or []:
                rows.append(
                    {
                        "Model": r["setting"],
                        "Task": r["task"],
                        "Class": cls,
                        "Reason": reasons.get(cls, "no positive or no negative in the scored split"),
                        "run_dir": r["run_dir"],
                    }
                )
        if not rows:
            return Section(
                "exclusions",
                title,
                [
                    "None: every class of every run was scored (each has a training positive and enough test positives)."
                ],
            )
        df = pd.DataFrame(rows)
        df = (
            df.groupby(["Model", "Task", "Class", "Reason"], sort=False)["run_dir"]
            .nunique()
            .rename("Runs")
            .reset_index()
        )
        text = (
            "Macro AUROC/AUPRC average only the classes that can be scored fairly; these were left out, in the runs "
            "counted. Rules: a class with no negative or fewer than `training.min_test_positives` positives in the "
            "scored split, and (with `training.exclude_untrained_classes`) a class with no positive in the training "
            "split. The record bootstrap drops the same classes."
        )
        return Section("exclusions", title, [text, df])

    def improvement(self) -> Section:
        title = "Relative improvement of post-training over the baselines"
        treatment = self.treatment()
        baselines = [r for r in self.recipes if r.startswith("baseline_ft")]
        if treatment is None or not baselines:
            missing = [r for r, ok in (("post_training", treatment), ("baseline_ft", baselines)) if not ok]
            return Section("improvement", title, absent=f"the results hold no run of {', '.join(missing)}")
        comps = [
            compare_recipes(
                self.table,
                treatment,
                b,
                ("setting", "task", "fraction"),
                self.n_resamples,
                self.seed,
                self.alpha,
                self.predictions,
            )
            for b in baselines
        ]
        comp = (
            pd.concat([c for c in comps if not c.empty], ignore_index=True)
            if any(not c.empty for c in comps)
            else pd.DataFrame()
        )
        if comp.empty:
            return Section(
                "improvement", title, absent=f"no task has runs of both {treatment} and a baseline"
            )
        comp = self.sort(comp.assign(recipe=comp["b"]))
        df = pd.DataFrame(
            {
                "Model": comp["setting"],
                "Task": comp["task"],
                "Fraction": comp["fraction"].map(lambda f: f"{f:g}"),
                "Metric": comp["metric"].map(METRIC_NAMES),
                "Baseline": comp["b"].map(self.describe_recipe),
                "Baseline mean": comp["mean_b"].map(_fmt),
                f"{treatment} mean": comp["mean_a"].map(_fmt),
                "Rel. improvement": comp["rel_improvement_pct"].map(
                    lambda v: "–" if not np.isfinite(v) else f"{v:+.2f}%"
                ),
                "Seeds": comp["n_seeds"],
                "Paired Δ over seeds [t CI]": _deltas(comp, "seed"),
                "p (paired t)": comp["seed_p"].map(_p),
                "Bootstrap Δ [CI]": _deltas(comp, "boot"),
                "p (paired bootstrap)": comp["boot_p"].map(_p),
                "Note": comp["note"],
            }
        )
        if not df["Note"].astype(bool).any():
            df = df.drop(columns=["Note"])
        text = (
            f"Relative improvement = ({treatment} − baseline) / baseline × 100%, on the seed means, against every "
            "baseline in the results: the literal `baseline_ft` (the preset's fixed hyper-parameters, as the paper "
            "describes it) and any tuned baseline (its learning rates chosen on the validation fold with the same "
            "search and budget as post-training). A gain over the literal baseline only can come from the baseline's "
            "hyper-parameters rather than from the method. The paired Δ over seeds is a paired t-test of per-seed "
            "differences (training variation); the bootstrap Δ resamples "
            f"test records ({self.n_resamples} resamples) and scores every seed of both recipes on the same records "
            "(test-set sampling variation)."
        )
        return Section("improvement", title, [text, df])

    def treatment(self) -> str | None:
        """The post-training recipe label of the results (``post_training``, else a labelled variant)."""
        if "post_training" in self.recipes:
            return "post_training"
        return next((r for r in self.recipes if r.startswith("post_training") and r not in ABLATIONS), None)

    def describe_recipe(self, label: str) -> str:
        """A recipe label with what was tuned, e.g. ``baseline_ft_tuned (tuned: lr, head_lr_scale)``."""
        part = self.table[self.table["recipe"] == label]
        tuned = [t for t in part.get("tuned", pd.Series(dtype=str)).fillna("") if t]
        if not tuned:
            return f"{label} (literal)" if label == "baseline_ft" else label
        keys = [kv.split("=")[0] for kv in tuned[0].split(", ")]
        return f"{label} (tuned: {', '.join(keys)})"

    def data_efficiency(self) -> Section:
        title = "Data efficiency"
        if len(self.fractions) < 2:
            return Section(
                "data-efficiency",
                title,
                absent=f"every run used the same training fraction ({self.fractions[0]:g}); a curve needs two or more",
            )
        blocks: list[Any] = [
            "Test metric against the fraction of the training folds used (nested, stratified subsets); line = mean "
            "over seeds, band = 95% seed t-interval (absent with one seed)."
        ]
        for setting in self.settings:
            part = self.table[self.table["setting"] == setting]
            frames = []
            for metric in METRICS:
                s = summarise(part, ["task", "recipe", "fraction"], f"test_{metric}", self.alpha)
                frames.append(s.assign(metric=metric, low=s["t_low"], high=s["t_high"]))
            summary = self.sort(pd.concat(frames, ignore_index=True))
            fig = data_efficiency_figure(summary, METRICS, self.colors, title=f"Data efficiency: {setting}")
            blocks.append(
                self.figure(f"data_efficiency_{_slug(setting)}", fig, f"Data efficiency of {setting}.")
            )
            auroc = summary[summary["metric"] == "macro_auroc"]
            wide = auroc.assign(v=[_pm(m, s) for m, s in zip(auroc["mean"], auroc["std"])]).pivot_table(
                index=["task", "recipe"], columns="fraction", values="v", aggfunc="first"
            )
            wide.columns = [f"fraction {c:g}" for c in wide.columns]
            wide = self.sort(wide.reset_index()).rename(columns={"task": "Task", "recipe": "Recipe"})
            blocks += [("h3", f"{setting}: test macro AUROC (mean ± std) by fraction"), wide]
        return Section("data-efficiency", title, blocks)

    def dynamics(self) -> Section:
        title = "Training dynamics"
        blocks: list[Any] = [
            f"Validation macro AUROC per epoch at fraction {self.main_fraction:g}, mean over seeds (and folds) with a "
            "min-max band; stages are laid end to end, each at the length of its longest run, and dashed lines mark "
            "where a stage starts."
        ]
        any_curve = False
        for setting in self.settings:
            curves, bounds = [], []
            part = self.main[self.main["setting"] == setting]
            for (task, recipe), grp in part.groupby(["task", "recipe"], sort=False):
                logs = []
                for d in grp["run_dir"]:
                    try:
                        m = load_metrics(d)
                    except DataError:
                        continue
                    if not m.empty:
                        logs.append(m)
                if not logs:
                    continue
                c, b = _align_curves(logs, "val_macro_auroc")
                curves.append(c.assign(task=task, recipe=recipe))
                bounds.append(b.assign(task=task, recipe=recipe))
            if not curves:
                continue
            any_curve = True
            cdf = self.sort(pd.concat(curves, ignore_index=True))
            bdf = pd.concat(bounds, ignore_index=True)
            fig = training_dynamics_figure(
                cdf, bdf, "val_macro_auroc", self.colors, title=f"Training dynamics: {setting}"
            )
            blocks.append(
                self.figure(
                    f"training_dynamics_{_slug(setting)}", fig, f"Validation AUROC per epoch, {setting}."
                )
            )
        if not any_curve:
            return Section("training-dynamics", title, absent="no run directory holds a metrics.csv")
        return Section("training-dynamics", title, blocks)

    def ablation(self) -> Section:
        title = "Ablation of post_training"
        present = [r for r in ABLATIONS if r in self.recipes]
        if "post_training" not in self.recipes or not present:
            why = (
                "the results hold no post_training run"
                if "post_training" not in self.recipes
                else f"no ablation recipe ({', '.join(ABLATIONS)}) was run"
            )
            return Section("ablation", title, absent=why)
        shown = [r for r in self.recipes if r in ("post_training", "baseline_ft", *present)]
        blocks: list[Any] = [
            f"Test metrics at fraction {self.main_fraction:g}; bars = mean over seeds, error bars = seed std, labels = "
            "difference from post_training's mean. Deltas "
            "are ablation − post_training, paired over seeds (t-test) and over records (bootstrap of the seed-averaged "
            "difference)."
        ]
        rows = []
        for setting in self.settings:
            part = self.main[(self.main["setting"] == setting) & self.main["recipe"].isin(shown)]
            if part.empty:
                continue
            s = summarise(part, ["task", "recipe"], "test_macro_auroc", self.alpha)
            s = self.sort(s.assign(err=s["std"]))
            fig = ablation_figure(s, "test macro AUROC", self.colors, title=f"Ablation: {setting}")
            blocks.append(
                self.figure(f"ablation_{_slug(setting)}", fig, f"Ablation of post_training, {setting}.")
            )
            for other in [r for r in shown if r != "post_training"]:
                comp = compare_recipes(
                    part,
                    other,
                    "post_training",
                    ("setting", "task", "fraction"),
                    self.n_resamples,
                    self.seed,
                    self.alpha,
                    self.predictions,
                )
                rows.append(comp)
        comp = self.sort(pd.concat(rows, ignore_index=True)) if rows else pd.DataFrame()
        if not comp.empty:
            blocks.append(
                pd.DataFrame(
                    {
                        "Model": comp["setting"],
                        "Task": comp["task"],
                        "Recipe": comp["a"],
                        "Metric": comp["metric"].map(METRIC_NAMES),
                        "Recipe mean": comp["mean_a"].map(_fmt),
                        "post_training mean": comp["mean_b"].map(_fmt),
                        "Δ over seeds [t CI]": _deltas(comp, "seed"),
                        "p (paired t)": comp["seed_p"].map(_p),
                        "Bootstrap Δ [CI]": _deltas(comp, "boot"),
                        "p (paired bootstrap)": comp["boot_p"].map(_p),
                    }
                )
            )
        return Section("ablation", title, blocks)

    def per_class(self) -> Section:
        title = "Per-class results"
        long = collect_per_class(self.main)
        if long.empty:
            return Section("per-class", title, absent="final.json of the runs holds no per-class metrics")
        setting_of = dict(zip(self.main["run_dir"], self.main["setting"]))
        long["setting"] = long["run_dir"].map(setting_of)
        blocks: list[Any] = [
            f"Test AUROC and AUPRC per class at fraction {self.main_fraction:g}, mean over seeds. Prevalence is the "
            "share of test records with the class: the AUPRC of a random classifier. – marks a class without a "
            "positive (or negative) test record, which cannot be scored."
        ]
        for setting in self.settings:
            for task in self.tasks:
                part = long[(long["setting"] == setting) & (long["task"] == task)]
                if part.empty:
                    continue
                first = part.drop_duplicates("class").set_index("class")
                out = pd.DataFrame(index=first.index)
                out["Positives"] = first["n_pos"].astype(int)
                out["Prevalence (AUPRC chance)"] = first["prevalence"].map(_fmt)
                for recipe in [r for r in self.recipes if r in set(part["recipe"])]:
                    g = part[part["recipe"] == recipe].groupby("class", sort=False)[["auroc", "auprc"]].mean()
                    out[f"{recipe} AUROC"] = g["auroc"].reindex(out.index).map(_fmt)
                    out[f"{recipe} AUPRC"] = g["auprc"].reindex(out.index).map(_fmt)
                blocks += [
                    ("h3", f"{setting} — {task}"),
                    out.reset_index().rename(columns={"class": "Class"}),
                ]
        return Section("per-class", title, blocks)

    def reliability(self) -> Section:
        title = "Calibration"
        blocks: list[Any] = [
            f"Reliability diagrams at fraction {self.main_fraction:g}: predicted probability against the observed "
            "frequency over all (record, class) pairs of every seed, 15 equal-width bins; ECE in the legend is that of "
            "the pooled curve. The table gives the ECE per run, mean ± std over seeds."
        ]
        ece_rows = []
        for setting in self.settings:
            for task in self.tasks:
                part = self.main[(self.main["setting"] == setting) & (self.main["task"] == task)]
                if part.empty:
                    continue
                tables = {}
                for recipe in [r for r in self.recipes if r in set(part["recipe"])]:
                    grp = part[part["recipe"] == recipe]
                    preds = [self.predictions.get(d) for d in grp["run_dir"]]
                    y = np.concatenate([p["y_true"] for p in preds])
                    s = np.concatenate([p["y_score"] for p in preds])
                    try:
                        tables[recipe] = reliability_curve(y, s, n_bins=15)
                    except (MetricInputError, ValueError):
                        continue
                    ece = grp["test_ece"].to_numpy(float)
                    ece_rows.append(
                        {
                            "Model": setting,
                            "Task": task,
                            "Recipe": recipe,
                            "Seeds": len(ece),
                            "ECE mean ± std": _pm(
                                float(np.mean(ece)), float(np.std(ece, ddof=1)) if len(ece) > 1 else math.nan
                            ),
                        }
                    )
                if tables:
                    fig = reliability_figure(tables, title=f"{task} ({setting})", colors=self.colors)
                    blocks.append(
                        self.figure(
                            f"reliability_{_slug(setting)}_{task}", fig, f"Reliability, {task}, {setting}."
                        )
                    )
        if not ece_rows:
            return Section("calibration", title, absent="no run holds test predictions that can be binned")
        blocks.insert(1, pd.DataFrame(ece_rows))
        return Section("calibration", title, blocks)


def _sd(values: Sequence[float]) -> float:
    """Sample standard deviation (NaN for fewer than two values)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def temperature_section(b: _Builder) -> Section:
    """ECE and reliability diagrams on the test fold before and after each run's temperature scaling."""
    from ecgadapt.eval.calibration import expected_calibration_error, plot_reliability
    from ecgadapt.eval.figures import new_figure
    from ecgadapt.eval.temperature import apply_temperature, load_calibration, temperatures_for

    title = "Calibration after temperature scaling"
    blocks: list[Any] = [
        f"Temperature scaling is fitted on each run's validation predictions (fold 9) only (`calibration.json`, "
        f"`ecgadapt calibrate`) and applied here to its test predictions (fold 10) at fraction {b.main_fraction:g}. "
        "ECE: 15 equal-width bins over all (record, class) pairs, mean ± std over seeds; the diagrams pool every "
        "seed. Scaling is monotone per class: AUROC and AUPRC are unchanged."
    ]
    rows, n_used = [], 0
    for setting in b.settings:
        for task in b.tasks:
            part = b.main[(b.main["setting"] == setting) & (b.main["task"] == task)]
            before_curves, after_curves = {}, {}
            for recipe in [r for r in b.recipes if r in set(part["recipe"])]:
                ys, raw, scaled, temps, modes = [], [], [], [], set()
                for d in part.loc[part["recipe"] == recipe, "run_dir"]:
                    cal = load_calibration(d)
                    if cal is None:
                        continue
                    p = b.predictions.get(d)
                    t = temperatures_for(cal, [str(c) for c in p["class_names"]])
                    ys.append(p["y_true"])
                    raw.append(p["y_score"])
                    scaled.append(apply_temperature(p["y_score"], t))
                    temps.append(float(np.exp(np.mean(np.log(t)))))
                    modes.add(cal["mode"])
                if not ys:
                    continue
                n_used += len(ys)
                ece_b = [expected_calibration_error(y, s) for y, s in zip(ys, raw)]
                ece_a = [expected_calibration_error(y, s) for y, s in zip(ys, scaled)]
                rows.append(
                    {
                        "Model": setting,
                        "Task": task,
                        "Recipe": recipe,
                        "Runs": len(ys),
                        "Mode": ", ".join(sorted(modes)),
                        "Mean temperature": _fmt(float(np.mean(temps)), 3),
                        "Test ECE before": _pm(float(np.mean(ece_b)), _sd(ece_b)),
                        "Test ECE after": _pm(float(np.mean(ece_a)), _sd(ece_a)),
                    }
                )
                y = np.concatenate(ys)
                before_curves[recipe] = reliability_curve(y, np.concatenate(raw), n_bins=15)
                after_curves[recipe] = reliability_curve(y, np.concatenate(scaled), n_bins=15)
            if before_curves:
                fig = new_figure(9.2, 4.6)
                ax_b, ax_a = fig.subplots(1, 2)
                for ax, curves, when in ((ax_b, before_curves, "before"), (ax_a, after_curves, "after")):
                    ax.set_prop_cycle(color=[b.colors.get(r, "#333333") for r in curves])
                    plot_reliability(curves, ax=ax, title=f"{task} ({setting}): {when} scaling")
                caption = f"Test reliability before and after temperature scaling, {task}, {setting}."
                blocks.append(b.figure(f"temperature_{_slug(setting)}_{task}", fig, caption))
    if not rows:
        return Section(
            "temperature-scaling",
            title,
            absent="no run holds a calibration.json; fit one with `ecgadapt calibrate RUN` (new runs fit it themselves)",
        )
    blocks.insert(1, pd.DataFrame(rows))
    if n_used < len(b.main):
        blocks.append(
            f"{len(b.main) - n_used} run(s) at this fraction have no calibration.json and are left out."
        )
    return Section("temperature-scaling", title, blocks)


def external_sections(b: _Builder) -> list[Section]:
    """Each recipe's macro AUROC/AUPRC on the external sets beside its PTB-XL test score, with paired differences
    between recipes on the same external records (seed-averaged, record bootstrap); none without external sets."""
    import itertools
    import json

    from ecgadapt.runs.rundir import load_predictions as load_npz

    def align(preds: list[dict]) -> tuple[np.ndarray, list[np.ndarray]] | None:
        ref = preds[0]
        order = np.argsort(ref["ecg_ids"], kind="stable")
        ids, y = ref["ecg_ids"][order], ref["y_true"][order]
        out = []
        for q in preds:
            o = np.argsort(q["ecg_ids"], kind="stable")
            same = len(o) == len(ids) and list(q["class_names"]) == list(ref["class_names"])
            if not same or not np.array_equal(q["ecg_ids"][o], ids) or not np.array_equal(q["y_true"][o], y):
                return None
            out.append(q["y_score"][o])
        return y, out

    title = "External evaluation"
    rows, diffs = [], []
    curves: dict[tuple[str, str, str], dict[str, tuple]] = {}
    names = sorted(
        {
            f.name[len("external_") : -len(".json")]
            for d in b.main["run_dir"]
            for f in Path(d).glob("external_*.json")
        }
    )
    if not names:
        return []
    for name in names:
        groups = {}
        for (setting, task, recipe), part in b.main.groupby(["setting", "task", "recipe"], sort=False):
            files = [Path(d) / f"external_{name}.json" for d in part["run_dir"]]
            if not all(f.is_file() for f in files):
                continue
            ext = [json.loads(f.read_text()) for f in files]
            row = {
                "External set": name,
                "Model": setting,
                "Task": task,
                "Recipe": recipe,
                "Seeds": len(part),
                "Records": ext[0]["n_records"],
                "Shared classes": ", ".join(ext[0]["shared_classes"]),
            }
            for m in METRICS:
                row[f"PTB-XL {METRIC_NAMES[m]}"] = _fmt(float(np.mean(part[f"test_{m}"].to_numpy(float))))
                row[f"external {METRIC_NAMES[m]}"] = _fmt(float(np.mean([e[m] for e in ext])))
            cals = [e.get("calibration") or {} for e in ext]
            for key, label in (
                ("ece_raw", "external ECE before scaling"),
                ("ece_calibrated", "external ECE after scaling"),
            ):
                values = [c[key] for c in cals if c.get(key) is not None]
                row[label] = _fmt(float(np.mean(values))) if values else "–"
            rows.append(row)
            preds = [load_npz(Path(d) / f"predictions_external_{name}.npz") for d in part["run_dir"]]
            groups[(setting, task, recipe)] = preds
            curves.setdefault((name, setting, task), {})[recipe] = _external_curves(
                list(part["run_dir"]), preds
            )
        for (ka, pa), (kb, pb) in itertools.combinations(groups.items(), 2):
            if ka[:2] != kb[:2]:
                continue
            aligned = align([*pa, *pb])
            if aligned is None:
                continue
            y, scores = aligned
            for m in METRICS:
                try:
                    r = pooled_paired_bootstrap(
                        y, scores[: len(pa)], scores[len(pa) :], m, b.n_resamples, b.seed, b.alpha
                    )
                except MetricInputError:
                    continue
                diffs.append(
                    {
                        "External set": name,
                        "Model": ka[0],
                        "Task": ka[1],
                        "A": ka[2],
                        "B": kb[2],
                        "Metric": METRIC_NAMES[m],
                        "A - B": _fmt(r["diff"], 4),
                        "95% CI": _ci(r["low"], r["high"]),
                        "p": _p(r["p_value"]),
                    }
                )
    if not rows:
        return [
            Section("external", title, absent="no group of runs was scored on an external set by every seed")
        ]
    blocks: list[Any] = [
        "Macro AUROC/AUPRC on each external set (classes shared with the run only; mean over seeds) beside the "
        f"PTB-XL test score, at training fraction {b.main_fraction:g}; and the external ECE before and after each "
        "run's temperature scaling (fitted on PTB-XL fold 9 only).",
        pd.DataFrame(rows),
    ]
    if diffs:
        blocks += [
            "Paired differences between recipes on the same external records (seed-averaged metric, "
            f"{b.n_resamples} record-bootstrap resamples).",
            pd.DataFrame(diffs),
        ]
    for (name, setting, task), by_recipe in curves.items():
        fig = _before_after_figure(b, by_recipe, f"{name}, {task} ({setting})")
        if fig is not None:
            caption = f"Reliability on the external set {name} before and after temperature scaling, {task}, {setting}."
            blocks.append(
                b.figure(f"external_reliability_{_slug(name)}_{_slug(setting)}_{task}", fig, caption)
            )
    return [Section("external", title, blocks)]


def _external_curves(run_dirs: list[str], preds: list[dict]) -> tuple | None:
    """Reliability tables (before, after temperature scaling) of the runs' pooled external predictions."""
    from ecgadapt.eval.temperature import calibrate_probs

    ys, raw, scaled = [], [], []
    for d, p in zip(run_dirs, preds):
        probs, fitted = calibrate_probs(d, p["y_score"], [str(c) for c in p["class_names"]])
        ys.append(p["y_true"])
        raw.append(p["y_score"])
        scaled.append(probs if fitted is not None else None)
    try:
        before = reliability_curve(np.concatenate(ys), np.concatenate(raw), n_bins=15)
        after = (
            None
            if any(s is None for s in scaled)
            else reliability_curve(np.concatenate(ys), np.concatenate(scaled), n_bins=15)
        )
    except (MetricInputError, ValueError):
        return None
    return before, after


def _before_after_figure(b: _Builder, by_recipe: dict[str, tuple | None], title: str):
    """Two reliability panels (before, after scaling) with one curve per recipe; None without curves."""
    from ecgadapt.eval.calibration import plot_reliability
    from ecgadapt.eval.figures import new_figure

    before = {r: c[0] for r, c in by_recipe.items() if c is not None}
    after = {r: c[1] for r, c in by_recipe.items() if c is not None and c[1] is not None}
    if not before:
        return None
    fig = new_figure(9.2, 4.6)
    ax_b, ax_a = fig.subplots(1, 2)
    for ax, panel, when in ((ax_b, before, "before"), (ax_a, after, "after")):
        ax.set_prop_cycle(color=[b.colors.get(r, "#333333") for r in panel] or ["#333333"])
        if panel:
            plot_reliability(panel, ax=ax, title=f"{title}: {when} scaling")
        else:
            ax.set_title(f"{title}: no temperature scaling fitted")
    return fig


def _align_curves(logs: list[pd.DataFrame], column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean/min/max of ``column`` per (stage, epoch) over runs, stages laid end to end; and stage starts."""
    stages = sorted({int(s) for m in logs for s in m["stage"].dropna()})
    length = {
        s: max(int(m.loc[m["stage"] == s, "epoch"].max()) + 1 for m in logs if (m["stage"] == s).any())
        for s in stages
    }
    offset, pos = {}, 0
    for s in stages:
        offset[s] = pos
        pos += length[s]
    rows = []
    for m in logs:
        for stage, epoch, value, name in zip(m["stage"], m["epoch"], m[column], m["stage_name"]):
            rows.append(
                {
                    "x": offset[int(stage)] + int(epoch),
                    "value": value,
                    "stage": int(stage),
                    "stage_name": name,
                }
            )
    df = pd.DataFrame(rows)
    curve = df.groupby("x")["value"].agg(["mean", "min", "max"]).reset_index()
    curve = curve.rename(columns={"min": "low", "max": "high"})
    names = df.drop_duplicates("stage").set_index("stage")["stage_name"]
    bounds = pd.DataFrame(
        [{"x": offset[s], "stage_name": names.get(s, f"stage {s}")} for s in stages[1:]],
        columns=["x", "stage_name"],
    )
    return curve, bounds


# --- rendering ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #aaa;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.86em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:0.85em;color:#555}
.absent{color:#777;font-style:italic}nav ul{columns:2}
"""


def _md_inline(text: str) -> str:
    """Markdown emphasis/code in our own paragraphs to HTML (after escaping)."""
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_markdown(title: str, sections: list[Section], figures_dir: str = "figures") -> str:
    """The report as Markdown (figures referenced as ``figures/<name>.png``)."""
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        if s.absent:
            out += [f"*Not shown: {s.absent}.*", ""]
            continue
        for b in s.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, tuple):
                out += [f"### {b[1]}", ""]
            elif isinstance(b, pd.DataFrame):
                out += [_md_table(b), ""]
            elif isinstance(b, Figure_):
                out += [f"![{b.caption}]({figures_dir}/{b.name})", ""]
    return "\n".join(out)


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (inline CSS, figures as base64 data URIs)."""
    nav = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><nav><ul>{nav}</ul></nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        if s.absent:
            parts.append(f'<p class="absent">Not shown: {html.escape(s.absent)}.</p></section>')
            continue
        for b in s.blocks:
            if isinstance(b, str):
                parts.append(f"<p>{_md_inline(b)}</p>")
            elif isinstance(b, tuple):
                parts.append(f"<h3>{html.escape(b[1])}</h3>")
            elif isinstance(b, pd.DataFrame):
                parts.append(_html_table(b))
            elif isinstance(b, Figure_):
                data = base64.b64encode(b.png).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
                )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(
    results_dir: str | Path,
    out: str | Path | None = None,
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    title: str = "ecgadapt benchmark report",
) -> Report:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` for the runs in ``results_dir`` (to ``out``,
    default ``results_dir/report``); sections the data cannot support say why they are absent."""
    results_dir = Path(results_dir).expanduser()
    table = collect_results(results_dir)
    if table.empty:
        raise DataError(
            f"{results_dir} holds no finished run (no runs/*/final.json); run `ecgadapt benchmark` first"
        )
    out = Path(out).expanduser() if out is not None else results_dir / "report"
    b = _Builder(table, results_dir, n_resamples, alpha, seed)
    sections = [
        b.overview(),
        b.main_table(),
        b.improvement(),
        b.data_efficiency(),
        b.dynamics(),
        b.ablation(),
        b.per_class(),
        b.exclusions(),
        b.reliability(),
        temperature_section(b),
        robustness_section(b),
        *external_sections(b),
    ]
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in b.figures:
        (fig_dir / f.name).write_bytes(f.png)
        paths.append(fig_dir / f.name)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(title, sections))
    html_path.write_text(render_html(title, sections))
    return Report(
        markdown=md_path,
        html=html_path,
        figures=paths,
        sections=[s.title for s in sections if not s.absent],
        absent={s.title: s.absent for s in sections if s.absent},
    )
