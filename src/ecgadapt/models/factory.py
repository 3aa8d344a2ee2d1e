"""``create_model``: build a registered model and optionally load pretrained weights into it (timm style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecgadapt.errors import ConfigError
from ecgadapt.models.base import ECGModel
from ecgadapt.models.checkpoint import load_pretrained
from ecgadapt.models.pretrained import CONFIG_FILE, is_pretrained_folder, load_pretrained_folder
from ecgadapt.models.registry import build_model
from ecgadapt.weights import BUNDLED, bundled_path

BUNDLED_NAMES = (True, "bundled")
"""``pretrained`` values that select the checkpoint bundled with ecgadapt for the model."""


def pretrained_file(name: str, pretrained: bool | str | Path | None) -> Path | None:
    """The checkpoint file ``pretrained`` names for model ``name``: the bundled one for True/"bundled", a path
    as given, None for None/False; one clear error for a model without bundled weights or a folder without a
    config."""
    if pretrained is None or pretrained is False:
        return None
    if any(pretrained is v or (isinstance(pretrained, str) and pretrained == v) for v in BUNDLED_NAMES):
        path = bundled_path(name)
        if path is None:
            raise ConfigError(
                f"no bundled weights for model {name!r}: ecgadapt ships pretrained weights for "
                f"{', '.join(sorted(BUNDLED))} only; pass pretrained=PATH to a checkpoint file or a "
                "save_pretrained folder, or pretrained=None for random weights"
            )
        return path
    path = Path(pretrained).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"pretrained={str(pretrained)!r} is a folder without {CONFIG_FILE}: pass a folder written by "
            "model.save_pretrained(DIR), or a checkpoint file (.safetensors, .pt, .pth)"
        )
    return path


def create_model(
    name: str | None = None,
    *,
    num_classes: int | None = None,
    pretrained: bool | str | Path | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    **overrides: Any,
) -> ECGModel:
    """Build model ``name`` with a ``num_classes`` head, optionally loading ``pretrained`` weights.

    ``pretrained``: True or ``"bundled"`` (the encoder ecgadapt ships for ``name``), a checkpoint file (its
    classifier head is loaded only when it fits), or a :func:`~ecgadapt.models.pretrained.save_pretrained`
    folder (``name`` may then be None; ``num_classes`` None keeps the folder's head, another number gives a
    fresh head). Keys are always checked strictly.
    """
    if pretrained not in (None, False, True) and is_pretrained_folder(pretrained):
        return load_pretrained_folder(
            pretrained,
            name,
            num_classes=num_classes,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **overrides,
        )
    if name is None:
        raise ConfigError("create_model needs a model name, unless pretrained= is a save_pretrained folder")
    if num_classes is None:
        raise ConfigError(
            f"create_model({name!r}) needs num_classes (0 for a model without a head), unless pretrained= is a "
            "save_pretrained folder, whose head it keeps"
        )
    model = build_model(
        name, num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate, **overrides
    )
    path = pretrained_file(name, pretrained)
    if path is not None:
        load_pretrained(model, name, path)
    return model
