"""Checkpoints bundled with ecgadapt; each has a model card (``<file>.md``) beside it."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from ecgadapt.runs.hashing import file_sha256  # remembered per path, size and modification time

BUNDLED: dict[str, str] = {
    "xresnet1d_small": "xresnet1d_small.safetensors",
    "xresnet1d_tiny": "xresnet1d_tiny.safetensors",
    "ecg_vit_tiny": "ecg_vit_tiny.safetensors",
}
"""Model name -> file name of its bundled encoder checkpoint."""

DEFAULT_MODEL = "xresnet1d_small"
"""The model of ``ecgadapt finetune`` and of the demo when none is named: the encoder pretrained on ptbxl-2285's
folds 1-8 only (nothing of folds 9 and 10), chosen over xresnet1d_tiny and ecg_vit_tiny_p50 by a fold-9 linear
probe (see its model card). It was xresnet1d_tiny from 2026-12-02 to 2026-12-04, and ecg_vit_tiny before."""


def bundled_path(model_name: str) -> Path | None:
    """Path of the checkpoint bundled for ``model_name``, or None when ecgadapt ships none."""
    file_name = BUNDLED.get(model_name)
    if file_name is None:
        return None
    path = Path(str(resources.files("ecgadapt.weights") / file_name))
    return path if path.is_file() else None


SEEN_PTBXL_IDS: dict[str, str] = {
    "xresnet1d_small": "xresnet1d_small.seen_ptbxl_ids.txt",
    "xresnet1d_tiny": "xresnet1d_tiny.seen_ptbxl_ids.txt",
}
"""Model name -> file listing the PTB-XL ecg_ids whose (unlabelled) signals its bundled encoder was pretrained on."""


SEEN_PTBXL_PATIENTS: dict[str, str] = {
    "xresnet1d_small": "xresnet1d_small.seen_ptbxl_patients.csv",
    "xresnet1d_tiny": "xresnet1d_tiny.seen_ptbxl_patients.csv",
}
"""Model name -> CSV ``ecg_id,patient_id``: PTB-XL's patient of each record its bundled encoder saw (from the
``ptbxl_database.csv`` of ``ptbxl-2285``, which lists every one of them)."""


def _bundled_file(weights_sha256: str | None, files: dict[str, str]) -> Path | None:
    """The file ``files`` names beside the bundled checkpoint with this SHA-256; None for any other weights."""
    if weights_sha256 is None:
        return None
    for model_name, file_name in files.items():
        path = bundled_path(model_name)
        if path is not None and file_sha256(path) == weights_sha256:
            return path.parent / file_name
    return None


def seen_ptbxl_ids(weights_sha256: str | None) -> frozenset[int]:
    """PTB-XL ecg_ids seen in pretraining by the bundled encoder with this SHA-256 (empty for any other file)."""
    path = _bundled_file(weights_sha256, SEEN_PTBXL_IDS)
    return frozenset(int(line) for line in path.read_text().split()) if path is not None else frozenset()


def seen_ptbxl_patients(weights_sha256: str | None) -> dict[int, int]:
    """``{ecg_id: PTB-XL patient_id}`` of the records the bundled encoder with this SHA-256 saw in pretraining
    ({} for any other file: their patients are known only where a run's own PTB-XL database lists them)."""
    path = _bundled_file(weights_sha256, SEEN_PTBXL_PATIENTS)
    if path is None:
        return {}
    lines = path.read_text().split()[1:]  # header: ecg_id,patient_id
    return {int(a): int(b) for a, b in (line.split(",") for line in lines)}


def recorded_ptbxl_ids(path: str | os.PathLike | None) -> frozenset[int]:
    """PTB-XL ecg_ids an encoder file's own metadata lists as seen in pretraining (``seen_ptbxl_ids``, written
    by ``ecgadapt pretrain``); empty for files without that metadata."""
    if path is None or Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return frozenset()
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        text = (f.metadata() or {}).get("seen_ptbxl_ids")
    return frozenset(int(i) for i in json.loads(text)) if text else frozenset()
