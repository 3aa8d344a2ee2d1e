"""FinetuneConfig: YAML round-trip, preset merging, typed overrides and the CLI's precedence."""

from __future__ import annotations

import pytest

from ecgadapt.errors import ConfigError
from ecgadapt.train.config import FinetuneConfig, apply_overrides, build_config, parse_override
from ecgadapt.train.recipes import get_recipe


def _custom() -> FinetuneConfig:
    return apply_overrides(
        FinetuneConfig(),
        [
            "data.root=/data/ptbxl",
            "data.fraction=0.3",
            "model.name=xresnet1d101",
            "model.weights=/w.pt",
            "model.kwargs.layers=[1, 2]",
            "recipe.stages.1.drop_path_rate=0.15",
            "training.ema=0.999",
            "training.max_train_batches=3",
            "seed=4",
            "out=runs/x",
        ],
    )


@pytest.mark.parametrize("make", [FinetuneConfig, _custom])
def test_yaml_round_trip(make, tmp_path):
    cfg = make()
    assert FinetuneConfig.from_yaml(cfg.to_yaml()) == cfg
    cfg.to_yaml(tmp_path / "c.yaml")
    assert FinetuneConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_overrides_reach_nested_fields_with_types():
    cfg = _custom()
    assert cfg.recipe.stages[1].drop_path_rate == 0.15 and cfg.recipe.stages[0].drop_path_rate == 0.0
    assert cfg.model.kwargs == {"layers": [1, 2]} and cfg.training.ema == 0.999 and cfg.seed == 4
    assert (
        apply_overrides(cfg, ["recipe.stages.0.lr=1e-4"]).recipe.stages[0].lr == 1e-4
    )  # YAML reads 1e-4 as text
    assert apply_overrides(cfg, ["training.grad_clip=null"]).training.grad_clip is None


def test_recipe_name_override_loads_that_preset():
    cfg = apply_overrides(FinetuneConfig(), ["recipe.name=baseline_ft"])
    assert cfg.recipe == get_recipe("baseline_ft")


def test_partial_stages_merge_over_the_preset():
    cfg = FinetuneConfig.from_dict({"recipe": {"name": "post_training", "stages": [{}, {"drop_rate": 0.2}]}})
    expected = get_recipe("post_training")
    expected.stages[1].drop_rate = 0.2
    assert cfg.recipe == expected


def test_custom_recipe_needs_full_stages():
    cfg = FinetuneConfig.from_dict(
        {"recipe": {"name": "mine", "stages": [{"trainable": "head", "epochs": 3}]}}
    )
    assert cfg.recipe.name == "mine" and cfg.recipe.stages[0].epochs == 3
    with pytest.raises(ConfigError, match="unknown recipe"):
        FinetuneConfig.from_dict({"recipe": {"name": "mine"}})


@pytest.mark.parametrize(
    "items, match",
    [
        (["training.batch_sise=3"], "unknown config field.*training.batch_sise"),
        (["recipe.stages.5.lr=1"], "not an index"),
        (["training.batch_size=abc"], "training.batch_size must be an integer"),
        (["training.batch_size=2.5"], "must be an integer"),
        (["data.task=nonsense"], "unknown task"),
        (["training.amp=maybe"], "true or false"),
        (["data.fraction=0"], "fraction"),
        (["recipe.stages.1.drop_rate=1.5"], "drop_rate"),
        (["batch_size"], "section.field=value"),
    ],
)
def test_bad_overrides_name_the_field(items, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(FinetuneConfig(), items)


def test_unknown_yaml_section_is_an_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("trainig:\n  batch_size: 3\n")
    with pytest.raises(ConfigError, match="trainig"):
        FinetuneConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        FinetuneConfig.from_yaml(tmp_path / "missing.yaml")


def test_parse_override_uses_yaml_values():
    assert parse_override("a.b=0.2") == (["a", "b"], 0.2)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=") == (["a"], None)


def test_build_config_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "recipe:\n  name: post_training\n  stages: [{}, {drop_path_rate: 0.3}]\n"
        "training:\n  batch_size: 8\nseed: 5\n"
    )
    cfg = build_config(f, ["training.batch_size=4"], seed=6, data__root="/d", epochs=2)
    assert cfg.training.batch_size == 4  # --set beats the file
    assert cfg.seed == 6 and cfg.data.root == "/d"  # flags beat the file
    assert cfg.recipe.stages[1].drop_path_rate == 0.3  # the file's stage tweak survives a same-name --recipe
    assert [s.epochs for s in cfg.recipe.stages] == [2, 2]
    other = build_config(f, recipe="baseline_ft")
    assert other.recipe.name == "baseline_ft" and len(other.recipe.stages) == 1  # another recipe: its preset
    assert build_config(f, model__weights="none").model.weights is None
