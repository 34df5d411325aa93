"""The operation table's facts, row by row, against a frozen copy (tests/data/operation_rows.json).

The table (compute/domain/operations.py) is the one place per operation: Nova's guards, the
task_states, the driver method, the events, the notifications, the redelivery rules. A change
to a row changes what compute does, so it shows up here as a diff of that row's facts, and the
copy is rewritten on purpose (``python -m tests.fast.test_operation_rows --write``), never by
accident (a refactoring of the table, issue 21's keyword rows, must leave it equal).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from pathlib import Path
from typing import Any

from compute.domain.operations import BACKUP, HARD_REBOOT, OPERATIONS, Operation

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
    return value


def facts(op: Operation) -> dict[str, Any]:
    """Every field of the row, and the facts its properties derive from them."""
    row = {f.name: fact(getattr(op, f.name)) for f in dataclasses.fields(op)}
    row["resume_rule"] = op.resume_rule
    row["action_event"] = op.action_event
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


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    FROZEN.write_text(json.dumps(table(), indent=1, sort_keys=True) + "\n")
