"""A group commit on PostgreSQL: one statement that locks, inserts and commits.

The ``eventsourcing`` recorder (``eventsourcing/postgres.py``,
``PostgresApplicationRecorder.insert_events``) opens a transaction, takes ``LOCK TABLE ...
IN EXCLUSIVE MODE`` (so that notification ids are issued in commit order: a reader tailing
the log "after my position" never passes over an id that commits later), NOTIFYs, inserts,
waits for the ids, and only then sends ``COMMIT`` from the client: the lock is held across
a round trip *and* across whatever the committing process does before its thread gets the
GIL back to send it. With several hosts on one store that was the fleet's serial point
(issue 22: lock-wait share 0.98 at 8 hosts; reply p50 17 ms at N<=4, 371 ms at N=8).

Here a group is one call of a server-side function in autocommit mode: the server takes the
lock, inserts, and commits the statement's own transaction without waiting for the client,
so the lock is held for the server's work and the commit's WAL flush only. The same call
stores the group's remembered answers (``compute.store.answers``) before it takes the lock,
so a group with answers and events is one transaction, not two (nor one round trip per
answer). The lock is the library's own (the same table, the same mode): readers and the
library's own recorder (snapshots, tools) keep their guarantee, and commit order stays
notification-id order (README Scale-out, "Store").

NOTIFY is sent only when the group holds events of no host's aggregates (networks, security
groups: ``_shared``): those are relayed by whichever host holds the ``_shared`` lease, which
LISTENs (``compute.store.notices``); a host's own events wake its own relay directly. A
NOTIFY per insert cost every commit the server's notification queue for nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.utils import retry

from compute.store.answers import TABLE as ANSWERS

FUNCTION = "compute_commit"

SHARED = "_shared"
"""The host token of the aggregates no host owns (``compute.messaging.subjects.SHARED_HOST``)."""


class _Head(msgspec.Struct):
    host: str = SHARED       # networks and security groups name no host


_head = msgspec.json.Decoder(_Head)


def wakes_shared(state: bytes) -> bool:
    """Whether a stored event is one the ``_shared`` lease holder relays (the relay's own
    test, ``compute.messaging.relay``): its commit NOTIFYs that holder."""
    return _head.decode(state).host == SHARED


def function_sql(recorder: Any) -> Any:
    """``CREATE OR REPLACE FUNCTION <schema>.compute_commit(...)`` for ``recorder``'s table:
    (events, whether to NOTIFY, the answers' host, ids, times, outcomes, the time before
    which this host's answers are pruned) -> the events' notification ids."""
    from psycopg.sql import SQL, Identifier, Literal

    ds = recorder.datastore
    timeout = SQL("SET LOCAL lock_timeout = {};").format(Literal(f"{ds.lock_timeout}s")) \
        if ds.lock_timeout else SQL("")
    return SQL(
        "CREATE OR REPLACE FUNCTION {schema}.{function}("
        " events {schema}.{event}[], wake boolean, a_host text, a_ids text[],"
        " a_at double precision[], a_outcomes bytea[], a_prune double precision)"
        " RETURNS SETOF bigint LANGUAGE plpgsql AS $body$ "
        "BEGIN"
        "  IF a_ids IS NOT NULL THEN"
        "    INSERT INTO {schema}.{answers} (command_id, host, at, outcome)"
        "    SELECT i, a_host, t, o FROM unnest(a_ids, a_at, a_outcomes) AS a(i, t, o)"
        "    ON CONFLICT (command_id) DO NOTHING;"
        "  END IF;"
        "  IF a_prune IS NOT NULL THEN"
        "    DELETE FROM {schema}.{answers} WHERE host = a_host AND at < a_prune;"
        "  END IF;"
        "  IF cardinality(events) > 0 THEN"
        "    {timeout}"
        "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
        "    IF wake THEN NOTIFY {channel}; END IF;"
        "    RETURN QUERY INSERT INTO {schema}.{table} AS t"
        "      (originator_id, originator_version, topic, state)"
        "      SELECT originator_id, originator_version, topic, state FROM unnest(events)"
        "      RETURNING notification_id;"
        "  END IF;"
        "END $body$").format(
        schema=Identifier(ds.schema), function=Identifier(FUNCTION),
        event=Identifier(recorder.stored_event_type_name), answers=Identifier(ANSWERS),
        table=Identifier(recorder.events_table_name), channel=Identifier(recorder.channel_name),
        timeout=timeout)


def create_function(recorder: Any) -> None:
    """(Re)create the function (``open_store``, under its table-creation lock: hosts started
    together would race on ``CREATE OR REPLACE``)."""
    with recorder.datastore.get_connection() as conn:
        conn.execute(function_sql(recorder))


class PostgresCommit:
    """One group: events and answers in one statement (see the module's docstring)."""

    def __init__(self, recorder: Any) -> None:
        from psycopg.sql import SQL, Identifier

        self.recorder = recorder
        self.statement = SQL(
            "SELECT * FROM {schema}.{function}(%s::{schema}.{event}[], %s, %s, %s::text[],"
            " %s::double precision[], %s::bytea[], %s::double precision)").format(
            schema=Identifier(recorder.datastore.schema), function=Identifier(FUNCTION),
            event=Identifier(recorder.stored_event_type_name))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def __call__(self, events: Sequence[StoredEvent], wake: bool = False, *,
                 host: str | None = None,
                 answers: Sequence[tuple[str, float, bytes]] = (),
                 prune_before: float | None = None) -> list[int]:
        """Store ``events`` (notification ids returned, in order) and ``host``'s
        ``answers`` (command id, time, outcome) in one transaction; NOTIFY if ``wake``."""
        if not events and not answers and prune_before is None:
            return []
        construct = self.recorder.construct_pg_stored_event
        rows = [construct(e.originator_id, e.originator_version, e.topic, e.state)
                for e in events]
        params = (rows, wake, host,
                  [a[0] for a in answers] if answers else None,
                  [a[1] for a in answers] if answers else None,
                  [a[2] for a in answers] if answers else None,
                  prune_before)
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.statement, params, prepare=True)
            return [row[FUNCTION] for row in curs.fetchall()] if events else []
