"""Reading ``save_pretrained`` folders (written by :mod:`ecgadapt.models.hub`): ``create_model(pretrained=DIR)``.

Loading rebuilds the model from ``config.json`` and checks the weights' keys strictly: every tensor of the model must be in the file and every tensor of the file must
be used, with the classifier head the only part left out, and only when a different ``num_classes`` is asked
for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ecgadapt.errors import CheckpointError, ConfigError
from ecgadapt.models.base import ECGModel
from ecgadapt.models.hub import CONFIG_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE
from ecgadapt.models.keymap import clip_list, is_head_key
from ecgadapt.models.registry import build_model


def is_pretrained_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a ``config.json`` (a :func:`save_pretrained` folder)."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def read_pretrained_config(directory: str | os.PathLike) -> dict:
    """The checked ``config.json`` of a :func:`save_pretrained` folder."""
    path = Path(directory).expanduser() / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f'{path} is not an ecgadapt model config (no "format": "{FORMAT}"); a folder for '
            "create_model(pretrained=DIR) is written by model.save_pretrained(DIR)"
        )
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {config['format_version']}: upgrade ecgadapt to read it"
        )
    missing = [k for k in ("model_name", "model_kwargs", "num_classes") if k not in config]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    return config


def _check_keys(model: ECGModel, state: dict[str, torch.Tensor], path: Path, skip_head: bool) -> None:
    """A CheckpointError naming the keys that are missing, unexpected or of the wrong shape."""
    wanted = {k: v for k, v in model.state_dict().items() if not (skip_head and is_head_key(k))}
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    shapes = sorted(k for k in set(wanted) & set(state) if tuple(wanted[k].shape) != tuple(state[k].shape))
    problems = [
        f"{label} {clip_list(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{path} does not fit the model its config.json describes: {'; '.join(problems)}; the folder's files "
            "do not belong together: save the model again with save_pretrained"
        )


def load_pretrained_folder(
    directory: str | os.PathLike,
    name: str | None = None,
    *,
    num_classes: int | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    **overrides: Any,
) -> ECGModel:
    """The model saved in ``directory``: with its head when ``num_classes`` is None or the saved number, else with a
    fresh ``num_classes`` head. ``name``, when given, must be the saved model's; ``overrides`` change its
    architecture options (the weights must still fit them)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ecgadapt.models.checkpoint import check_finite

    directory = Path(directory).expanduser()
    config = read_pretrained_config(directory)
    saved_name, saved_classes = str(config["model_name"]), int(config["num_classes"])
    if name is not None and name != saved_name:
        raise ConfigError(
            f"{directory} holds a {saved_name!r} model, not {name!r}; pass create_model({saved_name!r}, ...) or "
            "create_model(pretrained=DIR) without a name"
        )
    n_classes = saved_classes if num_classes is None else int(num_classes)
    model = build_model(
        saved_name,
        num_classes=n_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        **{**dict(config["model_kwargs"]), **overrides},
    )
    weights = directory / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {weights}: {err}") from None
    check_finite(state, weights)
    keep_head = n_classes == saved_classes
    if not keep_head:
        state = {k: v for k, v in state.items() if not is_head_key(k)}
    _check_keys(model, state, weights, skip_head=not keep_head)
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full, strict=True)
    if keep_head and config.get("class_names"):
        model.class_names = list(config["class_names"])
    return model
