"""create_model(pretrained=True | "bundled" | PATH | DIR) and save_pretrained folders (Hub layout, strict keys)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import ecgadapt
from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.models import create_model
from ecgadapt.models.checkpoint import load_pretrained
from ecgadapt.weights import bundled_path

TINY_VIT = {"width": 16, "depth": 2, "heads": 2, "patch_size": 50}
X = torch.randn(2, 12, 1000, generator=torch.Generator().manual_seed(0))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, skip_head: bool = False) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if not (skip_head and k.startswith("head."))]
    return all(torch.equal(sa[k], sb[k]) for k in keys)


@pytest.mark.parametrize("pretrained", [True, "bundled"])
def test_pretrained_true_or_bundled_loads_the_bundled_encoder(pretrained) -> None:
    model = create_model("xresnet1d_tiny", pretrained=pretrained, num_classes=5)
    reference = create_model("xresnet1d_tiny", num_classes=5)
    load_pretrained(reference, "xresnet1d_tiny", bundled_path("xresnet1d_tiny"))
    assert _same_weights(model, reference, skip_head=True)
    assert not _same_weights(model, create_model("xresnet1d_tiny", num_classes=5), skip_head=True)


def test_the_package_root_exports_create_model() -> None:
    model = ecgadapt.create_model("ecg_vit_tiny", pretrained="bundled", num_classes=3)
    assert model.num_classes == 3 and model.model_name == "ecg_vit_tiny"


def test_a_model_without_bundled_weights_gives_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="no bundled weights for model 'xresnet1d50'.*xresnet1d_tiny"):
        create_model("xresnet1d50", pretrained=True, num_classes=2)


def test_a_folder_without_config_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="folder without config.json"):
        create_model("xresnet1d_tiny", pretrained=tmp_path, num_classes=2)


def test_num_classes_is_required_without_a_folder() -> None:
    with pytest.raises(ConfigError, match="needs num_classes"):
        create_model("xresnet1d_tiny")


@pytest.mark.parametrize("name, kwargs", [("xresnet1d_tiny", {}), ("ecg_vit_tiny", TINY_VIT)])
def test_save_pretrained_round_trip_keeps_the_head_and_the_classes(tmp_path, name, kwargs) -> None:
    model = create_model(name, num_classes=3, **kwargs).eval()
    folder = model.save_pretrained(tmp_path / "saved", class_names=["NORM", "MI", "CD"])
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_name"] == name and config["num_classes"] == 3
    assert config["class_names"] == ["NORM", "MI", "CD"] and config["input_spec"]["sampling_rate"] == 100
    assert config["model_kwargs"] == {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ecgadapt\n") and "NORM, MI, CD" in card
    loaded = create_model(pretrained=folder).eval()
    assert loaded.class_names == ["NORM", "MI", "CD"] and _same_weights(model, loaded)
    with torch.no_grad():
        assert torch.equal(model(X), loaded(X))
    named = create_model(name, pretrained=str(folder), num_classes=3)
    assert _same_weights(model, named)


def test_another_num_classes_gives_a_fresh_head_on_the_saved_backbone(tmp_path) -> None:
    model = create_model("xresnet1d_tiny", num_classes=3)
    model.save_pretrained(tmp_path / "saved")
    loaded = create_model(pretrained=tmp_path / "saved", num_classes=7)
    assert loaded.num_classes == 7 and loaded.class_names is None
    assert _same_weights(model, loaded, skip_head=True)


def test_a_folder_of_another_model_is_refused(tmp_path) -> None:
    create_model("xresnet1d_tiny", num_classes=2).save_pretrained(tmp_path / "saved")
    with pytest.raises(ConfigError, match="holds a 'xresnet1d_tiny' model, not 'ecg_vit_tiny'"):
        create_model("ecg_vit_tiny", pretrained=tmp_path / "saved")


@pytest.mark.parametrize("change", ["drop", "add", "reshape"])
def test_loading_checks_keys_strictly(tmp_path, change) -> None:
    folder = create_model("xresnet1d_tiny", num_classes=2).save_pretrained(tmp_path / "saved")
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.endswith("weight") and not k.startswith("head."))
    if change == "drop":
        del state[key]
    elif change == "add":
        state["extra.weight"] = torch.zeros(3)
    else:
        state[key] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    expected = {"drop": f"missing {key}", "add": "unexpected extra.weight", "reshape": f"wrong shape {key}"}
    with pytest.raises(CheckpointError, match=expected[change].replace(".", r"\.")):
        create_model(pretrained=folder)


def test_class_names_must_match_the_head(tmp_path) -> None:
    with pytest.raises(ConfigError, match="2 class names given for a model with 3 classes"):
        create_model("xresnet1d_tiny", num_classes=3).save_pretrained(tmp_path, class_names=["A", "B"])
