"""ecgadapt: adapt pretrained ECG foundation models to clinical classification tasks.

The public API, for notebooks and scripts (each name is imported on first use, so ``import ecgadapt`` stays
light and reading run directories never imports torch)::

    import ecgadapt
    model = ecgadapt.create_model("xresnet1d_tiny", pretrained=True, num_classes=5)
    run = ecgadapt.load_run("runs/my-run")
    probs = run.predict(signals, rate=500)  # a DataFrame: one row per record, one column per class
"""

from __future__ import annotations

import importlib
from typing import Any

from ecgadapt.constants import LEADS, VERSION

__version__ = VERSION

_EXPORTS: dict[str, str] = {
    # models (timm style) and the save_pretrained folder layout
    "create_model": "ecgadapt.models",
    "list_models": "ecgadapt.models",
    "model_info": "ecgadapt.models",
    "register_model": "ecgadapt.models",
    "ECGModel": "ecgadapt.models",
    "InputSpec": "ecgadapt.models",
    "save_pretrained": "ecgadapt.models.hub",
    # finished runs: load, predict, export
    "load_run": "ecgadapt.inference.run",
    "Run": "ecgadapt.inference.run",
    "predict": "ecgadapt.inference.predict",
    "export_run": "ecgadapt.inference.export",
    # training, evaluation and benchmarks
    "FinetuneConfig": "ecgadapt.train.config",
    "build_config": "ecgadapt.train.config",
    "run_finetune": "ecgadapt.train.finetune",
    "evaluate_run": "ecgadapt.train.evaluate",
    "run_benchmark": "ecgadapt.bench.grid",
    # errors
    "ECGAdaptError": "ecgadapt.errors",
    "ConfigError": "ecgadapt.errors",
    "DataError": "ecgadapt.errors",
    "CheckpointError": "ecgadapt.errors",
}
"""Public name -> the module that defines it, imported on first access."""

__all__ = ["LEADS", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ecgadapt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
