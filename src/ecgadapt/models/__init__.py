"""Backbones: a registry of ECG foundation models and task-specific baselines.

Importing this package imports every built-in model module, whose ``@register_model`` decorators (and
``register_keymap`` calls) fill the registry; the registry itself imports no model file.
"""

from ecgadapt.models import (  # registers the built-in models
    ecg_vit,
    ecgfounder,
    hubert_ecg,
    st_mem,
    xresnet1d,
)
from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo
from ecgadapt.models.factory import create_model
from ecgadapt.models.layers import DropPath, drop_path, drop_path_schedule
from ecgadapt.models.registry import list_models, model_info, register_model

__all__ = [
    "DropPath",
    "ECGModel",
    "InputSpec",
    "ModelInfo",
    "create_model",
    "drop_path",
    "drop_path_schedule",
    "ecg_vit",
    "ecgfounder",
    "hubert_ecg",
    "list_models",
    "model_info",
    "register_model",
    "st_mem",
    "xresnet1d",
]
