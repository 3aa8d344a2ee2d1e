"""Compare finished runs: one row per run, and mean ± std over seeds per recipe."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ecgadapt.errors import ConfigError
from ecgadapt.runs.rundir import RunDir, read_json

COLUMNS = (
    "run_dir",
    "recipe",
    "model",
    "task",
    "fraction",
    "seed",
    "test_macro_auroc",
    "test_macro_auprc",
    "val_macro_auroc",
    "best_stage",
    "best_epoch",
)


def compare_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per finished run (its ``final.json``): recipe, seed, test macro AUROC/AUPRC and more."""
    rows = []
    for run in run_dirs:
        path = RunDir(run).final
        if not path.is_file():
            raise ConfigError(
                f"{run} has no {RunDir.FINAL}: the run has not finished; resume it or leave it out"
            )
        f = read_json(path)
        best = f.get("best") or {}
        rows.append(
            {
                "run_dir": str(run),
                "recipe": f["recipe"],
                "model": f.get("model"),
                "task": f.get("task"),
                "fraction": f.get("fraction"),
                "seed": f.get("seed"),
                "test_macro_auroc": f["test"]["macro_auroc"],
                "test_macro_auprc": f["test"]["macro_auprc"],
                "val_macro_auroc": (best.get("val") or {}).get("macro_auroc"),
                "best_stage": best.get("stage_name"),
                "best_epoch": best.get("epoch"),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summarise_runs(runs: pd.DataFrame, by: Sequence[str] = ("recipe",)) -> pd.DataFrame:
    """Mean, sample std and count of test macro AUROC/AUPRC per group (default: per recipe), in first-seen order."""
    by = list(by)
    g = runs.groupby(by, sort=False)
    out = pd.DataFrame(
        {
            "n_seeds": g["seed"].count(),
            "auroc_mean": g["test_macro_auroc"].mean(),
            "auroc_std": g["test_macro_auroc"].std(ddof=1),
            "auprc_mean": g["test_macro_auprc"].mean(),
            "auprc_std": g["test_macro_auprc"].std(ddof=1),
        }
    )
    return out.reset_index()


def format_summary(summary: pd.DataFrame, digits: int = 3) -> str:
    """A plain-text table ``recipe | n | AUROC mean ± std | AUPRC mean ± std`` (std "n/a" for one seed)."""

    def pm(mean: float, std: float) -> str:
        sd = "n/a" if pd.isna(std) else f"{std:.{digits}f}"
        return f"{mean:.{digits}f} ± {sd}"

    keys = [
        c
        for c in summary.columns
        if c not in ("n_seeds", "auroc_mean", "auroc_std", "auprc_mean", "auprc_std")
    ]
    table = pd.DataFrame(
        {
            **{k: summary[k].astype(str) for k in keys},
            "seeds": summary["n_seeds"].astype(str),
            "test macro AUROC": [pm(m, s) for m, s in zip(summary["auroc_mean"], summary["auroc_std"])],
            "test macro AUPRC": [pm(m, s) for m, s in zip(summary["auprc_mean"], summary["auprc_std"])],
        }
    )
    return table.to_string(index=False)
