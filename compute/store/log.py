"""Reading the store's notification log in pages, as plain rows.

The relay, the notifier and the projector each follow the log. ``select_notifications``
builds a ``Notification`` and parses a ``UUID`` per row, which none of them needs: the
projector never reads the id (it was 17 % of a rebuild's time), and the relay turned the UUID
back into a string for its subject and message id (with the page read, ~7 us per event
in the outbox worker, against ~1 us for a row). On SQLite and PostgreSQL the rows are
read straight from the recorder's table, on its own connection; other recorders go through
``select_notifications``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteApplicationRecorder

if TYPE_CHECKING:
    from compute.store.app import ComputeStore

Row = tuple[int, str, int, str, bytes]
"""(notification id, originator id as ``str(UUID)`` gives it, version, topic, state)."""


def read_rows(store: ComputeStore, position: int, limit: int, stop: int | None = None, *,
              ids: bool = True) -> Sequence[Any]:
    """The next ``limit`` notifications after ``position`` (up to ``stop``): ``Row``s, or
    (id, topic, state) rows when ``ids`` is False (what the projector reads)."""
    recorder = store.recorder
    if type(recorder).__module__ == "eventsourcing.postgres":    # (psycopg is optional)
        return _postgres_rows(recorder, position, limit, stop, ids)
    if not isinstance(recorder, SQLiteApplicationRecorder):
        page = recorder.select_notifications(position, limit, stop=stop,
                                             inclusive_of_start=False)
        if ids:
            return [(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
                    for n in page]
        return [(n.id, n.topic, n.state) for n in page]
    columns = "rowid, originator_id, originator_version, topic, state" if ids \
        else "rowid, topic, state"
    sql = f"SELECT {columns} FROM {recorder.events_table_name} WHERE rowid > ? "
    params: tuple[int, ...] = (position, limit)
    if stop is not None:
        sql, params = sql + "AND rowid <= ? ", (position, stop, limit)
    with recorder.datastore.transaction(commit=False) as c:
        c.sqlite_cursor.row_factory = None          # tuples, not sqlite3.Row
        c.execute(sql + "ORDER BY rowid LIMIT ?", params)
        rows = c.fetchall()
    if not ids:
        return rows
    return [(nid, _dashed(hex_id), version, topic, state)
            for nid, hex_id, version, topic, state in rows]


def _postgres_rows(recorder: Any, position: int, limit: int, stop: int | None,
                   ids: bool) -> list[Any]:
    """The same rows from PostgreSQL: tuples (no dict per row), the id as text."""
    from psycopg.rows import tuple_row

    statement = _postgres_select(recorder.datastore.schema, recorder.events_table_name, ids,
                                 stop is not None)
    params = (position, stop, limit) if stop is not None else (position, limit)
    with recorder.datastore.get_connection() as conn, \
            conn.cursor(row_factory=tuple_row) as curs:
        curs.execute(statement, params, prepare=True)
        rows = curs.fetchall()
    return [(*row[:-1], bytes(row[-1])) for row in rows]


@functools.lru_cache(maxsize=64)
def _postgres_select(schema: str, table: str, ids: bool, bounded: bool) -> Any:
    from psycopg.sql import SQL, Identifier

    columns = "notification_id, originator_id::text, originator_version, topic, state" \
        if ids else "notification_id, topic, state"
    return SQL("SELECT " + columns + " FROM {schema}.{table} WHERE notification_id > %s "
               + ("AND notification_id <= %s " if bounded else "")
               + "ORDER BY notification_id LIMIT %s").format(
        schema=Identifier(schema), table=Identifier(table))


def _dashed(hex_id: str) -> str:
    """The SQLite recorder keeps ``UUID.hex`` (an id given as a string, as given);
    ``str(UUID)`` is the dashed form."""
    if len(hex_id) != 32:
        return str(UUID(hex_id))
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"
