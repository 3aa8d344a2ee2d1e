"""Checkpoints bundled with ecgadapt; each has a model card (``<file>.md``) beside it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED: dict[str, str] = {"ecg_vit_tiny": "ecg_vit_tiny.safetensors"}
"""Model name -> file name of its bundled encoder checkpoint."""


def bundled_path(model_name: str) -> Path | None:
    """Path of the checkpoint bundled for ``model_name``, or None when ecgadapt ships none."""
    file_name = BUNDLED.get(model_name)
    if file_name is None:
        return None
    path = Path(str(resources.files("ecgadapt.weights") / file_name))
    return path if path.is_file() else None
