"""Checkpoints bundled with ecgadapt; each has a model card (``<file>.md``) beside it."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from ecgadapt.runs.hashing import file_sha256  # remembered per path, size and modification time

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


SEEN_PTBXL_IDS: dict[str, str] = {"xresnet1d_tiny": "xresnet1d_tiny.seen_ptbxl_ids.txt"}
"""Model name -> file listing the PTB-XL ecg_ids whose (unlabelled) signals its bundled encoder was pretrained on."""


def seen_ptbxl_ids(weights_sha256: str | None) -> frozenset[int]:
    """PTB-XL ecg_ids seen in pretraining by the bundled encoder with this SHA-256 (empty for any other file)."""
    if weights_sha256 is None:
        return frozenset()
    for model_name, list_name in SEEN_PTBXL_IDS.items():
        path = bundled_path(model_name)
        if path is not None and file_sha256(path) == weights_sha256:
            text = (path.parent / list_name).read_text()
            return frozenset(int(line) for line in text.split())
    return frozenset()


def recorded_ptbxl_ids(path: str | os.PathLike | None) -> frozenset[int]:
    """PTB-XL ecg_ids an encoder file's own metadata lists as seen in pretraining (``seen_ptbxl_ids``, written
    by ``ecgadapt pretrain``); empty for files without that metadata."""
    if path is None or Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return frozenset()
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        text = (f.metadata() or {}).get("seen_ptbxl_ids")
    return frozenset(int(i) for i in json.loads(text)) if text else frozenset()
