"""Text reports behind ``ecgadapt models list`` and ``ecgadapt models inspect PATH``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from ecgadapt.errors import ECGAdaptError
from ecgadapt.models.base import InputSpec
from ecgadapt.models.checkpoint import CheckpointInfo, detect_checkpoint
from ecgadapt.models.keymap import LoadPlan, describe_problems, keymap_for
from ecgadapt.models.registry import build_model, list_models, model_info


@dataclass(frozen=True)
class ModelRow:
    """One registered model: name, family, input spec and parameter count (None if it cannot be built)."""

    name: str
    family: str
    input_spec: InputSpec
    num_params: int | None
    note: str = ""


def count_parameters(name: str) -> int:
    """Parameters of model ``name`` with default settings and no head (built on the meta device)."""
    with torch.device("meta"):
        model = build_model(name, num_classes=0)
    return sum(p.numel() for p in model.parameters())


def model_rows() -> list[ModelRow]:
    """A row per registered model; models that cannot be built here carry the reason in ``note``."""
    rows = []
    for name in list_models():
        info = model_info(name)
        try:
            rows.append(ModelRow(name, info.family, info.input_spec, count_parameters(name)))
        except ECGAdaptError as err:
            rows.append(ModelRow(name, info.family, info.input_spec, None, str(err)))
    return rows


def format_input_spec(spec: InputSpec) -> str:
    """Compact form, e.g. ``12x2250 @250Hz global bp0.67-40`` (``flat`` when leads are concatenated)."""
    band = f" bp{spec.band_pass[0]:g}-{spec.band_pass[1]:g}" if spec.band_pass else ""
    flat = " flat" if spec.flatten_leads else ""
    return f"{spec.num_leads}x{spec.length} @{spec.sampling_rate}Hz {spec.normalisation}{band}{flat}"


def describe_models() -> str:
    """The ``models list`` table: name, family, input spec, parameters (backbone, no head)."""
    rows = model_rows()
    table = [("name", "family", "input", "params")]
    for r in rows:
        params = f"{r.num_params:,}" if r.num_params is not None else "n/a (see below)"
        table.append((r.name, r.family, format_input_spec(r.input_spec), params))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines += [f"{r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(lines)


def _group_ignored(plan: LoadPlan, examples: int = 2) -> list[str]:
    """Ignored file keys grouped by reason: ``reason: N keys (a, b, ...)``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for key, reason in plan.ignored.items():
        groups[reason].append(key)
    lines = []
    for reason, keys in groups.items():
        more = ", ..." if len(keys) > examples else ""
        lines.append(f"  {reason}: {len(keys)} key(s) ({', '.join(keys[:examples])}{more})")
    return lines


_HEAD = {
    "loaded": "the file's classifier head fits and would be loaded",
    "new": "none in the file; create_model adds a new head",
    "replaced": "the file has a classifier head: loaded into a model with the same classes, else replaced",
}


def best_candidate(info: CheckpointInfo) -> tuple[str, LoadPlan] | None:
    """The first fitting model, else the candidate with the fewest problems, else None."""
    if not info.plans:
        return None
    name = info.model or min(info.plans, key=lambda n: info.plans[n].n_problems)
    return name, info.plans[name]


def describe_checkpoint(path: str | Path) -> str:
    """The ``models inspect`` report: format, wrapper, size, family, fitting model, dropped and missing keys."""
    info = detect_checkpoint(path)
    wrapper = f"weights under {info.wrapper!r}" if info.wrapper else "flat dict of tensors"
    lines = [
        f"file:      {info.path}",
        f"format:    {info.format}, {wrapper}",
        f"tensors:   {info.n_tensors} ({info.n_numbers:,} numbers)",
    ]
    if info.other_entries:
        lines.append(f"other:     {', '.join(info.other_entries)}")
    if info.stripped_prefix:
        lines.append(f"prefix:    {info.stripped_prefix!r} stripped from every key")
    if info.placeholders:
        lines.append(f"pickled:   {', '.join(info.placeholders)} (read as inert placeholders, not executed)")
    lines.append(f"family:    {', '.join(info.families) or 'unknown (no registered marker keys)'}")
    lines.append(f"fits:      {', '.join(info.fits) or 'no registered model with default settings'}")
    best = best_candidate(info)
    if best is None:
        lines.append("no registered model could be built to compare against")
        return "\n".join(lines)
    name, plan = best
    verb = "loads into" if plan.ok else "closest model"
    lines.append(f"{verb}: {name}: {len(plan.tensors)} tensors ({plan.n_loaded:,} numbers)")
    lines.append(f"head:      {_HEAD[plan.head]}")
    lines.append(f"ignored:   {len(plan.ignored) or 'none'}")
    lines += _group_ignored(plan)
    problems = describe_problems(plan, keymap_for(model_info(name).family))
    lines += [f"problem:   {p}" for p in problems] or ["missing:   none"]
    return "\n".join(lines)
