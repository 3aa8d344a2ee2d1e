"""Writing ``save_pretrained`` folders: ``config.json`` + ``model.safetensors`` + a model card ``README.md``.

This is the Hugging Face Hub layout, so a folder can be uploaded as it is; nothing here downloads. The config
holds what rebuilds the network (registered model name, architecture overrides, number of classes) and what a
user needs to feed it (class names, input spec); :mod:`ecgadapt.models.pretrained` reads it back. This module
imports no other part of ``models`` so that ``ECGModel.save_pretrained`` can call it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ecgadapt.constants import VERSION
from ecgadapt.errors import ConfigError
from ecgadapt.fileio import atomic_write_text, replacing, to_jsonable

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FORMAT = "ecgadapt-model"
FORMAT_VERSION = 1


def pretrained_config(model: Any, class_names: list[str] | None = None, extra: dict | None = None) -> dict:
    """The ``config.json`` of ``model``: what rebuilds it (name, architecture overrides, classes) and its input."""
    name = getattr(model, "model_name", None)
    if name is None:
        raise ConfigError(
            f"{type(model).__name__} was not built by ecgadapt.create_model, so its registered name and "
            "architecture are unknown; build it with create_model(name, ...) to save it"
        )
    names = list(class_names) if class_names is not None else getattr(model, "class_names", None)
    if names is not None and len(names) != model.num_classes:
        raise ConfigError(f"{len(names)} class names given for a model with {model.num_classes} classes")
    return to_jsonable(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ecgadapt_version": VERSION,
            "model_name": name,
            "model_kwargs": dict(getattr(model, "model_kwargs", {}) or {}),
            "num_classes": int(model.num_classes),
            "num_features": int(model.num_features),
            "class_names": list(names) if names is not None else None,
            "input_spec": model.input_spec.to_dict(),
            **({"details": extra} if extra else {}),
        }
    )


def model_card(config: dict) -> str:
    """The model card (``README.md``, with Hub metadata) of a saved model's ``config.json``."""
    spec = config["input_spec"]
    rate, length, band_pass = spec["sampling_rate"], spec["length"], spec.get("band_pass")
    band = f"{band_pass[0]:g}-{band_pass[1]:g} Hz zero-phase band-pass" if band_pass else "no filter"
    classes = config.get("class_names")
    head = (
        f"{config['num_classes']} classes: {', '.join(classes)}"
        if classes
        else (
            f"{config['num_classes']} outputs (class names not recorded)" if config["num_classes"] else "none"
        )
    )
    details = config.get("details") or {}
    lines = [
        "---",
        "library_name: ecgadapt",
        f"tags: [ecg, electrocardiogram, time-series, ecgadapt, {config['model_name']}]",
        "---",
        "",
        f"# {config['model_name']}",
        "",
        f"An ecgadapt `{config['model_name']}` saved with `save_pretrained`.",
        "",
        "## Input and output",
        f"- Input: the preprocessed window, float32 (N, {len(spec['leads'])}, {length}): {length / rate:g} s at "
        f"{rate} Hz of the leads {', '.join(spec['leads'])} (millivolts), {band}, then normalisation "
        f"{spec['normalisation']!r} ('lead': a z-score per lead). "
        "`ecgadapt.data.transforms.build_transforms(model.input_spec, rate, train=False)` does all of it.",
        f"- Output: one logit per class (sigmoid for probabilities); head: {head}.",
        "",
        "## Use",
        "```python",
        "import ecgadapt",
        'model = ecgadapt.create_model(pretrained="PATH/TO/THIS/FOLDER")  # keeps the head',
        'encoder = ecgadapt.create_model(pretrained="PATH/TO/THIS/FOLDER", num_classes=3)  # a fresh head',
        "```",
    ]
    if details:
        lines += ["", "## Details", *(f"- {k}: {v}" for k, v in details.items())]
    lines += [
        "",
        "## Limitations",
        "A research model, not a medical device. Check it on data from your own site before relying on it.",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    model: Any,
    directory: str | os.PathLike,
    *,
    class_names: list[str] | None = None,
    details: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``directory`` as ``config.json``, ``model.safetensors`` and ``README.md``; return it.

    ``class_names`` default to the model's own (a run's model carries them); ``details`` go to the config and
    the card (e.g. the task and scores of the run it comes from). Each file is written atomically.
    """
    from safetensors.torch import save_file

    config = pretrained_config(model, class_names, details)
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with replacing(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "ecgadapt_model": config["model_name"]})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    atomic_write_text(directory / CARD_FILE, model_card(config))
    return directory
