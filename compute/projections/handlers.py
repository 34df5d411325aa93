"""How each event changes the views: one handler per event type, applied to a page.

A handler writes through the page's ``PageWriter`` (``db``) and returns the hosts whose
usage must be recomputed at the end of the page.
"""

from __future__ import annotations

import sqlite3
from functools import singledispatch
from typing import Any

import msgspec

from compute.events import devices as d
from compute.events import lifecycle as e
from compute.events import moves as mv
from compute.events.host import (
    AggregateHostAdded,
    AggregateHostRemoved,
    ClaimReleased,
    HostEnabledSet,
    HostResourcesReported,
    MaintenanceModeSet,
    ResourcesClaimed,
)

_json = msgspec.json.Encoder()


def _ts(event: Any) -> str:
    return event.timestamp.isoformat()


@singledispatch
def apply(event: Any, db: sqlite3.Connection) -> set[str]:
    """Apply one event to the views; returns the hosts whose usage must be recomputed."""
    return set()


@apply.register
def _(event: e.Event, db: sqlite3.Connection) -> set[str]:
    return _touch(event, db)          # any other instance event: version and time


def _touch(event: e.Event, db: Any, **columns: Any) -> set[str]:
    """The instance row after ``event``: its version, time and ``columns`` (its status is
    derived when the row is written)."""
    db.touch(str(event.originator_id), version=event.originator_version,
             updated_at=_ts(event), **columns)
    return {event.host}



def _start_action(event: Any, db: sqlite3.Connection) -> None:
    uuid = str(event.originator_id)
    db.execute("INSERT OR IGNORE INTO instance_actions VALUES (?, ?, ?, ?, NULL)",
               (uuid, event.command_id, event.action, _ts(event)))
    db.execute("INSERT OR IGNORE INTO instance_action_events "
               "VALUES (?, ?, ?, ?, NULL, NULL, NULL, ?)",
               (uuid, event.command_id, event.action_event, _ts(event), event.host))


def _finish_action(event: Any, db: sqlite3.Connection, result: str,
                   details: str | None) -> None:
    uuid = str(event.originator_id)
    db.execute("UPDATE instance_action_events SET finish_time = ?, result = ?, details = ? "
               "WHERE uuid = ? AND request_id = ? AND event = ?",
               (_ts(event), result, details, uuid, event.command_id, event.action_event))
    if result == "Error":
        db.execute("UPDATE instance_actions SET message = 'Error' "
                   "WHERE uuid = ? AND request_id = ?", (uuid, event.command_id))


@apply.register
def _(event: e.Created, db: sqlite3.Connection) -> set[str]:
    f = event.flavor
    db.execute(
        "INSERT OR REPLACE INTO instances (uuid, host, name, flavor, vcpus, memory_mb, disk_gb,"
        " image_ref, metadata, vm_state, task_state, power_state, status, created_at,"
        " updated_at, version, security_groups) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'building',"
        " 'scheduling', 0, 'BUILD', ?, ?, ?, ?)",
        (str(event.originator_id), event.host, event.name, _json.encode(f).decode(), f.vcpus,
         f.memory_mb, f.root_gb + f.ephemeral_gb + f.swap / 1024, event.image_ref,
         _json.encode(event.metadata).decode(), _ts(event), _ts(event),
         event.originator_version, _json.encode(event.security_groups).decode()))
    _start_action(event, db)
    return {event.host}


@apply.register
def _(event: e.ActionStarted, db: sqlite3.Connection) -> set[str]:
    _start_action(event, db)
    return _touch(event, db, task_state=event.task_state.value if event.task_state else None)


@apply.register
def _(event: e.TaskStateChanged, db: sqlite3.Connection) -> set[str]:
    return _touch(event, db, task_state=event.task_state.value if event.task_state else None,
                  vm_state=event.vm_state.value)


@apply.register
def _(event: e.Completed, db: sqlite3.Connection) -> set[str]:
    extra: dict[str, Any] = {}
    if isinstance(event, (e.Spawned, e.Rebuilt)):
        extra["launched_at"] = event.launched_at.isoformat()
    if isinstance(event, e.Rebuilt):
        extra["image_ref"] = event.image_ref
    if isinstance(event, e.Terminated):
        extra["terminated_at"] = event.terminated_at.isoformat()
    if isinstance(event, e.SoftDeleted):
        extra["deleted_at"] = event.deleted_at.isoformat()
    if isinstance(event, e.Restored):
        extra["deleted_at"] = None
    if isinstance(event, e.MetadataChanged):
        extra["metadata"] = _json.encode(event.metadata).decode()
    if isinstance(event, (d.BlockDeviceReserved, d.VolumeAttached, d.VolumeDetached,
                          d.VolumeConnectionRemoved)):
        extra["volumes"] = _volumes(event, db)
    if isinstance(event, (d.InterfaceAttached, d.InterfaceDetached, d.FixedIpAdded,
                          d.FixedIpRemoved)):
        extra["interfaces"] = _interfaces(event, db)
    if isinstance(event, d.SecurityRulesApplied):
        extra["security_rules"] = _json.encode(event.rules).decode()
    if isinstance(event, e.Snapshotted):
        db.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                   (event.image_id, str(event.originator_id), event.name, event.image_type,
                    event.backup_type, _ts(event)))
    _finish_action(event, db, "Success", None)
    return _touch(event, db, vm_state=event.vm_state.value, task_state=None,
                  power_state=int(event.power_state), **extra)


def _interfaces(event: Any, db: sqlite3.Connection) -> str:
    row = db.execute("SELECT interfaces FROM instances WHERE uuid = ?",
                     (str(event.originator_id),)).fetchone()
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


def _volumes(event: Any, db: sqlite3.Connection) -> str:
    """The instance's block devices after a volume event, as the view's JSON column."""
    row = db.execute("SELECT volumes FROM instances WHERE uuid = ?",
                     (str(event.originator_id),)).fetchone()
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
def _(event: e.FaultRecorded, db: sqlite3.Connection) -> set[str]:
    db.execute("INSERT OR REPLACE INTO faults VALUES (?, ?, ?, ?, ?, ?, ?)",
               (str(event.originator_id), event.originator_version, event.code, event.message,
                event.details, event.host, _ts(event)))
    return _touch(event, db, fault_code=event.code, fault_message=event.message,
                  fault_details=event.details, fault_at=_ts(event))


@apply.register
def _(event: e.TaskReverted, db: sqlite3.Connection) -> set[str]:
    row = db.execute("SELECT fault_message FROM instances WHERE uuid = ?",
                     (str(event.originator_id),)).fetchone()
    _finish_action(event, db, "Error", row[0] if row else None)
    return _touch(event, db, vm_state=event.vm_state.value, task_state=None,
                  power_state=int(event.power_state))


@apply.register
def _(event: e.Recovered, db: sqlite3.Connection) -> set[str]:
    if event.result is not None and event.action_event is not None:
        _finish_action(event, db, event.result,
                       None if event.result == "Success" else event.reason)
    return _touch(event, db, vm_state=event.vm_state.value,
                  task_state=event.task_state.value if event.task_state else None,
                  power_state=int(event.power_state))


@apply.register
def _(event: e.ImageDeleted, db: sqlite3.Connection) -> set[str]:
    db.execute("UPDATE images SET deleted_at = ?, reason = ? WHERE image_id = ?",
               (_ts(event), event.reason, event.image_id))
    return _touch(event, db)


@apply.register
def _(event: e.PowerStateChanged, db: sqlite3.Connection) -> set[str]:
    return _touch(event, db, power_state=int(event.power_state))


@apply.register
def _(event: HostResourcesReported, db: sqlite3.Connection) -> set[str]:
    fields = ("hypervisor_type", "hypervisor_version", "hypervisor_hostname", "cpu_info",
              "vcpus", "memory_mb", "local_gb", "cpu_allocation_ratio", "ram_allocation_ratio",
              "disk_allocation_ratio", "reserved_host_memory_mb", "reserved_host_disk_mb",
              "reserved_host_cpus")
    db.execute(
        f"INSERT INTO hosts (host, {', '.join(fields)}, updated_at) "
        f"VALUES (?, {', '.join('?' for _ in fields)}, ?) ON CONFLICT(host) DO UPDATE SET "
        + ", ".join(f"{f} = excluded.{f}" for f in (*fields, "updated_at")),
        (event.host, *(getattr(event, f) for f in fields), _ts(event)))
    return {event.host}


@apply.register
def _(event: ResourcesClaimed, db: sqlite3.Connection) -> set[str]:
    db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
               (event.host, event.instance_uuid, event.vcpus, event.memory_mb, event.disk_gb))
    return {event.host}


@apply.register
def _(event: ClaimReleased, db: sqlite3.Connection) -> set[str]:
    db.execute("DELETE FROM claims WHERE host = ? AND instance_uuid = ?",
               (event.host, event.instance_uuid))
    return {event.host}


@apply.register
def _(event: HostEnabledSet, db: sqlite3.Connection) -> set[str]:
    db.execute("UPDATE hosts SET enabled = ?, disabled_reason = ? WHERE host = ?",
               (int(event.enabled), event.reason if not event.enabled else "", event.host))
    return set()


@apply.register
def _(event: MaintenanceModeSet, db: sqlite3.Connection) -> set[str]:
    db.execute("UPDATE hosts SET maintenance = ? WHERE host = ?",
               (int(event.maintenance), event.host))
    return set()


@apply.register
def _(event: AggregateHostAdded, db: sqlite3.Connection) -> set[str]:
    db.execute("INSERT OR REPLACE INTO host_aggregates VALUES (?, ?, ?)",
               (event.host, event.aggregate, _json.encode(event.metadata).decode()))
    return set()


@apply.register
def _(event: AggregateHostRemoved, db: sqlite3.Connection) -> set[str]:
    db.execute("DELETE FROM host_aggregates WHERE host = ? AND aggregate = ?",
               (event.host, event.aggregate))
    return set()



# -- moves -----------------------------------------------------------------------------------
def _migration_json(db: sqlite3.Connection, migration_id: str) -> str | None:
    row = db.execute("SELECT id, migration_type, source, dest, status FROM migrations "
                     "WHERE id = ?", (migration_id,)).fetchone()
    if row is None:
        return None
    return _json.encode(dict(zip(("id", "migration_type", "source", "dest", "status"),
                                 row, strict=True))).decode()


def _migration_status(event: Any, db: sqlite3.Connection, migration_id: str,
                      status: str) -> str | None:
    db.execute("UPDATE migrations SET status = ?, updated_at = ? WHERE id = ?",
               (status, _ts(event), migration_id))
    return _migration_json(db, migration_id)


@apply.register
def _(event: mv.MigrationCreated, db: sqlite3.Connection) -> set[str]:
    m = event.migration
    db.execute("INSERT OR REPLACE INTO migrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (m.id, str(event.originator_id), m.migration_type.value, m.source, m.dest,
                m.status.value, _json.encode(m.old_flavor).decode(),
                _json.encode(m.new_flavor).decode(), _ts(event), _ts(event)))
    return _touch(event, db, migration=_migration_json(db, m.id)) | {m.dest}


@apply.register
def _(event: mv.MigrationStatusChanged, db: sqlite3.Connection) -> set[str]:
    return _touch(event, db, migration=_migration_status(event, db, event.migration_id,
                                                         event.status.value))


@apply.register
def _(event: mv.MoveFinished, db: sqlite3.Connection) -> set[str]:
    touched = apply.dispatch(e.Completed)(event, db)
    columns: dict[str, Any] = {"host": event.owner, "migration": _migration_status(
        event, db, event.migration_id, type(event).final_status.value)}
    if isinstance(event, mv.Resized | mv.ResizeReverted):
        f = event.flavor
        columns |= {"flavor": _json.encode(f).decode(), "vcpus": f.vcpus,
                    "memory_mb": f.memory_mb,
                    "disk_gb": f.root_gb + f.ephemeral_gb + f.swap / 1024}
    return touched | _touch(event, db, **columns) | {event.owner}


@apply.register
def _(event: mv.ClaimMoved, db: sqlite3.Connection) -> set[str]:
    db.execute("UPDATE claims SET instance_uuid = ? WHERE host = ? AND instance_uuid = ?",
               (event.to_consumer, event.host, event.from_consumer))
    return {event.host}
