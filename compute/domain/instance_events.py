"""Domain events of an instance: immutable msgspec Structs, one type for store, wire and replay.

Each event is stored as the JSON msgspec gives it and published to NATS byte for byte, so a
subscriber, an auditor and the aggregate all read the same document. ``uuid``/``version`` are
the aggregate's id and version (eventsourcing's ``originator_id``/``originator_version``), and
the ``event`` tag names the type. Each event knows how it changes the aggregate (``apply``), so a
replay needs nothing but the log.

The events belong to the ``Instance`` aggregate (``compute/domain/instance.py``), as
eventsourcing's ``Dog.TrickAdded`` belongs to ``Dog``, but live in modules of their own that do
not import it: the aggregate imports its events, nothing imports back. ``apply`` gets the
aggregate passed in; the creation event finds the aggregate class by its topic
(``Created.originator_topic``). The events of its devices and moves are in
``instance_device_events`` and ``instance_move_events``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

import msgspec
from eventsourcing.utils import resolve_topic

from compute.domain.event_chain import link
from compute.domain.states import PowerState, TaskState, VmState
from compute.events.commands import Flavor

if TYPE_CHECKING:
    from compute.domain.instance import Instance


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag=True):
    """Base of every event: who (uuid, host), when, which version, caused by which command."""

    originator_id: UUID = msgspec.field(name="uuid")
    originator_version: int = msgspec.field(name="version")
    timestamp: datetime
    host: str
    command_id: str
    chain: str = ""
    """sha256 of the previous event's chain and this event (with an empty chain): an edited,
    removed or re-ordered event breaks every link after it (``compute audit --verify``)."""
    seal: str | msgspec.UnsetType = msgspec.UNSET
    """HMAC of ``chain`` with the deployment's seal key, set by the store's mapper when the
    event is written (``compute.store.seal``): a store writer without the key cannot make an
    edited or forged event look genuine, even with its chain recomputed."""

    def sealed(self, previous: str) -> Event:
        """This event with its chain link to the instance's previous event."""
        return msgspec.structs.replace(self, chain=link(previous, self))

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's projector hook: check the sequence, then apply."""
        if aggregate.version + 1 != self.originator_version:
            raise ValueError(
                f"event version {self.originator_version} does not follow {aggregate.version}"
            )
        self.apply(aggregate)
        aggregate.version = self.originator_version
        aggregate.modified_on = self.timestamp
        aggregate.chain = self.chain
        aggregate.note_command(self.command_id, type(self).__name__)
        return aggregate

    def apply(self, aggregate: Instance) -> None:
        """How this event changes the instance; the base changes nothing."""


class Created(Event, frozen=True, kw_only=True):
    """The build request was accepted: the instance exists, BUILDING / SCHEDULING."""

    name: str
    flavor: Flavor
    image_ref: str
    metadata: dict[str, str] = {}
    security_groups: list[str] = []
    operation: str = "run_instance"
    action: str = "create"
    action_event: str = "compute__do_build_and_run_instance"

    originator_topic: ClassVar[str] = "compute.domain.instance:Instance"
    """The aggregate this event creates, by topic (eventsourcing's ``originator_topic``; a
    class constant here, so the event's JSON is unchanged)."""

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is not None:
            raise ValueError("Created must be the first event of an instance")
        cls = resolve_topic(self.originator_topic)
        instance = cls.__new__(cls)
        instance.__base_init__(self.originator_id, self.originator_version, self.timestamp)
        instance.init_from(self)
        instance.chain = self.chain
        instance.note_command(self.command_id, "Created")
        return instance


class ActionStarted(Event, frozen=True, kw_only=True):
    """An operation was accepted: its task_state is set and its instance action begins."""

    operation: str
    action: str
    action_event: str
    task_state: TaskState | None
    params: dict[str, Any] = {}

    def apply(self, aggregate: Instance) -> None:
        aggregate.action_vm_state = aggregate.vm_state
        aggregate.action_params = dict(self.params)
        aggregate.task_state = self.task_state
        aggregate.action = self.action
        aggregate.action_event = self.action_event
        aggregate.operation = self.operation
        aggregate.action_command_id = self.command_id


class TaskStateChanged(Event, frozen=True, kw_only=True):
    """Compute moved the operation in flight to its next step (Nova's expected_task_state CAS)."""

    task_state: TaskState | None
    vm_state: VmState

    def apply(self, aggregate: Instance) -> None:
        aggregate.task_state = self.task_state
        aggregate.vm_state = self.vm_state


@functools.cache
def _added_fields(cls: type) -> tuple[tuple[str, bool, bool, Any], ...]:
    """The fields ``cls`` adds to ``Completed``: name, a datetime?, required?, default."""
    base = {f.name for f in msgspec.structs.fields(Completed)}
    return tuple((f.name, f.type is datetime, f.default is msgspec.NODEFAULT, f.default)
                 for f in msgspec.structs.fields(cls) if f.name not in base)


class Completed(Event, frozen=True, kw_only=True):
    """Base of the events that end an operation successfully: the final Nova states."""

    operation: str
    action: str
    action_event: str
    vm_state: VmState
    power_state: PowerState
    task_state: None = None

    result: ClassVar[str] = "Success"

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        """Decisions taken when the command is accepted (recorded in ActionStarted.params,
        so the driver call and a replay see the same): validate, fill in defaults."""
        return params

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        """Event-specific fields, from the command's parameters (after ``prepare``), the
        completion time and the instance as it is before the event. Declared by default:
        each field the event adds to ``Completed`` is the completion time if it is a
        datetime (``launched_at``, ``terminated_at``...), else the parameter of its name; an
        event whose fields are computed otherwise says how in its own ``details``."""
        return {name: now if is_time else params[name] if required else params.get(name, default)
                for name, is_time, required, default in _added_fields(cls)}

    @classmethod
    def vm_state_after(cls, default: VmState, power: PowerState,
                       instance: Instance) -> VmState:
        """The final vm_state, when it depends on more than the operation table says."""
        return default

    def apply(self, aggregate: Instance) -> None:
        aggregate.finish(self.vm_state, self.power_state)


class Spawned(Completed, frozen=True, kw_only=True):
    """The guest was created and started on the hypervisor."""

    launched_at: datetime

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.launched_at = self.launched_at


class Terminated(Completed, frozen=True, kw_only=True):
    """The guest was destroyed and its resources released."""

    terminated_at: datetime

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.terminated_at = self.terminated_at


class Rebooted(Completed, frozen=True, kw_only=True):
    """The guest was rebooted (soft or hard)."""

    reboot_type: str = "SOFT"

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"reboot_type": params.get("reboot_type", "SOFT")}


class PoweredOff(Completed, frozen=True, kw_only=True):
    """The guest was stopped."""


class PoweredOn(Completed, frozen=True, kw_only=True):
    """The guest was started again."""


class Paused(Completed, frozen=True, kw_only=True):
    """The guest was paused in memory."""


class Unpaused(Completed, frozen=True, kw_only=True):
    """The paused guest runs again."""


class Suspended(Completed, frozen=True, kw_only=True):
    """The guest's state was saved to disk."""


class Resumed(Completed, frozen=True, kw_only=True):
    """The suspended guest was restored from disk."""


class SoftDeleted(Completed, frozen=True, kw_only=True):
    """The instance was deleted but can be restored until it is reclaimed."""

    deleted_at: datetime

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.deleted_at = self.deleted_at


class Restored(Completed, frozen=True, kw_only=True):
    """A soft-deleted instance is back."""

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.deleted_at = None


class Rescued(Completed, frozen=True, kw_only=True):
    """The guest booted from a rescue image, its own disk attached."""

    rescue_image_ref: str

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"rescue_image_ref": params.get("rescue_image_ref") or ""}


class Unrescued(Completed, frozen=True, kw_only=True):
    """The guest boots from its own disk again."""


class Rebuilt(Completed, frozen=True, kw_only=True):
    """The guest was destroyed and spawned again from ``image_ref``."""

    image_ref: str
    launched_at: datetime

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.image_ref = self.image_ref
        aggregate.launched_at = self.launched_at


class PasswordChanged(Completed, frozen=True, kw_only=True):
    """The guest's admin password was set (the password itself is never recorded)."""


class FileInjected(Completed, frozen=True, kw_only=True):
    """A file was written into the guest (its path and size; the contents stay private)."""

    path: str
    size: int

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"path": params["path"], "size": len(params["contents"])}


class MetadataChanged(Completed, frozen=True, kw_only=True):
    """The metadata published to the guest changed."""

    metadata: dict[str, str]

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.metadata = dict(self.metadata)


class Snapshotted(Completed, frozen=True, kw_only=True):
    """An image of the instance was taken (a snapshot, or a backup of a type)."""

    image_id: str
    name: str
    image_type: str
    backup_type: str | None = None

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"image_id": params["image_id"], "name": params["name"],
                "image_type": params["image_type"], "backup_type": params.get("backup_type")}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.images[self.image_id] = (self.image_type, self.backup_type)


class ImageDeleted(Event, frozen=True, kw_only=True):
    """An image was deleted (backup rotation, nova/compute/manager.py _rotate_backups)."""

    image_id: str
    reason: str

    def apply(self, aggregate: Instance) -> None:
        aggregate.images.pop(self.image_id, None)


class FaultRecorded(Event, frozen=True, kw_only=True):
    """A failure, as Nova's instance_faults row: code, message (<=255), details (500 only)."""

    operation: str
    code: int
    message: str
    details: str = ""
    exception: str = ""
    """The failure's class name, as Nova's ExceptionPayload.exception (empty in older logs)."""
    module: str = ""
    """The module the failure was raised in (ExceptionPayload.module_name), when known."""

    def apply(self, aggregate: Instance) -> None:
        aggregate.fault_count += 1


class TaskReverted(Event, frozen=True, kw_only=True):
    """The failed operation is over: task_state back to None, the action event ends in Error."""

    operation: str
    action: str
    action_event: str
    vm_state: VmState
    power_state: PowerState
    task_state: None = None

    result: ClassVar[str] = "Error"

    def apply(self, aggregate: Instance) -> None:
        aggregate.finish(self.vm_state, self.power_state)


class Recovered(Event, frozen=True, kw_only=True):
    """A restarted host resolved an operation it found in flight (Nova's _init_instance).

    ``result`` finishes the interrupted action event (None: it goes on, redone by the host or,
    after rule 17 alone, continued by the command's redelivery; the operation stays in
    flight then, with or without a task_state)."""

    rule: int
    reason: str
    vm_state: VmState
    task_state: TaskState | None
    power_state: PowerState
    action_event: str | None = None
    result: str | None = None

    def apply(self, aggregate: Instance) -> None:
        if self.task_state is None and self.result is not None:
            aggregate.finish(self.vm_state, self.power_state)
        else:
            aggregate.vm_state = self.vm_state
            aggregate.task_state = self.task_state
            aggregate.power_state = self.power_state


class GuestRequestTimedOut(Event, frozen=True, kw_only=True):
    """A graceful request the guest did not honour in time (an ACPI shutdown the guest
    ignored or missed): the operation went on with its fallback (hard reboot, destroy)."""

    operation: str
    request: str
    waited_s: float
    fallback: str


class PowerStateChanged(Event, frozen=True, kw_only=True):
    """The hypervisor reported a power state the instance did not have (the hypervisor wins)."""

    power_state: PowerState

    def apply(self, aggregate: Instance) -> None:
        aggregate.power_state = self.power_state


class GuestCrashed(PowerStateChanged, frozen=True, kw_only=True):
    """The guest died under us (its QEMU process crashed or was killed): the hypervisor
    reported a failed stop. The power sync then stops the instance, as for any guest that
    went down behind our back."""

    reason: str
