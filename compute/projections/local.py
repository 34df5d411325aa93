"""A host's own views: the events of its own instances and of its own resources, not the fleet's.

Under ``COMPUTE_QUERIES=external`` (issue 22) the fleet-wide views are a service of their own
(``compute queries``, ``compute/messaging/replica.py``); a host keeps only what it acts on.
It reads its views for its own instances (Nova's ``init_host`` recovery, the power sync, the
reclaim of soft-deleted instances, the security group refresh, the evacuation of maintenance
mode, ``update_available_resource``) and its own migrations rows, never another host's
(``compute/actors/power_follower.py``, ``instance_sweeps.py``, ``resource_audit.py``). Projecting the whole log cost every host
0.084 ms of CPU per *fleet* event (the fleet's cost O(N²)); this projector still reads every
row of its store (the relay does too: the log has no per-host index), but decodes only a
few fields of each (``_Head``) and applies only its own: a few microseconds per foreign event.

Which events are its own: those written with this host's name (an event's ``host`` is its
writer, the instance's owner, who alone writes it; a host's own resource events), those of a
move to this host (``MigrationCreated`` naming it ``dest``, the final event naming it
``owner``: the source writes both), and every
later event of an aggregate once its views hold it, whoever wrote it (a move's source keeps
following the instance it gave away until its final event, so the instance leaves its list;
see ``compute/domain/instance_move_events.py``). An instance that arrives by a move was created by another
host: the first event of it that concerns this host brings the instance's earlier events,
read from the store (``select_events``) and applied before it in version order, so its row
is the same as the fleet's views would hold.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

import msgspec

from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore

log = logging.getLogger("compute.projector")

LOCAL_TRACKING = "views:local"
"""The tracking row of a host's own views: a different name from the fleet's (``views``), so a
views file of one kind is never taken for the other (``check_kind``)."""


class _Move(msgspec.Struct):
    dest: str = ""


class _Head(msgspec.Struct):
    """What the filter reads of an event: its aggregate, its writer, and the host a move
    brings it to (no full decode)."""

    uuid: str = ""
    version: int = 0
    host: str = ""
    owner: str = ""
    """A move's last event: the host that owns the instance from then on."""
    migration: _Move | None = None
    """A move's first event: its destination (which keeps the move's claim and row)."""

    def concerns(self, host: str) -> bool:
        return host in (self.host, self.owner) or (
            self.migration is not None and self.migration.dest == host)


_head = msgspec.json.Decoder(_Head)


class ViewsOfAnotherKind(Exception):
    """A views file written by the fleet's projector opened as a host's own (or the reverse)."""


def check_kind(views: ViewStore, name: str) -> None:
    """Refuse a views file that holds the other kind of views: a host switched between
    ``embedded`` and ``external`` keeps a file whose rows and position do not fit (the views
    are disposable: give it a new ``COMPUTE_VIEWS``, or delete the file, it is rebuilt)."""
    other = "views" if name == LOCAL_TRACKING else LOCAL_TRACKING
    if views.position(other) and not views.position(name):
        raise ViewsOfAnotherKind(
            f"the views file holds {'the fleet' if other == 'views' else 'one host'}'s views "
            f"(tracking {other!r}), not what this host keeps now: delete it or set another "
            "COMPUTE_VIEWS (views are rebuilt from the log)")


class LocalProjector(Projector):
    """The projector of one host's own views (``select`` keeps its events)."""

    def __init__(self, store: ComputeStore, views: ViewStore, host: str) -> None:
        super().__init__(store, views, LOCAL_TRACKING)
        self.host = host
        self.read = 0           # rows read, for the figures (bench/fleet.py)
        self.kept = 0           # ... of which applied
        self._known: set[str] | None = None

    def known(self, db: sqlite3.Connection) -> set[str]:
        """The aggregates these views hold (instances, this host's own aggregate), loaded once
        from the views, then kept as events are applied."""
        if self._known is None:
            self._known = {r[0].replace("-", "") for r in db.execute(
                "SELECT uuid FROM instances")}
        return self._known

    def run_once(self, limit: int = 1000, stop: int | None = None) -> int:
        try:
            return super().run_once(limit, stop)
        except BaseException:    # the page rolled back: what it added to ``known`` did too
            self._known = None
            raise

    def select(self, page: Sequence[Any], db: sqlite3.Connection) -> Iterable[Any]:
        return list(self._select(page, db))

    def _select(self, page: Sequence[Any], db: sqlite3.Connection) -> Iterator[Any]:
        known = self.known(db)
        self.read += len(page)
        for row in page:
            try:
                head = _head.decode(row[2])
            except msgspec.DecodeError as exc:     # whose it is cannot be told: not ours
                log.warning("own views skip notification %d (%s): %s", row[0], row[1], exc)
                continue
            key = head.uuid.replace("-", "")
            if key in known:
                self.kept += 1
                yield row
                continue
            if not head.concerns(self.host):
                continue
            known.add(key)
            if head.version > 1 and head.uuid:   # arrived by a move: its history first
                yield from self._history(head.uuid, head.version)
            self.kept += 1
            yield row

    def _history(self, uuid: str, version: int) -> list[Any]:
        """The events of ``uuid`` before ``version``, as (id, topic, state) rows (the id is
        not read by the projector)."""
        try:
            stored = self.store.recorder.select_events(UUID(uuid), lte=version - 1)
        except ValueError:
            return []
        return [(0, e.topic, e.state) for e in stored]
