"""A snapshot of an instance: its whole state at one version, typed field by field.

An activation folds the events after the newest snapshot instead of the whole history
(``bench/scale.py``: 805 events took 6.1 ms to fold). The state is a Struct of its own, not
the aggregate's ``__dict__``: msgspec restores enums, datetimes, UUIDs and nested Structs
exactly, and nothing generic (pickle) is ever loaded from the store. A snapshot is derived
data: the chain of events stays the record (``compute audit --verify``), and a snapshot the
code cannot read any more is ignored, the events are folded instead (``store/app.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

import msgspec
from eventsourcing.utils import resolve_topic

from compute.domain.migration import Migration
from compute.domain.states import PowerState, TaskState, VmState
from compute.events.commands import Flavor

if TYPE_CHECKING:
    from compute.domain.instance import Instance

SNAPSHOT_EVERY = 100
"""Events between two snapshots of an instance (the issue's "snapshots every N events")."""


class InstanceState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every attribute of an ``Instance`` beside the aggregate's id, version and times."""

    host: str
    name: str
    flavor: Flavor
    image_ref: str
    metadata: dict[str, str]
    security_groups: list[str]
    vm_state: VmState
    task_state: TaskState | None
    power_state: PowerState
    launched_at: datetime | None
    terminated_at: datetime | None
    fault_count: int
    operation: str | None
    action: str | None
    action_event: str | None
    action_command_id: str | None
    action_vm_state: VmState
    action_params: dict[str, Any]
    recent: list[tuple[str, str]]            # command id -> its last event, oldest first
    deleted_at: datetime | None
    images: dict[str, tuple[str, str | None]]
    block_devices: dict[str, str | None]
    volumes: dict[str, tuple[str, str]]
    interfaces: dict[str, dict[str, Any]]
    migration: Migration | None
    old_flavor: Flavor | None
    chain: str


_STATE_FIELDS = InstanceState.__struct_fields__


class InstanceSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What eventsourcing's snapshot store keeps: the repository folds it first (``mutate``
    of no aggregate gives the instance), then the events after its version."""

    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime                      # the instance's modified_on
    created_on: datetime
    state: InstanceState

    @classmethod
    def take(cls, inst: Instance) -> InstanceSnapshot:
        """The instance as it is now (encode it before the instance changes again: the
        containers are shared, not copied)."""
        fields = {f: getattr(inst, f) for f in _STATE_FIELDS}
        fields["recent"] = list(inst.recent.items())
        return cls(originator_id=inst.id, originator_version=inst.version,
                   timestamp=inst.modified_on, created_on=inst.created_on,
                   state=InstanceState(**fields))

    originator_topic: ClassVar[str] = "compute.domain.instance:Instance"
    """The aggregate a snapshot restores, by topic (as ``Created``'s): this module does not
    import the aggregate, which imports it."""

    def mutate(self, aggregate: Any) -> Instance:
        if aggregate is not None:
            raise ValueError("a snapshot starts an instance's history")
        cls = resolve_topic(self.originator_topic)
        inst = cls.__new__(cls)
        inst.__base_init__(self.originator_id, self.originator_version, self.created_on)
        inst.modified_on = self.timestamp
        for name in _STATE_FIELDS:
            setattr(inst, name, getattr(self.state, name))
        inst.recent = OrderedDict(self.state.recent)
        return inst
