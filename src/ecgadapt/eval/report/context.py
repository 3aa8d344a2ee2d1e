"""What every section of the report reads: the spec's runs, their order, roles, predictions and figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ecgadapt.data.tasks import TASKS
from ecgadapt.errors import DataError
from ecgadapt.eval.figures import figure_png, recipe_colors
from ecgadapt.eval.pooling import ROTATE
from ecgadapt.eval.report.document import Figure_
from ecgadapt.eval.report.roles import BUILTIN_ROLES, RecipeRoles, roles_from_record
from ecgadapt.eval.report.stats import Predictions
from ecgadapt.eval.report.text import order
from ecgadapt.eval.report.tuning import tuned_keys
from ecgadapt.runs.hashing import saved_config_sha256
from ecgadapt.runs.rundir import ResultsDir

__all__ = ["ReportContext", "read_spec_record", "select_spec_runs"]


def read_spec_record(results_dir: Path) -> dict[str, Any]:
    """The ``spec.yaml`` that ``ecgadapt benchmark`` saved in ``results_dir`` ({} when there is none)."""
    return ResultsDir(results_dir).read_spec()


def select_spec_runs(table: pd.DataFrame, results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of the spec in ``results_dir/spec.yaml`` and a table of the other finished runs with the reason
    each was left out (not a cell of the spec; or stale: run with a config other than the spec's)."""
    resolved = read_spec_record(results_dir).get("resolved") or {}
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


class ReportContext:
    """The spec's runs (``table``; ``main``: those at the main training fraction), the order of settings, tasks
    and recipes, the recipe roles, the statistics' settings, cached predictions and the figures drawn so far."""

    def __init__(
        self,
        table: pd.DataFrame,
        results_dir: Path,
        n_resamples: int,
        alpha: float,
        seed: int,
        roles: RecipeRoles | None = None,
        bootstrap_groups: str = "records",
    ) -> None:
        table, self.left_out = select_spec_runs(table, results_dir)
        if table.empty:
            raise DataError(
                f"{results_dir} holds no finished run of the spec in its spec.yaml ({len(self.left_out)} other run(s) "
                "left out); run `ecgadapt benchmark` with this --out first"
            )
        self.spec_record = read_spec_record(results_dir)
        self.spec_cells: list[str] = list((self.spec_record.get("resolved") or {}).get("cells") or [])
        self.roles = roles or roles_from_record(self.spec_record) or BUILTIN_ROLES
        table = table.copy()
        table["setting"] = [
            m if p != ROTATE else f"{m} (rotate-folds)" for m, p in zip(table["model"], table["protocol"])
        ]
        self.table = table
        self.results_dir = results_dir
        self.n_resamples, self.alpha, self.seed = n_resamples, alpha, seed
        self.tasks = order(table["task"], TASKS)
        self.recipes = order(table["recipe"], self.roles.display_order())
        self.settings = list(dict.fromkeys(table["setting"]))
        self.fractions = sorted(set(table["fraction"]))
        self.main_fraction = 1.0 if 1.0 in self.fractions else max(self.fractions)
        self.main = table[table["fraction"] == self.main_fraction]
        self.colors = recipe_colors(self.recipes)
        self.predictions = Predictions(bootstrap_groups)
        self.figures: list[Figure_] = []
        self._cache: dict[str, Any] = {}

    @property
    def unit(self) -> str:
        """What the report's bootstraps resample, in words: ``records`` or ``patients``."""
        return self.predictions.unit

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per report (for results two sections read, e.g. comparisons)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def treatment(self) -> str | None:
        """The treatment recipe of the results (see :meth:`RecipeRoles.treatment_in`), None when it did not run."""
        return self.roles.treatment_in(self.recipes)

    def figure(self, name: str, fig: Any, caption: str) -> Figure_:
        """Render ``fig`` to PNG as ``name.png``, keep it for the figures folder and return it as a block."""
        f = Figure_(name=f"{name}.png", png=figure_png(fig), caption=caption)
        self.figures.append(f)
        return f

    def sort(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` sorted by setting, task, recipe (in the report's order) and fraction, where it has them."""
        keys = [k for k in ("setting", "task", "recipe", "fraction") if k in df.columns]
        rank = {
            "task": {t: i for i, t in enumerate(self.tasks)},
            "recipe": {r: i for i, r in enumerate(self.recipes)},
            "setting": {s: i for i, s in enumerate(self.settings)},
        }
        return df.sort_values(
            keys, key=lambda col: col.map(rank[col.name]) if col.name in rank else col, kind="stable"
        )

    def describe_recipe(self, label: str) -> str:
        """A recipe label with what was tuned, e.g. ``baseline_ft_tuned (tuned: lr, head_lr_scale)``; a named
        baseline run with its preset's values is ``(literal)``."""
        keys = tuned_keys(self.table[self.table["recipe"] == label])
        if not keys:
            return f"{label} (literal)" if label in self.roles.baselines else label
        return f"{label} (tuned: {', '.join(keys)})"
