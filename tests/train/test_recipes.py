"""Recipe presets as data, and the helpers that apply a stage to a model (trainable set, mode, drop rates)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ecgadapt.engine.stages import (
    Stage,
    drop_path_blocks,
    drop_rates,
    reference_model,
    set_drop_rates,
    set_train_mode,
    set_trainable,
)
from ecgadapt.errors import ConfigError
from ecgadapt.models import DropPath, create_model
from ecgadapt.models.base import ECGModel, InputSpec
from ecgadapt.train.recipes import BUDGET_EPOCHS, get_recipe, list_recipes, override_stages

VIT = {"width": 16, "depth": 3, "heads": 2, "patch_size": 50}
XRES = {"layers": [2, 1], "widths": [8, 8], "stem_widths": [8, 8, 8], "expansion": 2}


def _diff(a: Stage, b: Stage) -> set[str]:
    return {f.name for f in dataclasses.fields(Stage) if getattr(a, f.name) != getattr(b, f.name)}


def test_presets_have_the_documented_shape():
    assert set(list_recipes()) == {
        "scratch",
        "linear_probe",
        "baseline_ft",
        "lp_ft",
        "post_training",
        "post_training_no_lp",
        "post_training_no_sd",
        "post_training_no_dropout",
    }
    pt = get_recipe("post_training")
    probe, ft = pt.stages
    assert probe.trainable == "head" and probe.patience and probe.drop_rate == probe.drop_path_rate == 0
    assert ft.trainable == "all" and 0.1 <= ft.drop_path_rate <= 0.2 and 0.1 <= ft.drop_rate <= 0.2
    (base,) = get_recipe("baseline_ft").stages
    assert base.trainable == "all" and base.drop_rate == 0 and base.drop_path_rate == 0
    assert _diff(base, ft) == {
        "drop_rate",
        "drop_path_rate",
        "epochs",
    }  # baseline_ft's one stage has the whole budget
    (scratch,) = get_recipe("scratch").stages
    assert get_recipe("scratch").pretrained is False and scratch.trainable == "all"
    assert all(get_recipe(n).pretrained for n in list_recipes() if n != "scratch")
    assert [s.trainable for s in get_recipe("linear_probe").stages] == ["head"]


@pytest.mark.parametrize(
    "name, changed",
    [
        ("post_training_no_sd", {"drop_path_rate"}),
        ("post_training_no_dropout", {"drop_rate"}),
        ("lp_ft", {"drop_rate", "drop_path_rate"}),
    ],
)
def test_two_stage_ablations_differ_from_post_training_in_named_fields_only(name, changed):
    pt, other = get_recipe("post_training"), get_recipe(name)
    assert _diff(pt.stages[0], other.stages[0]) == set()
    assert _diff(pt.stages[1], other.stages[1]) == changed


def test_no_lp_ablation_is_the_regularised_stage_alone():
    (only,) = get_recipe("post_training_no_lp").stages
    assert _diff(only, get_recipe("post_training").stages[1]) == {
        "epochs"
    }  # with the probe's share of the budget


def test_every_preset_has_the_same_maximum_budget():
    """Built-in comparisons are fair by construction: the stages of every preset add up to the same epochs."""
    totals = {name: sum(s.epochs for s in get_recipe(name).stages) for name in list_recipes()}
    assert set(totals.values()) == {BUDGET_EPOCHS}, totals
    assert all(
        s.max_steps is None and s.warmup_epochs < s.epochs
        for n in list_recipes()
        for s in get_recipe(n).stages
    )
    assert all(s.min_delta > 0 for n in list_recipes() for s in get_recipe(n).stages)


def test_get_recipe_returns_independent_copies_and_rejects_unknown_names():
    a = get_recipe("post_training")
    a.stages[1].lr = 123.0
    assert get_recipe("post_training").stages[1].lr != 123.0
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        get_recipe("nope")
    short = override_stages(get_recipe("lp_ft"), epochs=1)
    assert [s.epochs for s in short.stages] == [1, 1]
    with pytest.raises(ConfigError, match="unknown stage field"):
        override_stages(short, epoch=1)


@pytest.mark.parametrize(
    "field, value",
    [
        ("trainable", "backbone"),
        ("epochs", 0),
        ("lr", 0.0),
        ("drop_path_rate", 1.0),
        ("patience", 0),
        ("layer_decay", 1.5),
        ("warmup_epochs", -1.0),
    ],
)
def test_stage_validation_names_the_field(field, value):
    stage = dataclasses.replace(get_recipe("baseline_ft").stages[0], **{field: value})
    with pytest.raises(ConfigError, match=field):
        stage.validate()


def test_set_trainable_head_only_and_modes():
    model = create_model("xresnet1d50", num_classes=3, **XRES)
    params = set_trainable(model, "head")
    assert {id(p) for p in params} == {id(p) for p in model.head.parameters()}
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("head."))
    set_train_mode(model, "head")
    assert model.head.training
    assert not any(m.training for n, m in model.named_modules() if n and not n.startswith("head"))
    set_trainable(model, "all")
    set_train_mode(model, "all")
    assert all(p.requires_grad for p in model.parameters()) and all(m.training for m in model.modules())


def test_drop_path_blocks_group_two_droppaths_per_vit_block():
    model = create_model("ecg_vit_tiny", num_classes=3, **VIT)
    blocks = drop_path_blocks(model)
    assert len(blocks) == 3 and all(len(g) == 2 for g in blocks)


@pytest.mark.parametrize("name, kw", [("ecg_vit_tiny", VIT), ("xresnet1d50", XRES)])
def test_generic_drop_rates_are_linear_per_block(name, kw):
    model = create_model(name, num_classes=3, **kw)
    set_drop_rates(model, 0.15, 0.3)
    per_block = [{m.drop_prob for m in g} for g in drop_path_blocks(model)]
    assert all(len(s) == 1 for s in per_block)
    assert [s.pop() for s in per_block] == pytest.approx([0.0, 0.15, 0.3])
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(p == pytest.approx(0.15) for p in dropouts)


@pytest.mark.parametrize("name, kw", [("ecg_vit_tiny", VIT), ("xresnet1d50", {**XRES, "head_hidden": 8})])
def test_reference_drop_rates_match_a_model_built_with_those_rates(name, kw):
    model = create_model(name, num_classes=3, **kw)
    ref = reference_model(name, 3, 0.2, 0.1, kw)
    assert ref is not None and next(ref.parameters()).is_meta
    set_drop_rates(model, 0.2, 0.1, reference=ref)
    built = create_model(name, num_classes=3, drop_rate=0.2, drop_path_rate=0.1, **kw)
    assert drop_rates(model) == pytest.approx(drop_rates(built))
    assert drop_rates(model) != pytest.approx(drop_rates(create_model(name, num_classes=3, **kw)))
    set_drop_rates(model, 0.0, 0.0, reference=reference_model(name, 3, 0.0, 0.0, kw))  # and back off again
    assert set(drop_rates(model).values()) == {0.0}


class FloatDrop(ECGModel):
    """A model keeping a drop probability as a plain float attribute (as fused attention code does)."""

    input_spec = InputSpec(sampling_rate=100, length=100)

    def __init__(self, drop_rate: float = 0.0):
        super().__init__()
        self.num_features = 4
        self.attn_drop = drop_rate
        self.body = torch.nn.Linear(100, 4)
        self.head_drop = torch.nn.Dropout(drop_rate / 2)
        self.reset_classifier(2)

    def forward_features(self, x):
        return self.body(x).mean(1)


def test_reference_copies_float_drop_attributes_and_uneven_dropouts():
    model = FloatDrop()
    set_drop_rates(model, 0.4, 0.0, reference=FloatDrop(0.4))
    assert model.attn_drop == pytest.approx(0.4) and model.head_drop.p == pytest.approx(0.2)


class NoDropPath(ECGModel):
    input_spec = InputSpec(sampling_rate=100, length=100)

    def __init__(self):
        super().__init__()
        self.num_features = 4
        self.body = torch.nn.Linear(100, 4)
        self.head_drop = torch.nn.Dropout(0.0)
        self.reset_classifier(2)

    def forward_features(self, x):
        return self.body(x).mean(1)


def test_stochastic_depth_on_a_model_without_droppath_is_a_clear_error():
    model = NoDropPath()
    set_drop_rates(model, 0.3, 0.0)
    assert model.head_drop.p == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="no DropPath"):
        set_drop_rates(model, 0.0, 0.1)
    assert not any(isinstance(m, DropPath) for m in model.modules())


def _float_attributes(model: torch.nn.Module) -> dict[str, float]:
    return {
        f"{n}.{k}": v for n, m in model.named_modules() for k, v in vars(m).items() if isinstance(v, float)
    }


def _registered() -> list[str]:
    from ecgadapt.models import list_models

    return list_models()


@pytest.mark.parametrize("name", _registered())
def test_every_registered_model_takes_stage_drop_rates_in_place(name):
    """Reference copy reproduces the factory's rates exactly; the generic per-block DropPath schedule too."""
    with torch.device("meta"):
        live = create_model(name, num_classes=5)
        generic = create_model(name, num_classes=5)
        built = create_model(name, num_classes=5, drop_rate=0.1, drop_path_rate=0.2)
    set_drop_rates(live, 0.1, 0.2, reference=reference_model(name, 5, 0.1, 0.2))
    assert drop_rates(live) == drop_rates(built)
    # every float attribute of every module, whatever its name (HuBERT's attention keeps its rate in `dropout`)
    assert _float_attributes(live) == _float_attributes(built)
    set_drop_rates(generic, 0.1, 0.2)
    paths = [[m.drop_prob for m in model.modules() if isinstance(m, DropPath)] for model in (generic, built)]
    assert paths[0] == pytest.approx(paths[1]) and max(paths[0]) == pytest.approx(0.2)


@pytest.mark.parametrize("name", _registered())
def test_parameters_frozen_by_design_stay_frozen_in_every_stage(name):
    with torch.device("meta"):
        model = create_model(name, num_classes=5)
    fixed = {n for n, p in model.named_parameters() if not p.requires_grad}
    if name.startswith("st_mem"):
        assert fixed == {"pos_embedding"}  # ST-MEM's sine-cosine position table is fixed by design
    for kind in ("head", "all", "head", "all"):
        trainable = {id(p) for p in set_trainable(model, kind)}
        on = {n for n, p in model.named_parameters() if p.requires_grad}
        assert not on & fixed, f"{kind}: {sorted(on & fixed)} turned on"
        assert on == {n for n, p in model.named_parameters() if id(p) in trainable}
    assert on == {n for n, _ in model.named_parameters()} - fixed
