"""The layers of compute/, read from the source: every ``import`` and ``from ... import`` of
every module (at module level or inside a function), except those under ``if TYPE_CHECKING:``
(annotations only, never run). Dynamic lookups (``resolve_topic`` of a stored topic, or of a
creation event's ``originator_topic``) are not imports and are not counted.

The rules (README, Architecture): the domain imports nothing but itself and the wire schemas;
the wire schemas (``compute/events/``: commands, replies, outcomes, error codes, step
requests, the driver's instance shape) import nothing but themselves; messaging imports
nothing of the actors; and no module of compute/ imports itself back through others (no
import cycle, none listed as an exception). The events of an aggregate are the domain's
(``compute/domain/*_events.py``) and do not import their aggregate: the aggregate imports
them.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from eventsourcing.utils import get_topic

ROOT = Path(__file__).resolve().parents[2]


@cache
def modules() -> dict[str, Path]:
    """``compute.x.y`` -> its file, for every module and package of compute/."""
    found = {}
    for path in sorted((ROOT / "compute").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _module_of(name: str) -> str | None:
    """The module of compute/ a dotted name is in (``compute.events.commands.Flavor`` ->
    ``compute.events.commands``), or None outside compute/."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, tree: ast.AST) -> Iterator[str]:
    """The modules of compute/ that ``module`` imports when it runs."""
    return _walk(module, list(ast.iter_child_nodes(tree)))


def _walk(module: str, nodes: list[ast.AST]) -> Iterator[str]:
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if _is_type_checking(node):
            assert isinstance(node, ast.If)
            yield from _walk(module, list(node.orelse))   # ``else:`` of TYPE_CHECKING runs
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (found := _module_of(alias.name)) is not None:
                    yield found
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:        # a submodule (``from pkg import mod``) or a name
                if (found := _module_of(f"{base}.{alias.name}")) is not None:
                    yield found
        yield from _walk(module, list(ast.iter_child_nodes(node)))


@cache
def graph() -> dict[str, frozenset[str]]:
    """Each module of compute/ -> the modules of compute/ it imports (itself left out)."""
    return {m: frozenset(set(_imports(m, ast.parse(p.read_text()))) - {m})
            for m, p in modules().items()}


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _outside(package: str, allowed: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {dep}" for m, deps in graph().items() if _in(m, package)
                  for dep in deps if not _in(dep, package, *allowed))


def test_the_walk_sees_every_kind_of_import_but_annotations_only_ones() -> None:
    """The rules below are only as good as the walk: a plain import, a ``from package import
    module``, a name from a module, a relative import and one inside a function count; one
    under ``TYPE_CHECKING`` does not (its ``else`` does)."""
    source = textwrap.dedent("""
        from typing import TYPE_CHECKING
        import compute.config
        from compute.domain import instance_events as e
        from compute.events.commands import Flavor
        from . import states
        if TYPE_CHECKING:
            from compute.domain.instance import Instance
        else:
            from compute.events import replies
        def later():
            from compute.messaging.notifier import event_types
        """)
    assert set(_imports("compute.domain.operations", ast.parse(source))) == {
        "compute.config", "compute.domain.instance_events", "compute.events.commands",
        "compute.domain.states", "compute.events.replies", "compute.messaging.notifier"}


def test_the_domain_imports_only_itself_and_the_wire_schemas() -> None:
    """No actors, messaging, store, virt, projections, cli, nor settings or runtime: the
    domain decides from what it is given (the commands' types, the error codes)."""
    assert _outside("compute.domain", ("compute.events",)) == []


def test_the_wire_schemas_import_nothing_of_the_domain_or_any_other_layer() -> None:
    """compute/events/ is the contract's messages alone: the domain and the driver import
    them, never the reverse (the domain's events, which apply themselves to aggregates, are
    in compute/domain/)."""
    assert _outside("compute.events", ()) == []


def test_messaging_imports_nothing_of_the_actors() -> None:
    """Intake makes the ``Envelope`` (``compute/messaging/envelope.py``) the actors take."""
    assert sorted(f"{m} imports {d}" for m, deps in graph().items()
                  if _in(m, "compute.messaging") for d in deps
                  if _in(d, "compute.actors", "compute.cli")) == []


AGGREGATES = ("compute.domain.instance", "compute.domain.host", "compute.domain.network",
              "compute.domain.secgroup", "compute.domain.named")
EVENT_MODULES = sorted(m for m in modules() if _in(m, "compute.domain")
                       and (m.endswith("_events") or m in ("compute.domain.instance_snapshot",
                                                           "compute.domain.event_chain")))


@pytest.mark.parametrize("module", EVENT_MODULES)
def test_an_event_module_does_not_import_an_aggregate(module: str) -> None:
    """The aggregate imports its events; they get it passed to ``apply`` and find its
    class by topic when they create it."""
    assert sorted(graph()[module] & set(AGGREGATES)) == []


def _cycles() -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    deps = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


def test_no_module_of_compute_imports_itself_back() -> None:
    """No import cycle at all, function-level imports included: a lazy import that only
    hides a cycle (as the events' import of their aggregate did) counts as one."""
    assert _cycles() == []


def test_the_creation_events_name_their_aggregate_by_its_topic() -> None:
    """The events resolve ``originator_topic`` to create their aggregate: it must be the
    aggregate's real topic (a rename of the aggregate would otherwise fail on replay only)."""
    from compute.domain.host import Host
    from compute.domain.host_events import HostEvent
    from compute.domain.instance import Instance
    from compute.domain.instance_events import Created
    from compute.domain.instance_snapshot import InstanceSnapshot
    from compute.domain.network import Network
    from compute.domain.network_events import NetworkEvent
    from compute.domain.secgroup import SecurityGroup
    from compute.domain.secgroup_events import SecurityGroupEvent

    assert {event.__name__: event.originator_topic for event in (
        Created, InstanceSnapshot, HostEvent, NetworkEvent, SecurityGroupEvent)} == {
        "Created": get_topic(Instance), "InstanceSnapshot": get_topic(Instance),
        "HostEvent": get_topic(Host), "NetworkEvent": get_topic(Network),
        "SecurityGroupEvent": get_topic(SecurityGroup)}
