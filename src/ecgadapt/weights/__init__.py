"""Checkpoints bundled with ecgadapt; each has a model card (``<file>.md``) beside it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED: dict[str, str] = {
    "xresnet1d_tiny": "xresnet1d_tiny.safetensors",
    "ecg_vit_tiny": "ecg_vit_tiny.safetensors",
}
"""Model name -> file name of its bundled encoder checkpoint."""

DEFAULT_MODEL = "xresnet1d_tiny"
"""The model of ``ecgadapt finetune`` and of the demo when none is named: the better bundled encoder on
ptbxl-500's fold 9 and, under the fair protocol, on fold 10 (see its model card)."""


def bundled_path(model_name: str) -> Path | None:
    """Path of the checkpoint bundled for ``model_name``, or None when ecgadapt ships none."""
    file_name = BUNDLED.get(model_name)
    if file_name is None:
        return None
    path = Path(str(resources.files("ecgadapt.weights") / file_name))
    return path if path.is_file() else None
