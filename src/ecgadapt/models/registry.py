"""A registry of model factories: ``create_model(name, ...)`` and ``list_models()``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


def _ensure_builtin_models() -> None:
    """Import the modules whose import registers the built-in models."""
    from ecgadapt.models import _builtin  # noqa: F401


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_builtin_models()
    return sorted(_FACTORIES)


def model_info(name: str) -> ModelInfo:
    """Registry metadata of ``name``."""
    _ensure_builtin_models()
    if name not in _INFO:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_FACTORIES))}")
    return _INFO[name]


def create_model(
    name: str,
    *,
    num_classes: int,
    pretrained: str | Path | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    **overrides: Any,
) -> ECGModel:
    """Build model ``name`` with a fresh ``num_classes`` head, optionally loading ``pretrained`` weights."""
    model_info(name)  # validates the name
    model = _FACTORIES[name](
        num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate, **overrides
    )
    if pretrained is not None:
        from ecgadapt.models.checkpoint import load_pretrained

        load_pretrained(model, name, pretrained)
    return model
