"""``create_model``: build a registered model and optionally load pretrained weights into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgadapt.models.base import ECGModel
from ecgadapt.models.checkpoint import load_pretrained
from ecgadapt.models.registry import build_model


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
    model = build_model(
        name, num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate, **overrides
    )
    if pretrained is not None:
        load_pretrained(model, name, pretrained)
    return model
