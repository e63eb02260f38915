"""The import structure: no circle among the modules of `mockserver/` or `contracts/`, and the kit uses only
mockserver's public names. Imports are read with `ast`, type-only and function-level ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What contracts/ may import from mockserver: the names in mockserver/__init__.py, and these modules, whose
# public (not underscored) names are the documented surface the kit builds on (see the README's "How it works").
PUBLIC_MODULES = ("mockserver", "mockserver.config", "mockserver.scenarios", "mockserver.spec",
                  "mockserver.request", "mockserver.validation")


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under `root`, by dotted name."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[tuple[str, str | None]]:
    """(module, name or None) for each import in the module `name` of a module among `known`."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add((sub, None) if sub in known else (module, alias.name))
    return {(module, what) for module, what in found if module in known}


def graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (a package's submodules do not import their package)."""
    found = {name: path for package in packages for name, path in modules(root, package).items()}
    known = set(found)
    return {name: {module for module, _what in imported(name, path, known) if module != name}
            for name, path in found.items()}


def circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_imports_its_importer() -> None:
    """Finds no import circle in mockserver/ or contracts/, type-only and function-level imports counted."""
    edges = graph(ROOT, ("mockserver", "contracts"))
    assert len(edges) > 30 and edges["mockserver.app"]
    assert circle(edges) is None, f"import circle: {' -> '.join(circle(edges) or [])}"


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    """Finds a circle planted in a package, through a relative, a type-only and a function-level import."""
    package = tmp_path / "planted"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import A\n")
    (package / "a.py").write_text("from .inner import b\nA = 1\n")
    (package / "inner" / "__init__.py").write_text("")
    (package / "inner" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                            "    from ..c import C\n")
    (package / "c.py").write_text("def f():\n    from . import a\n    return a\n")
    edges = graph(tmp_path, ("planted",))
    assert circle(edges) == ["planted.a", "planted.inner.b", "planted.c", "planted.a"]
    (package / "c.py").write_text("def f():\n    return 1\n")
    assert circle(graph(tmp_path, ("planted",))) is None


def test_the_kit_imports_only_mockservers_public_names() -> None:
    """Finds every import of mockserver in contracts/ naming a public module's public name."""
    everything = {**modules(ROOT, "mockserver"), **modules(ROOT, "contracts")}
    known = set(everything)
    private = sorted(f"{name}: {module}" + (f".{what}" if what else "")
                     for name, path in everything.items() if name.startswith("contracts")
                     for module, what in imported(name, path, known)
                     if module.startswith("mockserver") and (module not in PUBLIC_MODULES or
                                                             (what or "").startswith("_")))
    assert private == []


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_each_public_module_exists(module: str) -> None:
    """Finds each module the kit may import among mockserver's modules."""
    assert module in modules(ROOT, "mockserver")
