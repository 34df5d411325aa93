"""The event store: an eventsourcing Application on SQLite (default) or PostgreSQL.

``open_store("var/compute.sqlite")`` or ``open_store("postgres://user:pw@host:5432/db")``;
a PostgreSQL URL may name a schema (``?schema=compute``), so deployments (and tests) can share
one database; otherwise ``COMPUTE_POSTGRES_SCHEMA`` or the server's default applies.
The application is used only as the store (recorders, mapper, repository); writes go through
the group-commit writer, never ``app.save`` per command.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import TopicError, get_topic

from compute.domain.host import Host, host_id
from compute.domain.instance import Instance
from compute.store.mapper import MsgspecMapper
from compute.store.pgcommit import create_function
from compute.store.schema_lock import CREATE_LOCK

DEFAULT_STORE = "var/compute.sqlite"
PG_POOL_SIZE = 1
"""PostgreSQL connections each process keeps open (``COMPUTE_PG_POOL_SIZE``, or
``?pool_size=`` in the store URL). The library's default, 5 kept + 10 overflow, made a host
and its outbox worker hold 16 connections: the 7th host did not start on a server's default
``max_connections=100``. A process's store work is a few short transactions per group
commit (one writer thread, the followers in turn), so one connection kept and one more for
a moment is enough (README Scale-out: the budget)."""
PG_MAX_OVERFLOW = 1
"""Connections a process may open beyond ``PG_POOL_SIZE`` for a moment, closed again
(``COMPUTE_PG_MAX_OVERFLOW`` or ``?max_overflow=``)."""


class ComputeStore(Application[UUID]):
    """Event store of one deployment (all hosts may share it on PostgreSQL)."""

    name = "Compute"
    is_snapshotting_enabled = True     # the instance actors write them (instance_snapshot.py)

    def get_instance(self, uuid: UUID, version: int | None = None) -> Instance | None:
        """Rebuild an instance (as it was at ``version``) from its newest snapshot and the
        events after it, or None if it never existed. A snapshot this code cannot read (its
        shape changed since) is passed over: the events alone are folded."""
        try:
            return self.repository.get(uuid, version=version, projector_func=_project)
        except AggregateNotFoundError:
            return None
        except (MapperDeserialisationError, TopicError):
            inst = _project(None, self.events.get(uuid, lte=version))
            if inst is None:
                raise
            return inst

    def save_snapshot(self, snapshot: StoredEvent) -> None:
        """Store an encoded snapshot (one already stored for that version is kept)."""
        assert self.snapshots is not None
        with contextlib.suppress(IntegrityError):
            self.snapshots.recorder.insert_events([snapshot])

    def close(self, wait: float = 5.0) -> None:
        """Close once the calls still running on other threads are done (a task cancelled
        while its thread reads the store must not have the connection closed under it:
        SQLite crashes the process then)."""
        pool = getattr(getattr(self.factory, "datastore", None), "pool", None)
        deadline = time.monotonic() + wait
        while getattr(pool, "num_in_use", 0) and time.monotonic() < deadline:   # SQLite's
            time.sleep(0.01)
        super().close()

    def get_host(self, host: str) -> Host:
        """The host's aggregate, or a new empty one (version 0) if it never reported."""
        try:
            return self.repository.get(host_id(host), projector_func=_project)
        except AggregateNotFoundError:
            return Host.register(host)


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """A plain fold: skips the library's per-event runtime-Protocol checks (measured: most of a
    fold's time)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def store_env(url: str) -> dict[str, str]:
    """eventsourcing settings for a store URL (a path or sqlite:// URL, or postgres://)."""
    env = {"MAPPER_TOPIC": get_topic(MsgspecMapper)}
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql"):
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=parsed.path.lstrip("/") or "compute",
            POSTGRES_HOST=parsed.hostname or "127.0.0.1",
            POSTGRES_PORT=str(parsed.port or 5432),
            POSTGRES_USER=unquote(parsed.username or os.environ.get("USER", "postgres")),
            POSTGRES_PASSWORD=unquote(parsed.password or ""),
            POSTGRES_SCHEMA=parse_qs(parsed.query).get("schema", [""])[0]
            or os.environ.get("COMPUTE_POSTGRES_SCHEMA", ""),
        )
        if not env["POSTGRES_SCHEMA"]:
            del env["POSTGRES_SCHEMA"]
        query = parse_qs(parsed.query)
        for key, setting, default in (
                ("POSTGRES_POOL_SIZE", "pool_size", PG_POOL_SIZE),
                ("POSTGRES_MAX_OVERFLOW", "max_overflow", PG_MAX_OVERFLOW)):
            value = query.get(setting, [""])[0] or os.environ.get(
                f"COMPUTE_PG_{setting.upper()}", "") or str(default)
            if not value.isdigit():
                raise ValueError(f"COMPUTE_PG_{setting.upper()} / ?{setting}=: {value!r} is "
                                 "not a count of connections")
            env[key] = value
        return env
    path = parsed.path if parsed.scheme == "sqlite" else url
    if path and not path.startswith("file:") and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=path,
               SQLITE_LOCK_TIMEOUT="30")
    return env


def open_store(url: str = DEFAULT_STORE) -> ComputeStore:
    env = store_env(url)
    if env["PERSISTENCE_MODULE"] != "eventsourcing.postgres":
        return ComputeStore(env=env)
    with _creating(env):
        store = ComputeStore(env=env)
        store.factory.tracking_recorder()    # the relay's and notifier's table too
        create_function(store.recorder)      # the group commit's one statement
    return store


@contextlib.contextmanager
def _creating(env: dict[str, str]) -> Iterator[None]:
    """Hosts started together would race to create the tables (PostgreSQL's CREATE ... IF NOT
    EXISTS is not safe against a concurrent create): one at a time, under an advisory lock;
    the named schema is created if missing."""
    import psycopg

    with psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                         dbname=env["POSTGRES_DBNAME"], user=env["POSTGRES_USER"],
                         password=env["POSTGRES_PASSWORD"], autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (CREATE_LOCK,))
        try:
            if env.get("POSTGRES_SCHEMA"):
                conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    psycopg.sql.Identifier(env["POSTGRES_SCHEMA"])))
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (CREATE_LOCK,))


