"""The package's layers, checked on the source: every import (module-level or inside a function)
of every module under ``src/clonefleet`` is read with ``ast``.

- ``storage`` and ``backends`` never import ``provision``, ``cli`` or ``sim``;
- ``storage`` never imports ``backends``;
- there is no import cycle anywhere in the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import clonefleet

ROOT = Path(clonefleet.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The package modules ``name`` imports, anywhere in its source (``from x import y``: ``x.y`` when
    that is a module, else ``x``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_walk_sees_function_level_imports() -> None:
    # cli commands import the library inside their functions: the walk must see those edges
    assert "clonefleet.provision" in GRAPH["clonefleet.cli.provision_cmds"]


def test_storage_and_backends_stand_below_provision_cli_and_sim() -> None:
    forbidden = ("clonefleet.provision", "clonefleet.cli", "clonefleet.sim")
    bad = sorted((a, b) for a, deps in GRAPH.items() if a.startswith(("clonefleet.storage", "clonefleet.backends"))
                 for b in deps if b.startswith(forbidden)
                 or (a.startswith("clonefleet.storage") and b.startswith("clonefleet.backends")))
    assert not bad, bad


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles[:5])
