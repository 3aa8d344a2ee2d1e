"""The models package has no import circle: model files register themselves, the registry imports none."""

from __future__ import annotations

import ecgadapt.models
from import_graph import cycles, import_graph

MODEL_FILES = {f"ecgadapt.models.{m}" for m in ("ecg_vit", "ecgfounder", "hubert_ecg", "st_mem", "xresnet1d")}


def test_no_import_circle_inside_models():
    graph = import_graph("ecgadapt.models")
    assert MODEL_FILES <= graph["ecgadapt.models"]  # the package imports the model files
    assert cycles(graph) == []


def test_registry_and_key_maps_import_no_model_file():
    graph = import_graph("ecgadapt.models")
    for module in ("registry", "keymap", "checkpoint", "factory", "base", "layers"):
        assert not graph[f"ecgadapt.models.{module}"] & MODEL_FILES, module
    assert "ecgadapt.models.registry" not in graph["ecgadapt.models.keymap"]


def test_importing_the_package_registers_every_built_in_model():
    names = ecgadapt.models.list_models()
    families = {ecgadapt.models.model_info(n).family for n in names}
    assert {"ecg_vit", "ecgfounder", "hubert_ecg", "st_mem", "xresnet1d"} <= families
