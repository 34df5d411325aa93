"""Leases on log-wide jobs: of the host services sharing one store, one relays the log to
``COMPUTE_EVENTS`` and one generates the notifications at a time; the others stand by.

On PostgreSQL the lease is a session advisory lock, in one session per process for all its
leases (``LeaseSession``): it is the server's to give, and it is released by the server when its holder dies or loses its
connection, so a standby takes over without any timeout to tune. A SQLite file has one host
(one writer process), so its lease is always held. Two holders for a moment (a lost connection
noticed late) publish the same messages, which JetStream's ``Nats-Msg-Id`` de-duplication
drops; the lease removes the waste and the race, correctness never depends on it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
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


class LeaseSession:
    """One PostgreSQL session holding every advisory lease of this process: a lease is a
    lock *in* a session, so the relay's, the notifier's and the ``_shared`` ones need not
    each keep a connection (four per outbox worker did: a quarter of a host's budget).
    The session is opened on first use and again after it is lost; every lease taken on a
    lost session is lost with it (the server released them all), which ``generation``
    tells. Two leases of one name in one process (hosts of a test, in one process) are not
    both granted: the server would (advisory locks stack within a session), so the
    session remembers which lease holds which key."""

    def __init__(self, connect: dict[str, Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lock = threading.Lock()
        self.generation = 0
        self.holders: dict[int, AdvisoryLease] = {}

    def execute(self, sql: str, *params: Any) -> tuple[Any, int]:
        """The first row of ``sql`` and the generation of the session that ran it; a
        psycopg error closes the session (its leases are gone) and is raised."""
        import psycopg

        with self._lock:
            try:
                if self._conn is None:
                    self._conn = psycopg.connect(**self._connect, autocommit=True,
                                                 connect_timeout=5)
                    self.generation += 1
                    self.holders.clear()
                row = self._conn.execute(sql, params).fetchone()
                return row, self.generation
            except psycopg.Error:
                self._drop()
                raise

    def acquire(self, lease: AdvisoryLease) -> int | None:
        """The generation the lease is held in, or None (another holder, here or
        elsewhere)."""
        with self._lock:
            holder = self.holders.get(lease.key)
            if holder is not None and holder is not lease:
                return None
        row, generation = self.execute("SELECT pg_try_advisory_lock(%s)", lease.key)
        if not (row and row[0]):
            return None
        with self._lock:
            if generation != self.generation:
                return None
            holder = self.holders.get(lease.key)
            if holder is not None and holder is not lease:   # taken here meanwhile: our
                try:                                         # lock stacked on its: undo it
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (lease.key,))
                except Exception:
                    self._drop()
                return None
            self.holders[lease.key] = lease
        return generation

    def release(self, lease: AdvisoryLease, generation: int) -> None:
        """Give the lease back (its session still alive): a standby may take it at once."""
        with self._lock:
            if self.holders.get(lease.key) is not lease:
                return
            del self.holders[lease.key]
            if self._conn is None or generation != self.generation:
                return
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (lease.key,))
            except Exception:              # broken: the server released it with the session
                self._drop()

    def _drop(self) -> None:
        self.holders.clear()
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:   # already broken: nothing to release
                pass
            self._conn = None


_sessions: dict[tuple[tuple[str, Any], ...], LeaseSession] = {}
_sessions_lock = threading.Lock()


def session_for(connect: dict[str, Any]) -> LeaseSession:
    """This process's lease session on the server and database of ``connect``."""
    key = tuple(sorted(connect.items()))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = LeaseSession(connect)
        return session


class AdvisoryLease:
    """``pg_try_advisory_lock`` on a key derived from the schema and the job's name, in the
    process's ``LeaseSession``."""

    def __init__(self, connect: dict[str, Any], schema: str, name: str) -> None:
        digest = hashlib.sha256(f"compute:{schema}:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.name = name
        self.session = session_for(connect)
        self._generation: int | None = None
        self._checked = 0.0

    @property
    def _held(self) -> bool:
        return self._generation is not None

    def held(self) -> bool:
        import psycopg

        now = time.monotonic()
        if self._held and now - self._checked < RECHECK:
            return True
        try:
            if self._held:
                _, generation = self.session.execute("SELECT 1")
                if generation != self._generation:
                    log.warning("lease %s lost with its session", self.name)
                    self._generation = None
            if not self._held:
                self._generation = self.session.acquire(self)
                if self._held:
                    log.info("lease %s taken", self.name)
            self._checked = now
        except psycopg.Error as exc:
            if self._held:
                log.warning("lease %s lost with its connection: %s", self.name, exc)
            self._generation = None
        return self._held

    def close(self) -> None:
        if self._generation is not None:
            self.session.release(self, self._generation)
        self._generation = None


def lease_for(store: ComputeStore, name: str) -> Lease:
    """The lease on job ``name`` among the services sharing ``store``."""
    datastore = getattr(store.recorder, "datastore", None)
    if type(datastore).__module__ != "eventsourcing.postgres":
        return AlwaysHeld()
    connect = {k: v for k, v in datastore.pool.kwargs.items() if k != "row_factory"}
    return AdvisoryLease(connect, datastore.schema, name)
