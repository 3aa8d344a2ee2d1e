"""The preset recipes: named lists of :class:`~ecgadapt.engine.stages.Stage` s, and budget helpers.

Presets are plain lists of stages; the ablations differ from ``post_training`` in exactly one field, so a
report can name what differs. The preset values are this project's defaults for PTB-XL (AdamW, batch 64), not
numbers taken from a paper; every field can be overridden from a config.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from ecgadapt.engine.stages import Recipe, Stage
from ecgadapt.errors import ConfigError

# --- presets ---------------------------------------------------------------------------------------------

BUDGET_EPOCHS = 40
"""Every preset's maximum length in epochs, summed over its stages: built-in comparisons get equal budgets."""

PROBE_EPOCHS = 10
"""The preview probe's share of the budget in the two-stage presets (the fine-tuning stage gets the rest)."""

_EARLY_STOP = {"patience": 5, "min_delta": 1e-3}

PROBE = Stage(name="probe", trainable="head", epochs=PROBE_EPOCHS, lr=1e-3, weight_decay=0.0, **_EARLY_STOP)
"""Linear probing: frozen backbone in eval mode, only the head trains, until validation stops improving."""

FINETUNE = Stage(
    name="finetune",
    trainable="all",
    epochs=BUDGET_EPOCHS - PROBE_EPOCHS,
    lr=1e-4,
    weight_decay=0.05,
    warmup_epochs=2.0,
    **_EARLY_STOP,
)
"""Plain full fine-tuning: no stochastic depth, no extra dropout."""

REGULARISED = replace(FINETUNE, drop_rate=0.1, drop_path_rate=0.2)
"""Post-training's fine-tuning stage: full fine-tuning with dropout and stochastic depth on."""

SCRATCH = Stage(
    name="train",
    trainable="all",
    epochs=BUDGET_EPOCHS,
    lr=1e-3,
    weight_decay=0.05,
    warmup_epochs=3.0,
    patience=10,
    min_delta=1e-3,
)
"""Training from random initialisation."""


def _whole_budget(stage: Stage) -> Stage:
    """``stage`` stretched to the whole budget (the one-stage presets)."""
    return replace(stage, epochs=BUDGET_EPOCHS)


_PRESETS: dict[str, Recipe] = {
    "scratch": Recipe("scratch", [SCRATCH], pretrained=False),
    "linear_probe": Recipe("linear_probe", [_whole_budget(PROBE)]),
    "baseline_ft": Recipe("baseline_ft", [_whole_budget(FINETUNE)]),
    "lp_ft": Recipe("lp_ft", [PROBE, FINETUNE]),
    "post_training": Recipe("post_training", [PROBE, REGULARISED]),
    "post_training_no_lp": Recipe("post_training_no_lp", [_whole_budget(REGULARISED)]),
    "post_training_no_sd": Recipe("post_training_no_sd", [PROBE, replace(REGULARISED, drop_path_rate=0.0)]),
    "post_training_no_dropout": Recipe(
        "post_training_no_dropout", [PROBE, replace(REGULARISED, drop_rate=0.0)]
    ),
}


def list_recipes() -> list[str]:
    """Names of the preset recipes."""
    return list(_PRESETS)


def get_recipe(name: str) -> Recipe:
    """A fresh (deep) copy of preset ``name``."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(_PRESETS)}")
    return copy.deepcopy(_PRESETS[name])


def override_stages(recipe: Recipe, **changes) -> Recipe:
    """A copy of ``recipe`` with the same field ``changes`` applied to every stage (e.g. ``epochs=2``)."""
    unknown = set(changes) - set(Stage.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown stage field(s): {', '.join(sorted(unknown))}")
    return replace(recipe, stages=[replace(s, **changes) for s in recipe.stages])


def with_budget(recipe: Recipe, total_epochs: int) -> Recipe:
    """A copy of ``recipe`` whose stages share ``total_epochs`` in the proportions of their current epochs
    (each stage keeps at least one), so that recipes of a comparison get equal budgets at any size."""
    if int(total_epochs) != total_epochs or total_epochs < len(recipe.stages):
        raise ConfigError(
            f"a budget of {total_epochs!r} epochs cannot cover the {len(recipe.stages)} stage(s) of {recipe.name!r}"
        )
    current = [max(int(s.epochs), 1) for s in recipe.stages]
    shares = [max(1, round(total_epochs * c / sum(current))) for c in current]
    shares[-1] = max(1, int(total_epochs) - sum(shares[:-1]))  # the last stage takes the rounding remainder
    return replace(recipe, stages=[replace(s, epochs=n) for s, n in zip(recipe.stages, shares)])
