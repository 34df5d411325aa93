"""The host's parts are wired in one composition root (issue 21): read from the source, no
``compute/actors`` module imports one that imports it back, and none but the CLI's reaches
for the host service (a part gets what it uses, never the service)."""

from __future__ import annotations

import ast
from pathlib import Path

ACTORS = Path(__file__).resolve().parents[2] / "compute" / "actors"
PACKAGE = "compute.actors."


def _imports() -> dict[str, set[str]]:
    """Each compute/actors module and the compute/actors modules it imports (any import,
    ``TYPE_CHECKING`` ones included: a circle for the type checker is a circle)."""
    found: dict[str, set[str]] = {}
    for path in ACTORS.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[path.stem] = {n.removeprefix(PACKAGE) for n in names if n.startswith(PACKAGE)}
    return found


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module):] + [module]
        if module in done:
            return None
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            if circle := visit(imported):
                return circle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if circle := visit(module):
            return circle
    return None


def test_no_actors_module_imports_one_that_imports_it_back() -> None:
    graph = _imports()
    assert "bootstrap" in graph and "host_service" in graph
    assert _circle(graph) is None, " -> ".join(_circle(graph) or [])


def test_the_circle_check_sees_a_circle() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_only_the_host_service_uses_the_composition_root_and_no_part_uses_the_service() -> None:
    graph = _imports()
    assert {m for m, imported in graph.items() if "host_service" in imported} == set()
    assert {m for m, imported in graph.items() if "bootstrap" in imported} == {"host_service"}
