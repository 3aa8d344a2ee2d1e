"""The benchmark report: ``report.md`` and a self-contained ``report.html`` (inline CSS, base64 PNG figures).

The package, by job:

* :mod:`.stats`: the statistics every table states the same way (seed summaries, the seed-averaged record
  bootstrap, paired recipe comparisons);
* :mod:`.document`: the document model (sections of paragraphs, headings, tables and figures);
* :mod:`.text`: formatting shared by the sections; :mod:`.tuning`: the runs' tuned values;
* :mod:`.roles`: which recipe is the treatment, the baselines, ablations and references;
* :mod:`.context`: the spec's runs and what every section reads;
* :mod:`.sections`: one module per section, listed once in ``SECTIONS``;
* :mod:`.render`: Markdown and HTML through the jinja2 templates in ``templates/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ecgadapt.errors import DataError
from ecgadapt.eval.pooling import ROTATE
from ecgadapt.eval.report.context import ReportContext, select_spec_runs
from ecgadapt.eval.report.document import Figure_, Report, Section
from ecgadapt.eval.report.render import render_html, render_markdown
from ecgadapt.eval.report.roles import BUILTIN_ROLES, RecipeRoles
from ecgadapt.eval.report.sections import SECTIONS, build_sections
from ecgadapt.eval.report.stats import (
    compare_recipes,
    relative_improvement,
    seed_averaged_bootstrap,
    summarise,
)
from ecgadapt.eval.results import collect_results, write_results
from ecgadapt.fileio import atomic_write_bytes, atomic_write_text
from ecgadapt.runs.rundir import ResultsDir

__all__ = [
    "BUILTIN_ROLES",
    "SECTIONS",
    "Figure_",
    "RecipeRoles",
    "Report",
    "Section",
    "build_report",
    "compare_recipes",
    "relative_improvement",
    "render_html",
    "render_markdown",
    "seed_averaged_bootstrap",
    "select_spec_runs",
    "summarise",
]


def write_figures(figures: list[Figure_], fig_dir: Path) -> list[Path]:
    """Write every figure's PNG into ``fig_dir``; return the paths."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in figures:
        atomic_write_bytes(fig_dir / f.name, f.png)
        paths.append(fig_dir / f.name)
    return paths


def build_report(
    results_dir: str | Path,
    out: str | Path | None = None,
    *,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    title: str = "ecgadapt benchmark report",
    roles: RecipeRoles | None = None,
    drop_test_folds: Sequence[int] = (),
    bootstrap_groups: str = "records",
) -> Report:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` for the runs in ``results_dir`` (to ``out``,
    default ``results_dir/report``); sections the data cannot support say why they are absent.

    ``roles``: the recipes' roles; default: ``roles:`` of the folder's ``spec.yaml``, else :data:`BUILTIN_ROLES`.
    ``drop_test_folds``: rotate-folds cells are scored without the runs that test on these folds, in every
    table (see :func:`~ecgadapt.eval.results.without_test_folds`); the table used is then also written to
    ``out/results.csv`` (and ``.parquet``). ``bootstrap_groups``: what every record bootstrap resamples,
    ``records`` or ``patient`` (all test records of a drawn patient); every table says which.
    """
    results_dir = Path(results_dir).expanduser()
    table = collect_results(results_dir, drop_test_folds=drop_test_folds)
    if drop_test_folds and not (table.get("protocol") == ROTATE).any():
        raise DataError(
            f"--drop-test-fold applies to rotate-folds cells (one run per test fold); {results_dir} holds none"
        )
    if table.empty:
        raise DataError(
            f"{results_dir} holds no finished run (no runs/*/final.json); run `ecgadapt benchmark` first"
        )
    out = Path(out).expanduser() if out is not None else ResultsDir(results_dir).report
    if drop_test_folds:
        write_results(table, out)
    ctx = ReportContext(table, results_dir, n_resamples, alpha, seed, roles, bootstrap_groups)
    sections = build_sections(ctx)
    paths = write_figures(ctx.figures, out / "figures")
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(title, sections))
    atomic_write_text(html_path, render_html(title, sections))
    return Report(
        markdown=md_path,
        html=html_path,
        figures=paths,
        sections=[s.title for s in sections if not s.absent],
        absent={s.title: s.absent for s in sections if s.absent},
    )
