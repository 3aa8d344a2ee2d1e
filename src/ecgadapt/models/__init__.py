"""Backbones: a registry of ECG foundation models and task-specific baselines."""

from ecgadapt.models.base import ECGModel, InputSpec, ModelInfo
from ecgadapt.models.layers import DropPath, drop_path, drop_path_schedule
from ecgadapt.models.registry import create_model, list_models, model_info, register_model

__all__ = [
    "DropPath",
    "ECGModel",
    "InputSpec",
    "ModelInfo",
    "create_model",
    "drop_path",
    "drop_path_schedule",
    "list_models",
    "model_info",
    "register_model",
]
