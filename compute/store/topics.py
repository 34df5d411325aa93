"""Event topics: the ones events and snapshots were stored under before they moved into the
domain (registered here, in one place), and the prefixes of an instance's events.

A stored event names its class by topic, ``module:Class`` (eventsourcing's ``get_topic``),
and the mapper finds the class again with ``resolve_topic`` (``compute/store/mapper.py``).
Until issue 21 the events lived in ``compute/events/``: an instance's in ``lifecycle``,
``devices``, ``moves`` (with the host's ``ClaimMoved``) and ``snapshot``, the named
aggregates' in ``host``, ``network`` and ``secgroup``. They are the domain's now
(``compute/domain/*_events.py``, ``instance_snapshot.py``) and are written under their new
topics; the class names, the JSON and so the wire (subjects, asyncapi.yaml) are unchanged.
A log written before keeps its old topics forever, so each old topic is registered here, in
one place, with eventsourcing's ``register_topic`` (made for classes that moved): a
``resolve_topic`` of an old topic gives the class of today. Imported by the mapper, so every
reader of the store (repository, relay, notifier, projector, audit) has them.
"""

from __future__ import annotations

from types import ModuleType

from eventsourcing.utils import register_topic

from compute.domain import (
    host_events,
    instance_device_events,
    instance_events,
    instance_move_events,
    instance_snapshot,
    network_events,
    secgroup_events,
)

MOVED: dict[str, tuple[ModuleType, tuple[str, ...]]] = {
    "compute.events.lifecycle": (instance_events, (
        "Event", "Created", "ActionStarted", "TaskStateChanged", "Completed", "Spawned",
        "Terminated", "Rebooted", "PoweredOff", "PoweredOn", "Paused", "Unpaused",
        "Suspended", "Resumed", "SoftDeleted", "Restored", "Rescued", "Unrescued", "Rebuilt",
        "PasswordChanged", "FileInjected", "MetadataChanged", "Snapshotted", "ImageDeleted",
        "FaultRecorded", "TaskReverted", "Recovered", "GuestRequestTimedOut",
        "PowerStateChanged", "GuestCrashed")),
    "compute.events.devices": (instance_device_events, (
        "BlockDeviceReserved", "VolumeAttached", "VolumeDetached", "VolumeConnectionRemoved",
        "InterfaceAttached", "InterfaceDetached", "FixedIpAdded", "FixedIpRemoved",
        "NetworkInfoInjected", "NetworkReset", "SecurityRulesApplied")),
    "compute.events.moves": (instance_move_events, (
        "MigrationCreated", "MigrationStatusChanged", "MoveFinished", "Resized", "Migrated",
        "ResizeConfirmed", "ResizeReverted", "LiveMigrated")),
    "compute.events.snapshot": (instance_snapshot, ("InstanceState", "InstanceSnapshot")),
    "compute.events.host": (host_events, (
        "HostEvent", "HostResourcesReported", "ResourcesClaimed", "ClaimReleased",
        "HostEnabledSet", "MaintenanceModeSet", "HostPowerActionRequested",
        "AggregateHostAdded", "AggregateHostRemoved")),
    "compute.events.network": (network_events, (
        "NetworkEvent", "NetworkDefined", "AddressAllocated", "AddressReleased")),
    "compute.events.secgroup": (secgroup_events, (
        "SecurityGroupEvent", "SecurityGroupRuleAdded", "SecurityGroupRuleRemoved")),
}
"""Old module -> (the module its classes are in now, the class names it had)."""

MOVED_ELSEWHERE: dict[str, type] = {
    "compute.events.moves:ClaimMoved": host_events.ClaimMoved,
}
"""Old topics whose class went to another module than its neighbours: ``ClaimMoved`` is a
host's event (a ``HostEvent``), now beside the others."""


def old_topics() -> dict[str, type]:
    """Every old topic and the class it names today."""
    topics = {f"{old}:{name}": getattr(module, name)
              for old, (module, names) in MOVED.items() for name in names}
    return {**topics, **MOVED_ELSEWHERE}


for _topic, _cls in old_topics().items():
    register_topic(_topic, _cls)

INSTANCE_EVENT_MODULES: tuple[str, ...] = (
    *(f"{m.__name__}:" for m in (instance_events, instance_device_events, instance_move_events)),
    "compute.events.lifecycle:", "compute.events.devices:", "compute.events.moves:")
"""The topic prefixes of an instance's events, today's and an older log's (the notifier
folds every one of them, in order; a host's ``ClaimMoved`` among the old moves is passed
over by its type)."""
