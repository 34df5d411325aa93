"""The operation table's facts, row by row, against a frozen copy (tests/data/operation_rows.json).

The table (compute/domain/operations.py) is the one place per operation: Nova's guards, the
task_states, the driver method, the events, the notifications, the redelivery rules. A change
to a row changes what compute does, so it shows up here as a diff of that row's facts, and the
copy is rewritten on purpose (``python -m tests.fast.test_operation_rows --write``), never by
accident (a refactoring of the table, issue 21's keyword rows, must leave it equal).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from compute.actors.move_coordinator import MoveCoordinator
from compute.cli import build_parser
from compute.cli.commands import operation_payload
from compute.domain.operations import BACKUP, HARD_REBOOT, OPERATIONS, Operation
from compute.events.commands import Flavor, ResizeInstance
from tests.test_domain import booted

VM = "9d6f4bd8-3c3b-4b44-9f1e-6a2f6c1f0c55"
FROZEN = Path(__file__).resolve().parents[1] / "data" / "operation_rows.json"


def fact(value: Any) -> Any:
    """A field's value as JSON: classes by name (not module: modules move), enums by value,
    sets sorted (None last)."""
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, frozenset):
        return sorted((fact(v) for v in value), key=lambda v: (v is None, v or ""))
    if isinstance(value, tuple):
        return [fact(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: fact(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def facts(op: Operation) -> dict[str, Any]:
    """Every field of the row, and the facts its properties derive from them."""
    row = {f.name: fact(getattr(op, f.name)) for f in dataclasses.fields(op)}
    row["resume_rule"] = op.resume_rule
    row["action_event"] = op.action_event
    row["allocates"] = op.allocates
    return row


def table() -> dict[str, dict[str, Any]]:
    """Each row by its key: the operation's name, or the variant's ``name/cli``."""
    rows = {name: facts(op) for name, op in OPERATIONS.items()}
    rows["snapshot_instance/backup"] = facts(BACKUP)
    rows["reboot_instance/hard"] = facts(HARD_REBOOT)
    return rows


def test_every_row_states_the_facts_it_was_frozen_with() -> None:
    frozen = json.loads(FROZEN.read_text())
    now = table()
    assert sorted(now) == sorted(frozen)
    for key, row in now.items():
        assert row == frozen[key], key



@pytest.mark.parametrize("argv, field, value", [
    (["reboot", VM, "--hard"], "reboot_type", "HARD"),
    (["stop", VM, "--force"], "clean_shutdown", False),
])
def test_a_rows_switch_is_a_flag_of_its_verb_that_sets_its_field(
        argv: list[str], field: str, value: object) -> None:
    assert operation_payload(build_parser().parse_args(argv)) == {field: value}
    assert field not in operation_payload(build_parser().parse_args(argv[:2]))


def test_every_row_is_a_verb_of_its_operation_but_the_build_which_has_its_own() -> None:
    verbs = next(a.choices for a in build_parser()._actions
                 if isinstance(a, argparse._SubParsersAction))
    for op in (*OPERATIONS.values(), BACKUP):
        assert verbs[op.cli].get_default("operation") == (None if op.creates else op.name), \
            op.cli


@pytest.mark.parametrize("name, allowed, excluded", [
    ("resize_instance", True, set()), ("resize_instance", False, {"h1"}),
    ("migrate_instance", True, {"h1"}), ("live_migration", True, {"h1"}),
])
async def test_only_a_row_that_may_stay_lets_placement_pick_this_host(
        name: str, allowed: bool, excluded: set[str]) -> None:
    """allow_resize_to_same_host (nova.conf) lets a resize land on its own host; the table
    says which moves it applies to (``may_stay``), not the move's name."""
    asked: list[set[str]] = []

    async def placement(flavor: Flavor, exclude: set[str]) -> str:
        asked.append(exclude)
        return "h2"

    moves = MoveCoordinator("h1", peers=None, placement=placement,  # type: ignore[arg-type]
                            tracker=None, driver=None,              # type: ignore[arg-type]
                            allow_resize_to_same_host=allowed)
    op = OPERATIONS[name]
    body = {"flavor": Flavor(name="f2", vcpus=1, memory_mb=64)} \
        if op.payload is ResizeInstance else {}
    assert await moves.destination(booted(), op, op.payload(command_id=uuid.uuid4(),
                                                            **body)) == "h2"
    assert asked == [excluded]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    FROZEN.write_text(json.dumps(table(), indent=1, sort_keys=True) + "\n")
