"""How each event changes the views: one handler per event type, applied to a page.

Events arrive in their projection view (``decoding``): ids and times are strings, states
are the enums' values.

A handler writes through the page's ``PageWriter`` (``db``): instance rows and instance
actions are coalesced there, other tables are plain statements. It returns the hosts whose
usage must be recomputed at the end of the page.
"""

from __future__ import annotations

from functools import lru_cache, singledispatch
from typing import Any

import msgspec

from compute.domain import instance_device_events as d
from compute.domain import instance_events as e
from compute.domain import instance_move_events as mv
from compute.domain.host_events import (
    AggregateHostAdded,
    AggregateHostRemoved,
    ClaimMoved,
    ClaimReleased,
    HostEnabledSet,
    HostResourcesReported,
    MaintenanceModeSet,
    ResourcesClaimed,
)
from compute.projections.decoding import iso
from compute.projections.page import PageWriter

_json = msgspec.json.Encoder()


@singledispatch
def apply(event: Any, db: PageWriter) -> set[str]:
    """Apply one event to the views; returns the hosts whose usage must be recomputed.
    ``db.begin(event)`` must have run (it sets the event's uuid and time strings)."""
    return set()


@lru_cache(maxsize=None)
def handler(cls: type) -> Any:
    """``apply``'s handler for an event type, found once per type (dispatching per event
    was a measurable share of a rebuild)."""
    return apply.dispatch(cls)


@apply.register
def _(event: e.Event, db: PageWriter) -> set[str]:
    return _touch(event, db)          # any other instance event: version and time


def _touch(event: e.Event, db: PageWriter, **columns: Any) -> set[str]:
    """The instance row after ``event``: its version, time and ``columns`` (its status is
    derived when the row is written)."""
    return _set(event, db, columns)


def _set(event: e.Event, db: PageWriter, columns: dict[str, Any]) -> set[str]:
    """``_touch`` with the columns as a dict the caller gives up (the handlers of the most
    frequent events build it directly: no keyword packing per event)."""
    columns["version"] = event.originator_version
    columns["updated_at"] = db.ts
    db.touch(db.uuid, columns)
    return {event.host}


def _start_action(event: Any, db: PageWriter) -> None:
    db.start_action(db.uuid, event.command_id, event.action, event.action_event, db.ts,
                    event.host)


def _finish_action(event: Any, db: PageWriter, result: str, details: str | None) -> None:
    db.finish_action(db.uuid, event.command_id, event.action_event, db.ts, result, details)


@apply.register
def _(event: e.Created, db: PageWriter) -> set[str]:
    f = event.flavor
    db.create({"uuid": db.uuid, "host": event.host, "name": event.name,
               "flavor": _json.encode(f).decode(), "vcpus": f.vcpus, "memory_mb": f.memory_mb,
               "disk_gb": f.root_gb + f.ephemeral_gb + f.swap / 1024,
               "image_ref": event.image_ref, "metadata": _json.encode(event.metadata).decode(),
               "vm_state": "building", "task_state": "scheduling", "power_state": 0,
               "created_at": db.ts, "updated_at": db.ts, "version": event.originator_version,
               "security_groups": _json.encode(event.security_groups).decode()})
    _start_action(event, db)
    return {event.host}


@apply.register
def _(event: e.ActionStarted, db: PageWriter) -> set[str]:
    _start_action(event, db)
    return _set(event, db, {"task_state": event.task_state})


@apply.register
def _(event: e.TaskStateChanged, db: PageWriter) -> set[str]:
    return _set(event, db, {"task_state": event.task_state, "vm_state": event.vm_state})


_EXTRAS: tuple[tuple[Any, str, Any], ...] = (
    ((e.Spawned, e.Rebuilt), "launched_at", lambda ev, db: iso(ev.launched_at)),
    (e.Rebuilt, "image_ref", lambda ev, db: ev.image_ref),
    (e.Terminated, "terminated_at", lambda ev, db: iso(ev.terminated_at)),
    (e.SoftDeleted, "deleted_at", lambda ev, db: iso(ev.deleted_at)),
    (e.Restored, "deleted_at", lambda ev, db: None),
    (e.MetadataChanged, "metadata", lambda ev, db: _json.encode(ev.metadata).decode()),
    ((d.BlockDeviceReserved, d.VolumeAttached, d.VolumeDetached, d.VolumeConnectionRemoved),
     "volumes", lambda ev, db: _volumes(ev, db)),
    ((d.InterfaceAttached, d.InterfaceDetached, d.FixedIpAdded, d.FixedIpRemoved),
     "interfaces", lambda ev, db: _interfaces(ev, db)),
    (d.SecurityRulesApplied, "security_rules", lambda ev, db: _json.encode(ev.rules).decode()),
)
"""The instance columns a completion sets besides its states: (types, column, value)."""


@lru_cache(maxsize=None)
def _extras(cls: type) -> tuple[tuple[str, Any], ...]:
    """The extra columns of one completion type, found once (a dozen isinstance checks per
    completed operation otherwise)."""
    return tuple((column, value) for types, column, value in _EXTRAS if issubclass(cls, types))


@apply.register
def _(event: e.Completed, db: PageWriter) -> set[str]:
    columns = {"vm_state": event.vm_state, "task_state": None,
               "power_state": event.power_state}
    for column, value in _extras(type(event)):
        columns[column] = value(event, db)
    if isinstance(event, e.Snapshotted):
        db.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                   (event.image_id, db.uuid, event.name, event.image_type,
                    event.backup_type, db.ts))
    _finish_action(event, db, "Success", None)
    return _set(event, db, columns)


def _interfaces(event: Any, db: PageWriter) -> str:
    row = db.execute("SELECT interfaces FROM instances WHERE uuid = ?", (db.uuid,)).fetchone()
    ports: dict[str, Any] = msgspec.json.decode(row[0]) if row else {}
    if isinstance(event, d.InterfaceAttached):
        ports[event.port_id] = {"network_id": event.network_id, "mac": event.mac,
                                "addresses": list(event.addresses)}
    elif isinstance(event, d.InterfaceDetached):
        ports.pop(event.port_id, None)
    elif isinstance(event, d.FixedIpAdded):
        ports[event.port_id]["addresses"].append(event.address)
    else:
        ports[event.port_id]["addresses"].remove(event.address)
    return _json.encode(dict(sorted(ports.items()))).decode()


def _volumes(event: Any, db: PageWriter) -> str:
    """The instance's block devices after a volume event, as the view's JSON column."""
    row = db.execute("SELECT volumes FROM instances WHERE uuid = ?", (db.uuid,)).fetchone()
    volumes: dict[str, Any] = msgspec.json.decode(row[0]) if row else {}
    if isinstance(event, d.BlockDeviceReserved):
        volumes[event.device] = {"volume_id": event.volume_id, "path": None,
                                 "state": "reserved"}
    elif isinstance(event, d.VolumeAttached):
        volumes[event.device] = {"volume_id": event.volume_id, "path": event.path,
                                 "state": "attached"}
    else:
        volumes = {d: v for d, v in volumes.items() if v["volume_id"] != event.volume_id}
    return _json.encode(dict(sorted(volumes.items()))).decode()


@apply.register
def _(event: e.FaultRecorded, db: PageWriter) -> set[str]:
    db.execute("INSERT OR REPLACE INTO faults VALUES (?, ?, ?, ?, ?, ?, ?)",
               (db.uuid, event.originator_version, event.code, event.message,
                event.details, event.host, db.ts))
    return _touch(event, db, fault_code=event.code, fault_message=event.message,
                  fault_details=event.details, fault_at=db.ts)


@apply.register
def _(event: e.TaskReverted, db: PageWriter) -> set[str]:
    row = db.execute("SELECT fault_message FROM instances WHERE uuid = ?",
                     (db.uuid,)).fetchone()
    _finish_action(event, db, "Error", row[0] if row else None)
    return _touch(event, db, vm_state=event.vm_state, task_state=None,
                  power_state=event.power_state)


@apply.register
def _(event: e.Recovered, db: PageWriter) -> set[str]:
    if event.result is not None and event.action_event is not None:
        _finish_action(event, db, event.result,
                       None if event.result == "Success" else event.reason)
    return _touch(event, db, vm_state=event.vm_state, task_state=event.task_state,
                  power_state=event.power_state)


@apply.register
def _(event: e.ImageDeleted, db: PageWriter) -> set[str]:
    db.execute("UPDATE images SET deleted_at = ?, reason = ? WHERE image_id = ?",
               (db.ts, event.reason, event.image_id))
    return _touch(event, db)


@apply.register
def _(event: e.PowerStateChanged, db: PageWriter) -> set[str]:
    return _touch(event, db, power_state=event.power_state)


_HOST_FIELDS = ("hypervisor_type", "hypervisor_version", "hypervisor_hostname", "cpu_info",
                "vcpus", "memory_mb", "local_gb", "cpu_allocation_ratio",
                "ram_allocation_ratio", "disk_allocation_ratio", "reserved_host_memory_mb",
                "reserved_host_disk_mb", "reserved_host_cpus", "cell")
_REPORT = (f"INSERT INTO hosts (host, {', '.join(_HOST_FIELDS)}, updated_at) "
           f"VALUES (?, {', '.join('?' for _ in _HOST_FIELDS)}, ?) ON CONFLICT(host) DO UPDATE "
           "SET " + ", ".join(f"{f} = excluded.{f}" for f in (*_HOST_FIELDS, "updated_at")))


@apply.register
def _(event: HostResourcesReported, db: PageWriter) -> set[str]:
    db.execute(_REPORT, (event.host, *(getattr(event, f) for f in _HOST_FIELDS), db.ts))
    return {event.host}


@apply.register
def _(event: ResourcesClaimed, db: PageWriter) -> set[str]:
    db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
               (event.host, event.instance_uuid, event.vcpus, event.memory_mb, event.disk_gb))
    return {event.host}


@apply.register
def _(event: ClaimReleased, db: PageWriter) -> set[str]:
    db.execute("DELETE FROM claims WHERE host = ? AND instance_uuid = ?",
               (event.host, event.instance_uuid))
    return {event.host}


@apply.register
def _(event: HostEnabledSet, db: PageWriter) -> set[str]:
    db.execute("UPDATE hosts SET enabled = ?, disabled_reason = ? WHERE host = ?",
               (int(event.enabled), event.reason if not event.enabled else "", event.host))
    return set()


@apply.register
def _(event: MaintenanceModeSet, db: PageWriter) -> set[str]:
    db.execute("UPDATE hosts SET maintenance = ? WHERE host = ?",
               (int(event.maintenance), event.host))
    return set()


@apply.register
def _(event: AggregateHostAdded, db: PageWriter) -> set[str]:
    db.execute("INSERT OR REPLACE INTO host_aggregates VALUES (?, ?, ?)",
               (event.host, event.aggregate, _json.encode(event.metadata).decode()))
    return set()


@apply.register
def _(event: AggregateHostRemoved, db: PageWriter) -> set[str]:
    db.execute("DELETE FROM host_aggregates WHERE host = ? AND aggregate = ?",
               (event.host, event.aggregate))
    return set()


# -- moves -----------------------------------------------------------------------------------
def _migration_json(db: PageWriter, migration_id: str) -> str | None:
    row = db.execute("SELECT id, migration_type, source, dest, status FROM migrations "
                     "WHERE id = ?", (migration_id,)).fetchone()
    if row is None:
        return None
    return _json.encode(dict(zip(("id", "migration_type", "source", "dest", "status"),
                                 row, strict=True))).decode()


def _migration_status(db: PageWriter, migration_id: str, status: str) -> str | None:
    db.execute("UPDATE migrations SET status = ?, updated_at = ? WHERE id = ?",
               (status, db.ts, migration_id))
    return _migration_json(db, migration_id)


@apply.register
def _(event: mv.MigrationCreated, db: PageWriter) -> set[str]:
    m = event.migration
    db.execute("INSERT OR REPLACE INTO migrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (m.id, db.uuid, m.migration_type.value, m.source, m.dest,
                m.status.value, _json.encode(m.old_flavor).decode(),
                _json.encode(m.new_flavor).decode(), db.ts, db.ts))
    return _touch(event, db, migration=_migration_json(db, m.id)) | {m.dest}


@apply.register
def _(event: mv.MigrationStatusChanged, db: PageWriter) -> set[str]:
    return _touch(event, db, migration=_migration_status(db, event.migration_id,
                                                         event.status))


@apply.register
def _(event: mv.MoveFinished, db: PageWriter) -> set[str]:
    touched = apply.dispatch(e.Completed)(event, db)
    columns: dict[str, Any] = {"host": event.owner, "migration": _migration_status(
        db, event.migration_id, type(event).final_status.value)}
    if isinstance(event, mv.Resized | mv.ResizeReverted):
        f = event.flavor
        columns |= {"flavor": _json.encode(f).decode(), "vcpus": f.vcpus,
                    "memory_mb": f.memory_mb,
                    "disk_gb": f.root_gb + f.ephemeral_gb + f.swap / 1024}
    return touched | _touch(event, db, **columns) | {event.owner}


@apply.register
def _(event: ClaimMoved, db: PageWriter) -> set[str]:
    db.execute("UPDATE claims SET instance_uuid = ? WHERE host = ? AND instance_uuid = ?",
               (event.to_consumer, event.host, event.from_consumer))
    return {event.host}
