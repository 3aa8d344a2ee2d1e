"""Import a script of ``benchmarks/`` in a test: the folder is on ``sys.path`` only while the module is in use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_script(name: str) -> Iterator[ModuleType]:
    """Yield the module ``benchmarks/<name>.py`` (for a fixture: ``yield from benchmark_script(name)``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
