"""The encoder file a pretraining run writes: safetensors without the head, with sorted metadata (same bytes on
a rerun)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ecgadapt.errors import DataError
from ecgadapt.fileio import replacing
from ecgadapt.models.base import ECGModel


def save_encoder(encoder: ECGModel, path: str | Path, model_name: str, extra: dict | None = None) -> Path:
    """Write ``encoder.state_dict()`` minus the head as safetensors, with model name and input spec metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    head = set(encoder.head_parameter_names())
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items() if k not in head}
    metadata = {
        "format": "ecgadapt",
        "model": model_name,
        "input_spec": json.dumps(encoder.input_spec.to_dict()),
    }
    metadata.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    with replacing(path) as tmp:  # a fresh temporary file: never through a symlink at a predictable name
        save_file(state, str(tmp), metadata=metadata)
        sort_safetensors_metadata(tmp)
    return path


def sort_safetensors_metadata(path: str | Path) -> None:
    """Rewrite a safetensors header with its ``__metadata__`` keys sorted, in place.

    safetensors writes the metadata in hash-map order, which changes from process to process, so the same tensors
    and metadata would give different bytes (and SHA-256s); sorted, a rerun writes the same file."""
    with open(path, "r+b") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        if not header.get("__metadata__"):
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # never: the same keys and values, only reordered
            raise DataError(
                f"{path}: the sorted safetensors header does not fit ({len(text)} > {size} bytes)"
            )
        f.seek(8)
        f.write(
            text.ljust(size, b" ")
        )  # safetensors pads its header with spaces; the data offsets stay valid
