"""Outcomes: the one visible answer each command gets, sent to its ``Compute-Reply-To`` inbox.

A command either ends in the events it caused (``Succeeded`` or, when the hypervisor failed,
``Failed`` with the recorded fault) or in a typed ``Rejected`` that changed nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from compute.events.error_codes import ErrorCode


class Outcome(msgspec.Struct, frozen=True, kw_only=True, tag_field="outcome", tag=True):
    """Common head: which command, which instance, which host answered."""

    command_id: str | None
    uuid: str | None
    operation: str | None
    host: str


class Succeeded(Outcome, frozen=True, kw_only=True):
    """The operation ran; ``events`` are the names of the events it committed, in order."""

    events: list[str]
    version: int
    vm_state: str
    task_state: str | None
    power_state: int
    position: int = 0
    """Notification id of the last event: a query with ``min_position`` sees its effect."""
    cell: str | None = None
    """The cell whose store ``position`` counts in: a query's ``cell`` (issue 22)."""
    duplicate: bool = False
    result: dict[str, Any] = {}
    """What the operation produced (a device name, an image id, an address...)."""


class Failed(Outcome, frozen=True, kw_only=True):
    """The operation ran and failed: a fault was recorded and the task_state reverted."""

    events: list[str]
    version: int
    vm_state: str
    task_state: str | None
    power_state: int
    error: str
    code: int
    message: str
    position: int = 0
    cell: str | None = None
    duplicate: bool = False


class Rejected(Outcome, frozen=True, kw_only=True):
    """The command was refused before it changed anything."""

    error: ErrorCode
    message: str
    duplicate: bool = False
    """This answer was given before and is given again, the same (the command redelivered,
    or its id sent again): a host sets it only from a remembered answer, never from a
    delivery count (a first answer after a delivery that died unanswered is not a repeat)."""


class HostUpdated(Outcome, frozen=True, kw_only=True):
    """A host command ran: the host's flags after it, and what it has to say."""

    events: list[str]
    position: int
    enabled: bool
    maintenance: bool
    aggregates: list[str]
    message: str = ""
    cell: str | None = None


class Moved(Outcome, frozen=True, kw_only=True):
    """The instance lives on another host now; send the command there."""

    to_host: str


AnyOutcome = Succeeded | Failed | Rejected | HostUpdated | Moved
