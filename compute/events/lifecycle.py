"""Domain events of an instance: immutable msgspec Structs, one type for store, wire and replay.

Each event is stored as the JSON msgspec gives it and published to NATS byte for byte, so a
subscriber, an auditor and the aggregate all read the same document. ``uuid``/``version`` are
the aggregate's id and version (eventsourcing's ``originator_id``/``originator_version``), and
the ``event`` tag names the type. Each event knows how it changes the aggregate (``apply``), so a
replay needs nothing but the log.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

import msgspec

from compute.domain.errors import (
    FixedIpInvalid,
    InterfaceAttachFailed,
    InterfaceDetachFailed,
    VolumeAlreadyAttached,
    VolumeNotFound,
)
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

    def mutate(self, aggregate: Any) -> Any:
        """eventsourcing's projector hook: check the sequence, then apply."""
        if aggregate.version + 1 != self.originator_version:
            raise ValueError(
                f"event version {self.originator_version} does not follow {aggregate.version}"
            )
        self.apply(aggregate)
        aggregate.version = self.originator_version
        aggregate.modified_on = self.timestamp
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

    def mutate(self, aggregate: Any) -> Any:
        from compute.domain.instance import Instance

        if aggregate is not None:
            raise ValueError("Created must be the first event of an instance")
        instance = Instance.__new__(Instance)
        instance.__base_init__(self.originator_id, self.originator_version, self.timestamp)
        instance.init_from(self)
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
        """Event-specific fields, from the command's parameters, the completion time and
        the instance as it is before the event."""
        return {}

    def apply(self, aggregate: Instance) -> None:
        aggregate.finish(self.vm_state, self.power_state)


class Spawned(Completed, frozen=True, kw_only=True):
    """The guest was created and started on the hypervisor."""

    launched_at: datetime

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"launched_at": now}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.launched_at = self.launched_at


class Terminated(Completed, frozen=True, kw_only=True):
    """The guest was destroyed and its resources released."""

    terminated_at: datetime

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"terminated_at": now}

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

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"deleted_at": now}

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

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"image_ref": params["image_ref"], "launched_at": now}

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

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"metadata": params["metadata"]}

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
    """An image was deleted (backup rotation, §2.11)."""

    image_id: str
    reason: str

    def apply(self, aggregate: Instance) -> None:
        aggregate.images.pop(self.image_id, None)


def next_device(instance: Instance) -> str:
    """The first free virtio disk name after the root disk (vda)."""
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"/dev/vd{letter}" not in instance.block_devices:
            return f"/dev/vd{letter}"
    raise ValueError("no free device name: 25 disks attached")


class BlockDeviceReserved(Completed, frozen=True, kw_only=True):
    """A device name was set aside for a volume, so two attaches never share one."""

    device: str
    volume_id: str | None = None

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"device": next_device(instance), "volume_id": params.get("volume_id")}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.block_devices[self.device] = self.volume_id


class VolumeAttached(Completed, frozen=True, kw_only=True):
    """A volume is attached as ``device``, backed by ``path`` (relative paths are under the
    host's volumes directory)."""

    volume_id: str
    device: str
    path: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        volume_id = params["volume_id"]
        if volume_id in instance.volumes:
            raise VolumeAlreadyAttached(f"volume {volume_id} is already attached to "
                                        f"{instance.id} as {instance.volumes[volume_id][0]}")
        reserved = [d for d, v in instance.block_devices.items() if v == volume_id]
        device = params.get("device") or (reserved[0] if reserved else next_device(instance))
        if instance.block_devices.get(device) not in (None, volume_id) or device == "/dev/vda":
            raise VolumeAlreadyAttached(f"device {device} of {instance.id} is taken")
        path = params.get("connection_info", {}).get("path") or f"{volume_id}.img"
        return {**params, "device": device, "path": path}

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"volume_id": params["volume_id"], "device": params["device"],
                "path": params["path"]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.block_devices[self.device] = self.volume_id
        aggregate.volumes[self.volume_id] = (self.device, self.path)


class VolumeDetached(Completed, frozen=True, kw_only=True):
    """A volume left the instance; its device name is free again."""

    volume_id: str
    device: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        if params["volume_id"] not in instance.volumes:
            raise VolumeNotFound(f"volume {params['volume_id']} is not attached to "
                                 f"{instance.id}")
        device, path = instance.volumes[params["volume_id"]]
        return {**params, "device": device, "path": path}

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"volume_id": params["volume_id"], "device": params["device"]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.block_devices.pop(self.device, None)
        aggregate.volumes.pop(self.volume_id, None)


class VolumeConnectionRemoved(Completed, frozen=True, kw_only=True):
    """The host's connection to a volume was torn down (after a move, or a failed attach)."""

    volume_id: str

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"volume_id": params["volume_id"]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        device = aggregate.volumes.pop(self.volume_id, (None, None))[0]
        aggregate.block_devices.pop(device, None)


def mac_for(port_id: str) -> str:
    """A stable MAC per port, in the range Nova uses (fa:16:3e)."""
    digest = hashlib.sha1(port_id.encode()).hexdigest()
    return f"fa:16:3e:{digest[0:2]}:{digest[2:4]}:{digest[4:6]}"


class InterfaceAttached(Completed, frozen=True, kw_only=True):
    """A port of a network was plugged into the guest, with its address."""

    port_id: str
    network_id: str
    mac: str
    addresses: list[str]

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        if params["port_id"] in instance.interfaces:
            raise InterfaceAttachFailed(f"port {params['port_id']} is already attached to "
                                        f"{instance.id}")
        return {**params, "mac": mac_for(params["port_id"])}

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"port_id": params["port_id"], "network_id": params["network_id"],
                "mac": params["mac"], "addresses": [params["address"]]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces[self.port_id] = {"network_id": self.network_id, "mac": self.mac,
                                              "addresses": list(self.addresses)}


class InterfaceDetached(Completed, frozen=True, kw_only=True):
    port_id: str
    network_id: str
    addresses: list[str]

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        port = instance.interfaces.get(params["port_id"])
        if port is None:
            raise InterfaceDetachFailed(f"port {params['port_id']} is not attached to "
                                        f"{instance.id}")
        return {**params, "network_id": port["network_id"], "mac": port["mac"],
                "addresses": list(port["addresses"])}

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"port_id": params["port_id"], "network_id": params["network_id"],
                "addresses": params["addresses"]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces.pop(self.port_id, None)


class FixedIpAdded(Completed, frozen=True, kw_only=True):
    port_id: str
    network_id: str
    address: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        ports = [p for p, i in instance.interfaces.items()
                 if i["network_id"] == params["network_id"]]
        if not ports:
            raise FixedIpInvalid(f"{instance.id} has no interface on {params['network_id']}")
        return {**params, "port_id": ports[0]}

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"port_id": params["port_id"], "network_id": params["network_id"],
                "address": params["address"]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces[self.port_id]["addresses"].append(self.address)


class FixedIpRemoved(Completed, frozen=True, kw_only=True):
    port_id: str
    network_id: str
    address: str

    @classmethod
    def prepare(cls, params: dict[str, Any], instance: Instance) -> dict[str, Any]:
        for port, iface in instance.interfaces.items():
            if params["address"] in iface["addresses"]:
                return {**params, "port_id": port, "network_id": iface["network_id"]}
        raise FixedIpInvalid(f"{params['address']} is not an address of {instance.id}")

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"port_id": params["port_id"], "network_id": params["network_id"],
                "address": params["address"]}

    def apply(self, aggregate: Instance) -> None:
        super().apply(aggregate)
        aggregate.interfaces[self.port_id]["addresses"].remove(self.address)


class NetworkInfoInjected(Completed, frozen=True, kw_only=True):
    """The guest got its interfaces and addresses (the metadata a guest agent reads)."""


class NetworkReset(Completed, frozen=True, kw_only=True):
    """The guest's network configuration was re-applied."""


class SecurityRulesApplied(Completed, frozen=True, kw_only=True):
    """The firewall rules of the instance's groups (and the provider's) were rendered to
    the hypervisor's network filter; ``rules`` is what applies now."""

    rules: list[dict[str, Any]]

    @classmethod
    def details(cls, params: dict[str, Any], now: datetime,
                instance: Instance) -> dict[str, Any]:
        return {"rules": params["rules"]}


class FaultRecorded(Event, frozen=True, kw_only=True):
    """A failure, as Nova's instance_faults row: code, message (<=255), details (500 only)."""

    operation: str
    code: int
    message: str
    details: str = ""

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

    ``result`` finishes the interrupted action event (None: it is being redone)."""

    rule: int
    reason: str
    vm_state: VmState
    task_state: TaskState | None
    power_state: PowerState
    action_event: str | None = None
    result: str | None = None

    def apply(self, aggregate: Instance) -> None:
        if self.task_state is None:
            aggregate.finish(self.vm_state, self.power_state)
        else:
            aggregate.vm_state = self.vm_state
            aggregate.task_state = self.task_state
            aggregate.power_state = self.power_state


class PowerStateChanged(Event, frozen=True, kw_only=True):
    """The hypervisor reported a power state the instance did not have (the hypervisor wins)."""

    power_state: PowerState

    def apply(self, aggregate: Instance) -> None:
        aggregate.power_state = self.power_state


InstanceEvent = (
    Created | ActionStarted | TaskStateChanged | Spawned | Terminated | Rebooted | PoweredOff
    | PoweredOn | Paused | Unpaused | Suspended | Resumed | FaultRecorded | TaskReverted
    | Recovered | PowerStateChanged | SoftDeleted | Restored | Rescued | Unrescued | Rebuilt
    | PasswordChanged | FileInjected | MetadataChanged | Snapshotted | ImageDeleted
    | BlockDeviceReserved | VolumeAttached | VolumeDetached | VolumeConnectionRemoved
    | InterfaceAttached | InterfaceDetached | FixedIpAdded | FixedIpRemoved
    | NetworkInfoInjected | NetworkReset | SecurityRulesApplied
)
"""Every instance event, as one tagged union: ``msgspec.json.decode(b, type=InstanceEvent)``."""
