"""The read models: instances, hosts, instance actions, faults, in one SQLite file.

Written only by the projector (one transaction per page of events, with its position); read
by queries and the audit. ``api_status`` is a SQL function so the status column is always
derived from vm_state and task_state exactly as Nova's API does.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from compute.domain.states import TaskState, VmState, api_status
from compute.events.cells import DEFAULT_CELL

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
  uuid TEXT PRIMARY KEY, host TEXT NOT NULL, name TEXT NOT NULL, flavor TEXT NOT NULL,
  vcpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL, disk_gb REAL NOT NULL,
  image_ref TEXT NOT NULL, metadata TEXT NOT NULL,
  vm_state TEXT NOT NULL, task_state TEXT, power_state INTEGER NOT NULL, status TEXT NOT NULL,
  launched_at TEXT, terminated_at TEXT, deleted_at TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  version INTEGER NOT NULL,
  fault_code INTEGER, fault_message TEXT, fault_details TEXT, fault_at TEXT,
  volumes TEXT NOT NULL DEFAULT '{}', interfaces TEXT NOT NULL DEFAULT '{}',
  security_groups TEXT NOT NULL DEFAULT '[]', security_rules TEXT NOT NULL DEFAULT '[]',
  migration TEXT);
DROP INDEX IF EXISTS instances_host;
CREATE INDEX IF NOT EXISTS instances_host_state ON instances(host, vm_state, task_state);
CREATE INDEX IF NOT EXISTS instances_created ON instances(created_at, uuid);
CREATE TABLE IF NOT EXISTS hosts (
  host TEXT PRIMARY KEY, hypervisor_type TEXT, hypervisor_version INTEGER,
  hypervisor_hostname TEXT, cpu_info TEXT,
  vcpus INTEGER, memory_mb INTEGER, local_gb INTEGER,
  cpu_allocation_ratio REAL, ram_allocation_ratio REAL, disk_allocation_ratio REAL,
  reserved_host_memory_mb INTEGER, reserved_host_disk_mb INTEGER, reserved_host_cpus INTEGER,
  vcpus_used INTEGER DEFAULT 0, memory_mb_used INTEGER DEFAULT 0, local_gb_used REAL DEFAULT 0,
  free_ram_mb INTEGER DEFAULT 0, free_disk_gb REAL DEFAULT 0,
  running_vms INTEGER DEFAULT 0, current_workload INTEGER DEFAULT 0, updated_at TEXT,
  enabled INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT NOT NULL DEFAULT '',
  maintenance INTEGER NOT NULL DEFAULT 0, stats TEXT NOT NULL DEFAULT '{}',
  cell TEXT NOT NULL DEFAULT 'cell1');
CREATE TABLE IF NOT EXISTS host_aggregates (
  host TEXT NOT NULL, aggregate TEXT NOT NULL, metadata TEXT NOT NULL,
  PRIMARY KEY (host, aggregate));
CREATE TABLE IF NOT EXISTS instance_actions (
  uuid TEXT NOT NULL, request_id TEXT NOT NULL, action TEXT NOT NULL,
  start_time TEXT NOT NULL, message TEXT, PRIMARY KEY (uuid, request_id));
CREATE TABLE IF NOT EXISTS instance_action_events (
  uuid TEXT NOT NULL, request_id TEXT NOT NULL, event TEXT NOT NULL, start_time TEXT NOT NULL,
  finish_time TEXT, result TEXT, details TEXT, host TEXT,
  PRIMARY KEY (uuid, request_id, event));
CREATE TABLE IF NOT EXISTS faults (
  uuid TEXT NOT NULL, version INTEGER NOT NULL, code INTEGER NOT NULL, message TEXT NOT NULL,
  details TEXT NOT NULL, host TEXT NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (uuid, version));
CREATE TABLE IF NOT EXISTS claims (
  host TEXT NOT NULL, instance_uuid TEXT NOT NULL, vcpus INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL, disk_gb REAL NOT NULL, PRIMARY KEY (host, instance_uuid));
CREATE INDEX IF NOT EXISTS claims_usage ON claims(host, instance_uuid, vcpus, memory_mb,
  disk_gb);
CREATE TABLE IF NOT EXISTS images (
  image_id TEXT PRIMARY KEY, uuid TEXT NOT NULL, name TEXT NOT NULL, image_type TEXT NOT NULL,
  backup_type TEXT, created_at TEXT NOT NULL, deleted_at TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS migrations (
  id TEXT PRIMARY KEY, uuid TEXT NOT NULL, migration_type TEXT NOT NULL,
  source TEXT NOT NULL, dest TEXT NOT NULL, status TEXT NOT NULL,
  old_flavor TEXT NOT NULL, new_flavor TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS migrations_uuid ON migrations(uuid, created_at);
CREATE TABLE IF NOT EXISTS tracking (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
""" + """
CREATE TABLE IF NOT EXISTS host_counts (
  host TEXT NOT NULL, vm_state TEXT NOT NULL, task_state TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (host, vm_state, task_state));
CREATE TRIGGER IF NOT EXISTS host_counts_insert AFTER INSERT ON instances BEGIN
  INSERT INTO host_counts VALUES (NEW.host, NEW.vm_state, COALESCE(NEW.task_state, ''), 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS host_counts_delete AFTER DELETE ON instances BEGIN
  UPDATE host_counts SET n = n - 1 WHERE host = OLD.host AND vm_state = OLD.vm_state
    AND task_state = COALESCE(OLD.task_state, '');
END;
CREATE TRIGGER IF NOT EXISTS host_counts_update AFTER UPDATE OF host, vm_state, task_state
  ON instances WHEN OLD.host IS NOT NEW.host OR OLD.vm_state IS NOT NEW.vm_state
    OR OLD.task_state IS NOT NEW.task_state BEGIN
  UPDATE host_counts SET n = n - 1 WHERE host = OLD.host AND vm_state = OLD.vm_state
    AND task_state = COALESCE(OLD.task_state, '');
  INSERT INTO host_counts VALUES (NEW.host, NEW.vm_state, COALESCE(NEW.task_state, ''), 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS host_claims (
  host TEXT PRIMARY KEY, vcpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL,
  disk_mb INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS host_claims_insert AFTER INSERT ON claims BEGIN
  INSERT INTO host_claims VALUES (NEW.host, NEW.vcpus, NEW.memory_mb,
                                  CAST(ROUND(NEW.disk_gb * 1024) AS INTEGER))
    ON CONFLICT DO UPDATE SET vcpus = vcpus + excluded.vcpus,
      memory_mb = memory_mb + excluded.memory_mb, disk_mb = disk_mb + excluded.disk_mb;
END;
CREATE TRIGGER IF NOT EXISTS host_claims_delete AFTER DELETE ON claims BEGIN
  UPDATE host_claims SET vcpus = vcpus - OLD.vcpus, memory_mb = memory_mb - OLD.memory_mb,
    disk_mb = disk_mb - CAST(ROUND(OLD.disk_gb * 1024) AS INTEGER) WHERE host = OLD.host;
END;
CREATE TRIGGER IF NOT EXISTS host_claims_update AFTER UPDATE OF host, vcpus, memory_mb, disk_gb
  ON claims BEGIN
  UPDATE host_claims SET vcpus = vcpus - OLD.vcpus, memory_mb = memory_mb - OLD.memory_mb,
    disk_mb = disk_mb - CAST(ROUND(OLD.disk_gb * 1024) AS INTEGER) WHERE host = OLD.host;
  INSERT INTO host_claims VALUES (NEW.host, NEW.vcpus, NEW.memory_mb,
                                  CAST(ROUND(NEW.disk_gb * 1024) AS INTEGER))
    ON CONFLICT DO UPDATE SET vcpus = vcpus + excluded.vcpus,
      memory_mb = memory_mb + excluded.memory_mb, disk_mb = disk_mb + excluded.disk_mb;
END;
"""
"""The host counters: a host's instances per (vm_state, task_state; '' for none) and the sum
of its claims, kept by triggers in the transaction that changes a row. Usage and stats are
recomputed per page and host; read from the instances and claims they were two scans of
every instance of the host (2.8 ms per page with 10,000 instances, a third of the outbox
worker's store thread in bench/throughput.py). ``recursive_triggers`` makes the
``INSERT OR REPLACE`` of a row fire the delete trigger of the row it replaces."""

SCHEMA_VERSION = 4
"""Bumped when a view's shape changes: an older view file is dropped and rebuilt from the
log (views are disposable; the log is the truth)."""

VIEW_TABLES = ("instances", "hosts", "instance_actions", "instance_action_events", "faults",
               "claims", "host_aggregates", "images", "migrations")
"""Tables compared by the audit (tracking is the position, compared separately)."""
COUNTER_TABLES = ("host_counts", "host_claims")
"""Derived by triggers from the view tables (``SCHEMA``)."""


class FaultView(msgspec.Struct):
    code: int
    message: str
    details: str
    created_at: str
    host: str | None = None


class InstanceView(msgspec.Struct):
    uuid: str
    host: str
    name: str
    flavor: dict[str, Any]
    image_ref: str
    metadata: dict[str, str]
    status: str
    vm_state: str
    task_state: str | None
    power_state: int
    launched_at: str | None
    terminated_at: str | None
    deleted_at: str | None
    created_at: str
    updated_at: str
    version: int
    volumes: dict[str, dict[str, Any]] = {}   # device -> {volume_id, path, state}
    interfaces: dict[str, dict[str, Any]] = {}   # port -> {network_id, mac, addresses}
    security_groups: list[str] = []
    security_rules: list[dict[str, Any]] = []    # the rules last rendered for the instance
    fault: FaultView | None = None     # shown only when status is ERROR or DELETED (Nova)
    migration: dict[str, Any] | None = None      # the last move: id, type, hosts, status


class MigrationView(msgspec.Struct):
    """Nova's migrations row (os-migrations)."""

    id: str
    uuid: str
    migration_type: str
    source: str
    dest: str
    status: str
    old_flavor: dict[str, Any]
    new_flavor: dict[str, Any]
    created_at: str
    updated_at: str


class ImageView(msgspec.Struct):
    image_id: str
    uuid: str
    name: str
    image_type: str
    backup_type: str | None
    created_at: str
    deleted_at: str | None
    reason: str | None


class ActionEventView(msgspec.Struct):
    event: str
    start_time: str
    finish_time: str | None
    result: str | None
    details: str | None
    host: str | None


class ActionView(msgspec.Struct):
    action: str
    request_id: str
    start_time: str
    message: str | None
    events: list[ActionEventView]


class HostView(msgspec.Struct):
    host: str
    hypervisor_type: str
    hypervisor_version: int
    hypervisor_hostname: str
    cpu_info: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: float
    free_ram_mb: int
    free_disk_gb: float
    running_vms: int
    current_workload: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    reserved_host_memory_mb: int
    reserved_host_disk_mb: int
    reserved_host_cpus: int
    enabled: bool
    disabled_reason: str
    maintenance: bool
    aggregates: dict[str, dict[str, str]]
    stats: dict[str, int]
    """Nova's compute stats: num_instances, num_vm_<state>, num_task_<state>, io_workload."""
    cell: str = DEFAULT_CELL
    """The host's cell (``COMPUTE_CELL``, from its resources report; compute/domain/cells.py)."""


def _status(vm_state: str, task_state: str | None) -> str:
    return api_status(VmState(vm_state), TaskState(task_state) if task_state else None)


class ViewStore:
    """One SQLite connection guarded by a lock: writes are one short transaction per page,
    reads are point lookups, so a lock is simpler than a pool and fast enough."""

    def __init__(self, path: str, *, scratch: bool = False) -> None:
        """``scratch``: a throw-away store (the audit's rebuild) that needs no durability:
        rollback journal in memory, no syncs."""
        self.path = path
        self.scratch = scratch
        uri = path.startswith("file:")
        self._conn = sqlite3.connect(path, uri=uri, check_same_thread=False,
                                     isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.create_function("api_status", 2, _status, deterministic=True)
        self._conn.execute("PRAGMA recursive_triggers = ON")     # (see SCHEMA's counters)
        self._lock = threading.RLock()
        with self._lock:
            if scratch:     # a rebuild's working set (views of a million events) in memory
                # 16 KiB pages (a new file only): shallower indexes of random uuids, fewer
                # pages written per commit
                self._conn.execute("PRAGMA page_size=16384")
                self._conn.execute("PRAGMA journal_mode=MEMORY")
                self._conn.execute("PRAGMA synchronous=OFF")
                self._conn.execute("PRAGMA cache_size=-262144")
                self._conn.execute("PRAGMA temp_store=MEMORY")
            else:
                if not uri and path != ":memory:":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            if self._conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for table in (*VIEW_TABLES, *COUNTER_TABLES, "tracking"):
                    self._conn.execute(f"DROP TABLE IF EXISTS {table}")
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _all(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- queries ---------------------------------------------------------------------------
    def position(self, name: str) -> int:
        rows = self._all("SELECT position FROM tracking WHERE name = ?", name)
        return rows[0]["position"] if rows else 0

    def list_instances(self, host: str | None = None, vm_state: str | None = None,
                       include_deleted: bool = False, *, after: list[str] | None = None,
                       limit: int | None = None) -> list[InstanceView]:
        """In (created_at, uuid) order; ``after`` that key and at most ``limit`` (a page:
        keyset paging, so a page costs the same at the 10,000th instance as at the first,
        and an instance created while pages are read is never seen twice)."""
        sql, params = "SELECT * FROM instances WHERE 1=1", []
        if host:
            sql, params = sql + " AND host = ?", [*params, host]
        if vm_state:
            sql, params = sql + " AND vm_state = ?", [*params, vm_state]
        elif not include_deleted:
            sql += " AND vm_state != 'deleted'"
        sql, params = _page(sql, params, ("created_at", "uuid"), after, limit)
        return [_instance(r) for r in self._all(sql, *params)]

    def get_instance(self, uuid: str) -> InstanceView | None:
        rows = self._all("SELECT * FROM instances WHERE uuid = ?", uuid)
        return _instance(rows[0]) if rows else None

    def list_actions(self, uuid: str, *, after: list[str] | None = None,
                     limit: int | None = None) -> list[ActionView]:
        """Nova's instance actions of one instance, in (start_time, request_id) order."""
        sql, params = _page("SELECT * FROM instance_actions WHERE uuid = ?", [uuid],
                            ("start_time", "request_id"), after, limit)
        actions = self._all(sql, *params)
        if not actions:
            return []
        events: dict[str, list[ActionEventView]] = {}
        ids = [r["request_id"] for r in actions]
        for r in self._all("SELECT * FROM instance_action_events WHERE uuid = ? AND "
                           f"request_id IN ({','.join('?' * len(ids))}) "
                           "ORDER BY start_time, event", uuid, *ids):
            events.setdefault(r["request_id"], []).append(ActionEventView(
                event=r["event"], start_time=r["start_time"], finish_time=r["finish_time"],
                result=r["result"], details=r["details"], host=r["host"]))
        return [ActionView(action=r["action"], request_id=r["request_id"],
                           start_time=r["start_time"], message=r["message"],
                           events=events.get(r["request_id"], []))
                for r in actions]

    def list_faults(self, uuid: str) -> list[FaultView]:
        return [FaultView(code=r["code"], message=r["message"], details=r["details"],
                          created_at=r["created_at"], host=r["host"])
                for r in self._all("SELECT * FROM faults WHERE uuid = ? ORDER BY version DESC",
                                   uuid)]

    def list_images(self, uuid: str | None = None, include_deleted: bool = False, *,
                    after: list[str] | None = None, limit: int | None = None
                    ) -> list[ImageView]:
        sql, params = "SELECT * FROM images WHERE 1=1", []
        if uuid:
            sql, params = sql + " AND uuid = ?", [uuid]
        if not include_deleted:
            sql += " AND deleted_at IS NULL"
        sql, params = _page(sql, params, ("created_at", "image_id"), after, limit)
        return [ImageView(**dict(r)) for r in self._all(sql, *params)]

    def list_migrations(self, uuid: str | None = None, host: str | None = None, *,
                        after: list[str] | None = None, limit: int | None = None
                        ) -> list[MigrationView]:
        sql, params = "SELECT * FROM migrations WHERE 1=1", []
        if uuid:
            sql, params = sql + " AND uuid = ?", [uuid]
        if host:
            sql, params = sql + " AND (source = ? OR dest = ?)", [*params, host, host]
        sql, params = _page(sql, params, ("created_at", "id"), after, limit)
        return [MigrationView(**{**dict(r), "old_flavor": msgspec.json.decode(r["old_flavor"]),
                                 "new_flavor": msgspec.json.decode(r["new_flavor"])})
                for r in self._all(sql, *params)]

    def list_hosts(self, *, after: list[str] | None = None, limit: int | None = None
                   ) -> list[HostView]:
        sql, params = _page("SELECT * FROM hosts WHERE 1=1", [], ("host",), after, limit)
        return [self._host(r) for r in self._all(sql, *params)]

    def get_host(self, host: str) -> HostView | None:
        rows = self._all("SELECT * FROM hosts WHERE host = ?", host)
        return self._host(rows[0]) if rows else None

    def _host(self, r: sqlite3.Row) -> HostView:
        aggregates = {a["aggregate"]: msgspec.json.decode(a["metadata"]) for a in self._all(
            "SELECT * FROM host_aggregates WHERE host = ? ORDER BY aggregate", r["host"])}
        plain = {f: r[f] for f in HostView.__struct_fields__
                 if f not in ("aggregates", "stats", "enabled", "maintenance")}
        return HostView(**plain, enabled=bool(r["enabled"]), maintenance=bool(r["maintenance"]),
                        aggregates=aggregates, stats=msgspec.json.decode(r["stats"]))

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every view row in a deterministic order, for comparing two view stores."""
        return {t: [tuple(r) for r in self._all(f"SELECT * FROM {t} ORDER BY 1, 2")]
                for t in VIEW_TABLES}


def _page(sql: str, params: list[Any], order: tuple[str, ...], after: list[str] | None,
          limit: int | None) -> tuple[str, list[Any]]:
    """``sql`` ordered by ``order`` (a unique key), from after the key ``after`` (a row
    value comparison, which the key's index serves), at most ``limit`` rows."""
    columns = ", ".join(order)
    if after is not None:
        if len(after) != len(order):
            raise ValueError(f"a key of {len(order)} values ({columns}), not {len(after)}")
        sql += f" AND ({columns}) > ({', '.join('?' * len(order))})"
        params = [*params, *after]
    sql += f" ORDER BY {columns}"
    if limit is not None:
        sql, params = sql + " LIMIT ?", [*params, limit]
    return sql, params


def _instance(r: sqlite3.Row) -> InstanceView:
    fault = None
    if r["fault_code"] is not None and r["status"] in ("ERROR", "DELETED"):
        fault = FaultView(code=r["fault_code"], message=r["fault_message"],
                          details=r["fault_details"], created_at=r["fault_at"])
    return InstanceView(
        uuid=r["uuid"], host=r["host"], name=r["name"], flavor=msgspec.json.decode(r["flavor"]),
        image_ref=r["image_ref"], metadata=msgspec.json.decode(r["metadata"]),
        status=r["status"], vm_state=r["vm_state"], task_state=r["task_state"],
        power_state=r["power_state"], launched_at=r["launched_at"],
        terminated_at=r["terminated_at"], deleted_at=r["deleted_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"], version=r["version"],
        volumes=msgspec.json.decode(r["volumes"]),
        interfaces=msgspec.json.decode(r["interfaces"]),
        security_groups=msgspec.json.decode(r["security_groups"]),
        security_rules=msgspec.json.decode(r["security_rules"]), fault=fault,
        migration=msgspec.json.decode(r["migration"]) if r["migration"] else None)

