"""Leases on log-wide jobs: of the host services sharing one store, one relays the log to
``COMPUTE_EVENTS`` and one generates the notifications at a time; the others stand by.

On PostgreSQL the lease is a session advisory lock on a connection of its own: it is the
server's to give, and it is released by the server when its holder dies or loses its
connection, so a standby takes over without any timeout to tune. A SQLite file has one host
(one writer process), so its lease is always held. Two holders for a moment (a lost connection
noticed late) publish the same messages, which JetStream's ``Nats-Msg-Id`` de-duplication
drops; the lease removes the waste and the race, correctness never depends on it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Protocol

from compute.store.app import ComputeStore

log = logging.getLogger("compute.lease")

RECHECK = 1.0   # seconds between checks that a held lease's connection is still alive


class Lease(Protocol):
    def held(self) -> bool:
        """True while this process holds the lease (acquiring it if free); blocking."""

    def close(self) -> None: ...


class AlwaysHeld:
    def held(self) -> bool:
        return True

    def close(self) -> None:
        pass


class AdvisoryLease:
    """``pg_try_advisory_lock`` on a key derived from the schema and the job's name."""

    def __init__(self, connect: dict[str, Any], schema: str, name: str) -> None:
        self._connect = connect
        digest = hashlib.sha256(f"compute:{schema}:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.name = name
        self._conn: Any = None
        self._held = False
        self._checked = 0.0

    def held(self) -> bool:
        import psycopg

        now = time.monotonic()
        if self._held and now - self._checked < RECHECK:
            return True
        try:
            if self._conn is None:
                self._conn = psycopg.connect(**self._connect, autocommit=True,
                                             connect_timeout=5)
            if self._held:
                self._conn.execute("SELECT 1")
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                         (self.key,)).fetchone()
                self._held = bool(row and row[0])
                if self._held:
                    log.info("lease %s taken", self.name)
            self._checked = now
        except psycopg.Error as exc:
            if self._held:
                log.warning("lease %s lost with its connection: %s", self.name, exc)
            self.close()
        return self._held

    def close(self) -> None:
        self._held = False
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:   # already broken: nothing to release
                pass
            self._conn = None


def lease_for(store: ComputeStore, name: str) -> Lease:
    """The lease on job ``name`` among the services sharing ``store``."""
    datastore = getattr(store.recorder, "datastore", None)
    if type(datastore).__module__ != "eventsourcing.postgres":
        return AlwaysHeld()
    connect = {k: v for k, v in datastore.pool.kwargs.items() if k != "row_factory"}
    return AdvisoryLease(connect, datastore.schema, name)
