"""Helpers shared by the checkpoint-compatibility tests (test_st_mem, test_ecgfounder, test_hubert_ecg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ATOL = 1e-4  # agreement with the reference outputs in shared/compat/<family>/


def read_tiny_config(folder: Path) -> dict:
    """The ``tiny_config.json`` of a compat folder."""
    return json.loads((folder / "tiny_config.json").read_text())


def meta_state_dict(json_path: Path) -> dict[str, torch.Tensor]:
    """Shape-only tensors with the names and shapes of a keys_full*.json list."""
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    return {
        n: torch.empty(s, dtype=dtypes[d], device="meta") for n, s, d in json.loads(json_path.read_text())
    }


def assert_reference(actual: torch.Tensor | np.ndarray, folder: Path, name: str) -> None:
    """``actual`` equals the reference array ``folder / name`` within ATOL."""
    if isinstance(actual, torch.Tensor):
        actual = actual.numpy()
    np.testing.assert_allclose(actual, np.load(folder / name), atol=ATOL, rtol=0)


def assert_reference_outputs(model: torch.nn.Module, folder: Path) -> None:
    """``model`` maps ``input.npy`` to the reference ``features.npy`` and ``logits.npy``."""
    x = torch.from_numpy(np.load(folder / "input.npy"))
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
    assert_reference(feats, folder, "features.npy")
    assert_reference(logits, folder, "logits.npy")
