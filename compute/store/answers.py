"""The answers a host gave, by command id: the same answer again for as long as it may be asked.

The instance's log remembers the commands that changed it (``Instance.recent``), but only the
last 256 per instance, and a refusal changes nothing, so it is not there at all: a redelivery
after a crash on a busy instance, or a refused command sent again once the state changed,
was applied. Here every answered command id (Succeeded, Failed, Rejected) is kept with its
answer, in the store (a table beside the events, on SQLite and PostgreSQL), written by the
group-commit writer before the command is acknowledged, for ``window`` seconds: at least
JetStream's duplicate window plus ``ack_wait * (max_deliver + 1)``, the longest a command can
be redelivered or resent and still be the same message. The host keeps an index of the ids it
answered within the window (loaded at start: a restart forgets nothing), so a new command
costs a dictionary look-up, not a query.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from compute.store.schema_lock import CREATE_LOCK

TABLE = "compute_answers"
PROBE = "probe:"
"""Prefix of the row a host writes at start to learn that its store takes writes."""


class AnswerBook:
    """One host's remembered answers (``outcome`` is the answer's JSON, as sent)."""

    def __init__(self, store: Any, host: str, window: float) -> None:
        self.host = host
        self.window = window
        datastore = store.recorder.datastore
        self._datastore = datastore
        self.datastore = datastore      # (the writer stores answers with events on it)
        self._pg = type(store.recorder).__module__ == "eventsourcing.postgres"
        if self._pg:
            self._table = f'"{datastore.schema}".{TABLE}'
            self._p = "%s"
        else:
            self._table = TABLE
            self._p = "?"
        self._index: collections.OrderedDict[str, tuple[float, None]] = \
            collections.OrderedDict()
        self._pruned = time.time()

    # -- the store (called on a worker thread or the writer's) ------------------------------
    def create(self) -> None:
        """The table, if missing (on PostgreSQL under the store's table-creation lock:
        hosts started together would race, ``compute.store.schema_lock``)."""
        blob = "BYTEA" if self._pg else "BLOB"
        with self._datastore.transaction(commit=True) as c:
            if self._pg:
                c.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
            c.execute(f"CREATE TABLE IF NOT EXISTS {self._table} (command_id TEXT PRIMARY KEY,"
                      f" host TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, outcome {blob})")
            c.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_at ON {self._table} (host, at)")

    def load(self) -> int:
        """The ids this host answered within the window (their answers are read on a hit)."""
        since = time.time() - self.window
        p = self._p
        with self._datastore.transaction(commit=False) as c:
            c.execute(f"SELECT command_id, at FROM {self._table} WHERE host = {p} AND at > {p}"
                      f" ORDER BY at", (self.host, since))
            rows = c.fetchall()
        for row in rows:
            cid, at = (row["command_id"], row["at"]) if isinstance(row, dict) else row[:2]
            if not cid.startswith(PROBE):
                self._index[cid] = (float(at), None)
        return len(rows)

    def probe(self) -> None:
        """A real write (an upsert of this host's probe row): raises when the store refuses."""
        p = self._p
        with self._datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {self._table} WHERE command_id = {p}", (PROBE + self.host,))
            c.execute(f"INSERT INTO {self._table} (command_id, host, at, outcome) "
                      f"VALUES ({p}, {p}, {p}, NULL)", (PROBE + self.host, self.host, time.time()))

    def write(self, rows: list[tuple[str, float, bytes]]) -> None:
        """Store answers in one transaction (the writer's thread); an id answered before
        keeps its first answer."""
        p = self._p
        conflict = "ON CONFLICT (command_id) DO NOTHING"
        with self._datastore.transaction(commit=True) as c:
            for cid, at, outcome in rows:
                c.execute(f"INSERT INTO {self._table} (command_id, host, at, outcome) VALUES "
                          f"({p}, {p}, {p}, {p}) {conflict}", (cid, self.host, at, outcome))
            before = self.prune_before(rows[-1][1]) if rows else None
            if before is not None:
                c.execute(f"DELETE FROM {self._table} WHERE host = {p} AND at < {p}",
                          (self.host, before))

    def prune_before(self, last_at: float) -> float | None:
        """When a prune is due (at most one every ``max(60 s, window / 10)``), the time
        before which this host's answers go; else None."""
        if last_at - self._pruned <= max(60.0, self.window / 10):
            return None
        self._pruned = last_at
        return last_at - self.window

    def fetch(self, command_id: str) -> bytes | None:
        p = self._p
        with self._datastore.transaction(commit=False) as c:
            c.execute(f"SELECT outcome FROM {self._table} WHERE command_id = {p}", (command_id,))
            row = c.fetchone()
        if row is None:
            return None
        value = row["outcome"] if isinstance(row, dict) else row[0]
        return bytes(value) if value is not None else None

    # -- the host's index (event loop) ----------------------------------------------------
    def known(self, command_id: str) -> bool:
        entry = self._index.get(command_id)
        return entry is not None and entry[0] > time.time() - self.window

    async def get(self, command_id: str) -> bytes | None:
        """The answer given to ``command_id`` within the window, or None."""
        entry = self._index.get(command_id)
        if entry is None or entry[0] <= time.time() - self.window:
            return None
        return await asyncio.to_thread(self.fetch, command_id)

    def noted(self, command_id: str, at: float) -> None:
        """An answer is durable: index it (the id only: a repeat reads the answer back),
        and forget what left the window."""
        self._index[command_id] = (at, None)
        self._index.move_to_end(command_id)
        limit = at - self.window
        while self._index:
            first = next(iter(self._index.values()))
            if first[0] > limit:
                break
            self._index.popitem(last=False)

    def __len__(self) -> int:
        return len(self._index)
