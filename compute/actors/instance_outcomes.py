"""The answers an instance actor gives, built from the instance as it ended: pure functions,
shared by the actor and its collaborators (restart recovery, power sync)."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from compute.messaging.envelope import Envelope
from compute.domain.errors import ComputeError
from compute.domain.instance import Instance
from compute.domain.operations import Operation
from compute.domain.instance_events import Completed
from compute.events.outcomes import Failed, Rejected, Succeeded

_outcomes = msgspec.json.Decoder(Succeeded | Failed | Rejected)


def state_outcome(env: Envelope, inst: Instance, host: str, names: list[str], position: int,
                  *, error: BaseException | None = None, duplicate: bool = False,
                  result: dict[str, Any] | None = None) -> Succeeded | Failed:
    """``Succeeded`` with the instance's states, or ``Failed`` naming the error (a rollback
    names what caused it; a duplicate of a command that was reverted fails again)."""
    head = dict(command_id=env.command_id, uuid=str(inst.id), operation=env.op.name,
                host=host, events=names, version=inst.version,
                vm_state=inst.vm_state.value,
                task_state=inst.task_state.value if inst.task_state else None,
                power_state=int(inst.power_state), position=position,
                duplicate=duplicate)
    if error is None and not (duplicate and inst.seen(env.command_id) == "TaskReverted"):
        return Succeeded(**head, result=result or {})
    code = error.code if isinstance(error, ComputeError) else 500
    cause = getattr(error, "cause", error)      # a rollback names what caused it
    name = error.error.value if isinstance(error, ComputeError) and \
        error.code != 500 else type(cause).__name__ if error else "Fault"
    return Failed(**head, error=name, code=code,
                  message=str(error or "the operation failed earlier"))


def again(encoded: bytes) -> Succeeded | Failed | Rejected:
    """A remembered answer, given again: the same, marked as a duplicate."""
    return msgspec.structs.replace(_outcomes.decode(encoded), duplicate=True)


_BASE_FIELDS = frozenset(Completed.__struct_fields__)


@functools.cache
def _own_fields(cls: type) -> tuple[str, ...]:
    return tuple(f for f in cls.__struct_fields__ if f not in _BASE_FIELDS)


def result_of(events: list[Any]) -> dict[str, Any]:
    """What an operation produced: its completion event's own fields."""
    for event in events:
        if isinstance(event, Completed):
            fields = _own_fields(type(event))
            return msgspec.to_builtins({f: getattr(event, f) for f in fields}) if fields \
                else {}
    return {}


def preempted(env: Envelope, inst: Instance, host: str, op: Operation,
              earlier: list[Any]) -> Failed:
    """A delete took over while the hypervisor was busy: Nova's
    UnexpectedDeletingTaskStateError (409; no fault, no state change)."""
    return Failed(
        command_id=env.command_id, uuid=str(inst.id), operation=op.name,
        host=host, events=[type(ev).__name__ for ev in earlier],
        version=inst.version, vm_state=inst.vm_state.value,
        task_state=inst.task_state.value if inst.task_state else None,
        power_state=int(inst.power_state), error="UnexpectedDeletingTaskStateError",
        code=409, message=f"{op.name} was pre-empted by a delete")
