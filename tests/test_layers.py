"""The map of the house: every import inside ``ecgadapt`` runs from a higher layer to a lower (or the same) one."""

from __future__ import annotations

import ast
from pathlib import Path

import ecgadapt

SRC = Path(ecgadapt.__file__).resolve().parent

LAYERS: dict[str, int] = {
    # 1: leaf modules and run directories (torch-free)
    "constants": 1,
    "errors": 1,
    "paths": 1,
    "fileio": 1,
    "locks": 1,
    "procs": 1,
    "runs": 1,
    # 2: data, models, bundled weights and the training engine
    "data": 2,
    "models": 2,
    "weights": 2,
    "engine": 2,
    # 3: metrics, bootstrap, calibration, results, comparisons, the report
    "eval": 3,
    # 4: one fine-tuning run, pretraining
    "train": 4,
    "pretrain": 4,
    # 5: tools on a finished run
    "inference": 5,
    # 6: the benchmark grid and the tune search
    "bench": 6,
    # 7: entry points
    "cli": 7,
    "demo": 7,
    "__init__": 7,
    # 8: python -m ecgadapt (what torchrun -m ecgadapt starts): runs the command line
    "__main__": 8,
}
"""Top-level module or folder of ``ecgadapt`` -> its layer."""

SAME_LAYER_IMPORTS: set[tuple[str, str]] = {
    # layer 1: the run-directory module writes atomically, holds run locks and raises the shared errors
    ("fileio", "errors"),
    ("locks", "errors"),
    ("runs", "errors"),
    ("runs", "fileio"),
    ("runs", "locks"),
    # layer 2: the engine trains ECGModels (models) on ECGDatasets (data: record_mean of windowed records)
    ("engine", "data"),
    ("engine", "models"),
    # layer 2: create_model(name, pretrained="bundled") loads the encoder shipped for that model
    ("models", "weights"),
    # layer 4: pretraining reads --model-arg KEY=VALUE items with the fine-tuning config's override parser
    ("pretrain", "train"),
    # layer 7: the demo command of the CLI runs the demo
    ("cli", "demo"),
}
"""Imports between different top-level parts of one layer that are allowed, each with its reason."""


def _part(module: str) -> str:
    """The top-level part of ``ecgadapt`` a dotted module name belongs to (``__init__`` for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(part: str, root_is_leaf: bool) -> int:
    """The layer of a part; the package root sits at the bottom while it only holds constants (LEADS,
    __version__) and imports nothing, at the top once it re-exports the API."""
    if part == "__init__" and root_is_leaf:
        return 0
    return LAYERS[part]


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``ecgadapt`` import in a file, module-level or inside functions."""
    package = ".".join(("ecgadapt", *path.relative_to(SRC).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ecgadapt"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.split(".")[0] == "ecgadapt":
                out.append((node.lineno, module))
    return out


def _source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("ecgadapt", *parts)) if parts != ("__init__",) else "ecgadapt"


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(_module(p)) for p in _source_files()}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS: {sorted(parts - set(LAYERS))}"


def test_no_import_runs_upward_and_same_layer_imports_are_listed():
    root_is_leaf = not _imports(SRC / "__init__.py")
    problems = []
    for path in _source_files():
        here = _part(_module(path))
        for line, module in _imports(path):
            there = _part(module)
            if there == here:
                continue
            lo, hi = _layer(here, root_is_leaf), _layer(there, root_is_leaf)
            where = f"{path.relative_to(SRC.parent)}:{line}"
            if hi > lo:
                problems.append(f"{where}: {here} (layer {lo}) imports {module} (layer {hi}), a higher layer")
            elif hi == lo and (here, there) not in SAME_LAYER_IMPORTS:
                problems.append(
                    f"{where}: {here} imports {module}, another part of layer {lo}; avoid it or list "
                    f"({here!r}, {there!r}) in SAME_LAYER_IMPORTS with its reason"
                )
    assert not problems, "\n".join(problems)


def test_the_listed_same_layer_imports_still_exist():
    root_is_leaf = not _imports(SRC / "__init__.py")
    seen = {
        (_part(_module(path)), _part(module))
        for path in _source_files()
        for _, module in _imports(path)
        if _layer(_part(_module(path)), root_is_leaf) == _layer(_part(module), root_is_leaf)
    }
    assert SAME_LAYER_IMPORTS <= seen, f"no longer imported, drop them: {sorted(SAME_LAYER_IMPORTS - seen)}"


def test_no_module_is_over_600_lines():
    """A module past 600 lines holds more than one idea: split it (the house rule from the architecture step)."""
    long = {
        str(path.relative_to(SRC.parent)): n
        for path in _source_files()
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert not long, f"split these modules: {long}"
