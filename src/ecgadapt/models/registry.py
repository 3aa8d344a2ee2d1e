"""The model registry (timm style): model files register factories with :func:`register_model` on import.

The registry imports no model file: ``import ecgadapt.models`` imports the built-in model modules, whose
decorators fill it. :func:`~ecgadapt.models.factory.create_model` builds a registered model and loads weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ecgadapt.errors import ConfigError
from ecgadapt.models.base import ECGModel, ModelInfo

_FACTORIES: dict[str, Callable[..., ECGModel]] = {}
_INFO: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> Callable[[Callable[..., ECGModel]], Callable[..., ECGModel]]:
    """Decorator registering a factory ``fn(*, num_classes, drop_rate, drop_path_rate, **overrides)``."""

    def wrap(fn: Callable[..., ECGModel]) -> Callable[..., ECGModel]:
        if info.name in _FACTORIES:
            raise ValueError(f"model {info.name!r} is registered twice")
        _FACTORIES[info.name] = fn
        _INFO[info.name] = info
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_FACTORIES)


def model_info(name: str) -> ModelInfo:
    """Registry metadata of ``name``."""
    if name not in _INFO:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_FACTORIES))}")
    return _INFO[name]


def build_model(
    name: str, *, num_classes: int, drop_rate: float = 0.0, drop_path_rate: float = 0.0, **overrides: Any
) -> ECGModel:
    """Model ``name`` freshly initialised with a ``num_classes`` head (no pretrained weights)."""
    model_info(name)  # validates the name
    model = _FACTORIES[name](
        num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate, **overrides
    )
    model.model_name = name  # what save_pretrained records to rebuild it
    model.model_kwargs = dict(overrides)
    return model
