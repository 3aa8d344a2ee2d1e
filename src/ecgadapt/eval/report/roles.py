"""Recipe roles: which recipe the report treats as the method, which as baselines, ablations and references.

The report takes roles as data (``build_report(..., roles=...)``); without them it reads ``roles:`` from the
results folder's ``spec.yaml`` (in the spec, or in its ``resolved`` record), and else uses :data:`BUILTIN_ROLES`,
the roles of the built-in recipes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecgadapt.errors import ConfigError

__all__ = ["BUILTIN_ROLES", "RecipeRoles", "roles_from_record"]


@dataclass(frozen=True)
class RecipeRoles:
    """Recipe labels by role, and the order in which tables and figures list recipes.

    A role names recipe labels; a label that starts with a treatment or baseline name is a variant of it (the
    tuned ``baseline_ft_tuned`` is a baseline). The treatment is ``treatment`` when it ran, else its first
    variant that is not an ablation. ``order`` lists recipes first to last (others follow, sorted); when
    empty it is references, baselines, treatment, ablations.
    """

    treatment: str
    baselines: tuple[str, ...] = ()
    ablations: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    order: tuple[str, ...] = field(default=())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecipeRoles:
        """Roles from plain data (a spec's ``roles:``): ``treatment`` (required) and lists of labels."""
        unknown = set(data) - {"treatment", "baselines", "ablations", "references", "order"}
        if unknown:
            raise ConfigError(
                f"roles: unknown keys {sorted(unknown)}; use treatment, baselines, ablations, references, order"
            )
        if not isinstance(data.get("treatment"), str) or not data["treatment"]:
            raise ConfigError("roles: `treatment` must name one recipe label")

        def labels(key: str) -> tuple[str, ...]:
            value = data.get(key) or ()
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"roles: `{key}` must be a list of recipe labels, got {value!r}")
            return tuple(value)

        return cls(
            data["treatment"],
            labels("baselines"),
            labels("ablations"),
            labels("references"),
            labels("order"),
        )

    def display_order(self) -> tuple[str, ...]:
        """The order recipes are listed in."""
        return self.order or (*self.references, *self.baselines, self.treatment, *self.ablations)

    def treatment_in(self, recipes: Sequence[str]) -> str | None:
        """The treatment among ``recipes`` (the named one, else its first variant that is not an ablation)."""
        if self.treatment in recipes:
            return self.treatment
        return next(
            (r for r in recipes if r.startswith(self.treatment) and r not in self.ablations),
            None,
        )

    def baselines_in(self, recipes: Sequence[str]) -> list[str]:
        """The baselines among ``recipes`` (named ones and their variants), in the order of ``recipes``."""
        return [r for r in recipes if any(r.startswith(b) for b in self.baselines)]

    def ablations_in(self, recipes: Sequence[str]) -> list[str]:
        """The ablations among ``recipes``, in the order the roles list them."""
        return [r for r in self.ablations if r in recipes]


#: The roles of the built-in recipes (the paper's design): post-training against plain fine-tuning, its
#: ablations (no linear-probe stage, no stochastic depth, no dropout; lp_ft keeps only the probe stage),
#: and training from scratch and a linear probe for reference.
BUILTIN_ROLES = RecipeRoles(
    treatment="post_training",
    baselines=("baseline_ft",),
    ablations=("post_training_no_lp", "post_training_no_sd", "post_training_no_dropout", "lp_ft"),
    references=("scratch", "linear_probe"),
    order=(
        "scratch",
        "linear_probe",
        "baseline_ft",
        "baseline_ft_tuned",
        "lp_ft",
        "post_training",
        "post_training_no_lp",
        "post_training_no_sd",
        "post_training_no_dropout",
    ),
)


def roles_from_record(record: Mapping[str, Any]) -> RecipeRoles | None:
    """The roles a saved ``spec.yaml`` record holds (``spec.roles`` or ``resolved.roles``), else None."""
    for part in (record.get("spec") or {}, record.get("resolved") or {}):
        if isinstance(part, Mapping) and part.get("roles"):
            return RecipeRoles.from_dict(part["roles"])
    return None
