"""What a command whose id the instance already knows means: the redelivery decision.

JetStream redelivers a command that was not acknowledged (a host crash, a store that refused
the outcome, an ``ack_wait`` that ran out), and a client may send one again with its id. The
instance's log says what became of it, and this one function reads it, so the actor does not
spread the rule over its branches (Nova has no redelivery: its RPC casts are at most once;
``nova/compute/manager.py`` ``_init_instance`` is the closest, the rules for an operation a
restarted compute finds in flight).

* ``New``: the id is unknown: guard and accept it.
* ``Duplicate``: the command finished (succeeded, failed, or was recovered): answer from
  the state, act on nothing.
* ``Resume``: the command is the operation in flight (its ``ActionStarted`` is durable and no
  completion, fault or recovery ended it): continue from its hypervisor call. An operation
  that sets no task_state (attach/detach volume and interface, inject_file, metadata) is in
  flight too: ``action_command_id`` says so, ``task_state`` alone does not.
* ``Undo``: the operation in flight is a move that creates a Migration (resize, migrate,
  live migration): half a move is rolled back, not continued.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute.domain.instance import Instance
from compute.domain.operations import Operation, lookup


@dataclass(frozen=True, slots=True)
class New:
    """Never seen: the command is guarded and accepted."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Finished earlier; ``last_event`` is the last event it caused."""

    last_event: str


@dataclass(frozen=True, slots=True)
class Resume:
    """In flight: continue ``op`` (the row recorded when it was accepted) from its driver
    call."""

    op: Operation


@dataclass(frozen=True, slots=True)
class Undo:
    """An interrupted move: roll it back (``op`` is the move's row)."""

    op: Operation


Decision = New | Duplicate | Resume | Undo


def in_flight(instance: Instance, command_id: str) -> bool:
    """``command_id`` is the operation the instance is in the middle of: accepted, not ended.
    ``ActionStarted`` sets ``action_command_id`` for every operation (with or without a
    task_state); every ending event (completion, ``TaskReverted``, a finishing ``Recovered``)
    clears it."""
    return instance.action_command_id == command_id and not instance.deleted


def decide(instance: Instance | None, command_id: str, op: Operation) -> Decision:
    """What to do with ``command_id`` (a command for ``op``) given the instance's state."""
    if instance is None:
        return New()
    last = instance.seen(command_id)
    if last is None:
        return New()
    if not in_flight(instance, command_id):
        return Duplicate(last)
    started = lookup(instance.operation or op.name) or op
    if started.creates_migration:
        return Undo(started)
    return Resume(started)
