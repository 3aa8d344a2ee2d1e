"""The import graph of one ecgadapt package folder, read from its source (module- and function-level imports).

Edges are explicit imports only: that ``import ecgadapt.models.registry`` first runs ``models/__init__.py`` is
Python's package semantics, not an edge of the registry's.
"""

from __future__ import annotations

import ast
from importlib import util
from pathlib import Path


def _module_names(package: str) -> dict[str, Path]:
    folder = Path(util.find_spec(package).origin).parent
    out = {}
    for path in sorted(folder.glob("*.py")):
        out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _imported(node: ast.AST, known: set[str]) -> set[str]:
    """The modules of ``known`` that one import statement names (a ``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        named = {f"{node.module}.{alias.name}" for alias in node.names} & known
        return named or ({node.module} & known)
    return set()


def import_graph(package: str) -> dict[str, set[str]]:
    """``{module: the package's modules it imports}`` for every module in the folder of ``package``."""
    modules = _module_names(package)
    known = set(modules)
    return {
        name: set().union(*(_imported(n, known) for n in ast.walk(ast.parse(path.read_text())))) - {name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected parts of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in graph:
        if v not in index:
            visit(v)
    return found
