"""Imports run one way: down the floors of ``unieditkit.FLOORS`` (core < taxonomy < pipelines < training < tools),
and never in a circle between modules.

Every module of the installed package is parsed, not imported (importing would hide a function-level import that
only runs on one path, and would pull in torch), and each ``import``/``from ... import`` anywhere in it (function
bodies and ``TYPE_CHECKING`` blocks included) is resolved to the project module it names: ``from .x import y``
counts as an import of ``x.y`` when that is a module, else of ``x``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from unieditkit import FLOORS

ROOTS = ("unieditkit", "unieditkit.pipelines", "unieditkit.taxonomy", "unieditkit.training")

#: circles that live in files outside issue 20's item 8, each to be broken by its owner; the test fails when one
#: is broken (remove it here) as well as when a new one appears


def project_modules() -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is a package)}`` of every module the four roots install."""
    modules: dict[str, tuple[Path, bool]] = {}
    for root in ROOTS:
        (folder,) = importlib.util.find_spec(root).submodule_search_locations
        for path in Path(folder).rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if not all((Path(folder, *parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
                continue  # a folder without __init__.py is not part of the package
            modules[".".join((root, *(p for p in parts if p != "__init__")))] = (path, path.name == "__init__.py")
    return modules


def imports_of(name: str, path: Path, is_package: bool, modules: dict[str, tuple[Path, bool]]) -> set[str]:
    """The project modules ``name`` imports (the nearest enclosing module of each imported name)."""
    package = name if is_package else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            named.update(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names)
    found = set()
    for target in named:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def floor_of(module: str) -> int:
    matches = [(len(prefix), level) for level, (_, prefixes) in enumerate(FLOORS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is on no floor of unieditkit.FLOORS"
    return max(matches)[1]


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def test_the_graph_sees_every_room_and_function_level_imports(graph: dict[str, set[str]]) -> None:
    assert {"unieditkit.format", "unieditkit.reader", "unieditkit.pipelines.build", "unieditkit.training.data",
            "unieditkit.inspect.validate", "unieditkit.evaluate", "unieditkit.taxonomy"} <= set(graph)
    # evaluate imports the pipelines' models inside a function only
    assert "unieditkit.pipelines.models.openclip" in graph["unieditkit.evaluate"]
    assert "unieditkit.format" in graph["unieditkit.reader"]


def test_no_module_imports_a_higher_floor(graph: dict[str, set[str]]) -> None:
    upward = sorted(f"{m} ({FLOORS[floor_of(m)][0]}) imports {d} ({FLOORS[floor_of(d)][0]})"
                    for m, deps in graph.items() for d in deps if floor_of(d) > floor_of(m))
    assert not upward, "\n".join(upward)


def test_the_core_imports_nothing_of_taxonomy_pipelines_or_training(graph: dict[str, set[str]]) -> None:
    core = [m for m in graph if floor_of(m) == 0]
    assert {"unieditkit.format", "unieditkit.storage", "unieditkit.integrity", "unieditkit.imageio", "unieditkit.mats",
            "unieditkit.perlin", "unieditkit.errors", "unieditkit.reader"} <= set(core)
    above = sorted(f"{m} imports {d}" for m in core for d in graph[m] if floor_of(d) > 0)
    assert not above, "\n".join(above)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = set(cycles(graph))
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


def test_cycle_finder_and_floors_catch_what_they_should() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert floor_of("unieditkit.format") < floor_of("unieditkit.taxonomy") < floor_of("unieditkit.pipelines.build")
    assert floor_of("unieditkit.pipelines.build") < floor_of("unieditkit.training.data") < floor_of("unieditkit.inspect.cli")
