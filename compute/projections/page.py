"""One page of the projection, held in memory and written in bulk.

A rebuild applies ~23 events per instance; one statement per event (or three, as it was) was
most of a rebuild's time. Within a page the instance rows and the instance actions are
merged in memory, last value wins (every handler sets absolute values), and written at the
end of the page as one ``executemany`` per statement shape. Any other statement that reads
or writes those tables sees the pending values: they are written just before it runs.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any

from compute.projections.decoding import canonical_uuid, iso

ActionKey = tuple[str, str]
EventKey = tuple[str, str, str]


class PageWriter:
    """The page's connection, with instance rows and instance actions coalesced.

    ``uuid`` and ``ts`` are the current event's originator id and time as the views store
    them, set once per event by ``begin`` from the event's projection view (``decoding``):
    the handlers use them two to four times per event."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.uuid = ""
        self.ts = ""
        self.uuids: dict[str, str] = {}      # decoded -> canonical, checked once per page
        self.pending: dict[str, dict[str, Any]] = {}     # uuid -> columns to set
        self.created: set[str] = set()                   # ... of rows inserted in this page
        self.actions: dict[ActionKey, list[Any]] = {}   # instance_actions rows to insert
        self.events: dict[EventKey, list[Any]] = {}     # instance_action_events rows
        self.early: list[tuple[str, tuple[Any, ...]]] = []
        """Finishes of actions not started in this page: applied before the inserts, as
        they were applied before the (then later) start."""

    def begin(self, event: Any) -> None:
        """Set ``uuid`` and ``ts`` from an event decoded by ``decode_view`` (raises
        ValueError for an id or time its typed decode would have refused)."""
        try:
            uuid, ts = event.originator_id, event.timestamp
        except AttributeError:     # not an aggregate's event: no handler reads them
            self.uuid = self.ts = ""
            return
        canonical = self.uuids.get(uuid)
        if canonical is None:
            canonical = self.uuids[uuid] = canonical_uuid(uuid)
        self.uuid = canonical
        self.ts = iso(ts)

    # -- instances ---------------------------------------------------------------------------
    def create(self, columns: dict[str, Any]) -> None:
        """INSERT OR REPLACE the instance row (``columns`` has its uuid): earlier pending
        updates of it are moot, later ones are merged into the insert."""
        self.pending[columns["uuid"]] = columns
        self.created.add(columns["uuid"])

    def touch(self, uuid: str, columns: dict[str, Any]) -> None:
        """Set ``columns`` of the instance row (the dict is kept: the caller's own)."""
        row = self.pending.get(uuid)
        if row is None:
            self.pending[uuid] = columns
        else:
            row.update(columns)

    # -- instance actions --------------------------------------------------------------------
    def start_action(self, uuid: str, request_id: str, action: str, event: str, ts: str,
                     host: str) -> None:
        """INSERT OR IGNORE the action and its event: the first start wins."""
        self.actions.setdefault((uuid, request_id), [uuid, request_id, action, ts, None])
        self.events.setdefault((uuid, request_id, event),
                               [uuid, request_id, event, ts, None, None, None, host])

    def finish_action(self, uuid: str, request_id: str, event: str, ts: str, result: str,
                      details: str | None) -> None:
        """The action event's end (and the action's Error): folded into this page's start
        of it, or applied to the stored row."""
        row = self.events.get((uuid, request_id, event))
        if row is None:
            self.early.append((_FINISH_EVENT, (ts, result, details, uuid, request_id, event)))
        else:
            row[4:7] = ts, result, details
        if result == "Error":
            action = self.actions.get((uuid, request_id))
            if action is None:
                self.early.append((_ACTION_ERROR, (uuid, request_id)))
            else:
                action[4] = "Error"

    # -- statements --------------------------------------------------------------------------
    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if "instances" in sql or "instance_action" in sql:
            self.flush()
        return self.conn.execute(sql, params)

    def flush(self) -> None:
        """Write what is pending: instance rows, then the actions' early finishes, then the
        actions (an insert that meets a stored row updates only what this page finished)."""
        if self.pending:
            self._flush_instances()
        if self.early:
            for sql, params in self.early:
                self.conn.execute(sql, params)
            self.early.clear()
        if self.actions:
            self.conn.executemany(_UPSERT_ACTION, self.actions.values())
            self.actions.clear()
        if self.events:
            self.conn.executemany(_UPSERT_EVENT, self.events.values())
            self.events.clear()

    def _flush_instances(self) -> None:
        shapes: dict[tuple[bool, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        for uuid, columns in self.pending.items():
            if uuid in self.created:
                shapes.setdefault((True, tuple(columns)), []).append(
                    (*columns.values(), columns["vm_state"], columns["task_state"]))
            else:
                shapes.setdefault((False, tuple(columns)), []).append((*columns.values(), *(
                    columns[c] for c in ("vm_state", "task_state") if c in columns), uuid))
        for (created, names), rows in shapes.items():
            self.conn.executemany(_insert_sql(names) if created else _update_sql(names), rows)
        self.pending.clear()
        self.created.clear()


_FINISH_EVENT = ("UPDATE instance_action_events SET finish_time = ?, result = ?, details = ? "
                 "WHERE uuid = ? AND request_id = ? AND event = ?")
_ACTION_ERROR = "UPDATE instance_actions SET message = 'Error' WHERE uuid = ? AND request_id = ?"
_UPSERT_ACTION = ("INSERT INTO instance_actions VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT(uuid, request_id) DO UPDATE SET message = excluded.message "
                  "WHERE excluded.message IS NOT NULL")
_UPSERT_EVENT = ("INSERT INTO instance_action_events VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT(uuid, request_id, event) DO UPDATE SET "
                 "finish_time = excluded.finish_time, result = excluded.result, "
                 "details = excluded.details WHERE excluded.finish_time IS NOT NULL")


@lru_cache(maxsize=256)
def _update_sql(columns: tuple[str, ...]) -> str:
    state = ", ".join("?" if c in columns else c for c in ("vm_state", "task_state"))
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE instances SET {sets}, status = api_status({state}) WHERE uuid = ?"


@lru_cache(maxsize=256)
def _insert_sql(columns: tuple[str, ...]) -> str:
    return (f"INSERT OR REPLACE INTO instances ({', '.join(columns)}, status) "
            f"VALUES ({', '.join('?' for _ in columns)}, api_status(?, ?))")
