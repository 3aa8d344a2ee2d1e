"""The report's sections, one module each, listed once in :data:`SECTIONS` in the order the report shows them.

Each module's ``build(ctx)`` returns a :class:`~ecgadapt.eval.report.document.Section` (with ``absent`` set when
the results cannot support it) or None when the section does not apply at all (no external set was scored; no
comparison to headline).
"""

from __future__ import annotations

from collections.abc import Callable

from ecgadapt.eval.report.context import ReportContext
from ecgadapt.eval.report.document import Section
from ecgadapt.eval.report.sections import (
    ablation,
    calibration,
    data_efficiency,
    dynamics,
    exclusions,
    external,
    headline,
    improvement,
    main_results,
    overview,
    per_class,
    robustness,
    temperature,
)

__all__ = ["SECTIONS", "build_sections"]

SectionBuilder = Callable[[ReportContext], "Section | None"]

#: The report's sections in order.
SECTIONS: tuple[SectionBuilder, ...] = (
    headline.build,
    overview.build,
    main_results.build,
    improvement.build,
    data_efficiency.build,
    dynamics.build,
    ablation.build,
    per_class.build,
    exclusions.build,
    calibration.build,
    temperature.build,
    robustness.build,
    external.build,
)


def build_sections(ctx: ReportContext) -> list[Section]:
    """Every section of :data:`SECTIONS` that applies to the results, in order."""
    return [s for s in (build(ctx) for build in SECTIONS) if s is not None]
