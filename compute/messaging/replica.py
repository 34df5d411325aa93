"""A query replica (``compute queries``): the fleet's views as a service of their own (issue 22).

Under ``COMPUTE_QUERIES=external`` the hosts keep only their own instances and resources
(``compute/projections/local.py``) and serve no ``compute.query.>``; 1..k replicas do, in the
queue group every query server joins (``queries.QUEUE_GROUP``), so NATS spreads the requests
over the live ones and a replica that stops just stops getting them. Each replica follows every
cell's store (``COMPUTE_CELLS``: one projector per cell, each with its own tracking row
``views:<cell>`` in the replica's own views file), or only some of them (``--cells``): it
asks the others' replicas what their cells hold (``query_shards.py``), so no replica has to
follow the whole fleet, and replicas are added for the query load or the fleet's size.

Why the stores' notification logs and not ``COMPUTE_EVENTS``: a query's ``min_position`` is a
store's notification id (what a command's outcome reports, with its ``cell``), which the
stream's sequence is not; the log has every committed event at once, where the stream has an
event only once its writer's relay has published it (a host that died before relaying holds
its events back, the ``_shared`` ones wait for a lease holder) and drops its oldest after its
limits (a replica that was down longer could not rebuild from it); and the views stay a pure
function of the log, as the audit checks. The stream is used only as a doorbell: a core
subscription to ``compute.evt.>`` wakes the projectors (at most one catch-up per
``PROJECT_EVERY`` per cell), a 0.2 s poll covers events nobody relayed yet, and a query whose
position is not reached yet wakes its cell at once. The price: each replica holds a store
connection per cell (PostgreSQL: ``COMPUTE_PG_POOL_SIZE`` each).

A replica that is killed loses nothing: each page of the views is applied with its position in
one transaction (``projector.py``); started again it catches up with every cell, then joins
the queue group, so it never answers from views older than it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from compute.config import Settings, cell_stores
from compute.messaging.credentials import connect
from compute.messaging.guard import guard_publishes
from compute.messaging.queries import QueryService
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore, open_store

log = logging.getLogger("compute.queries")

QUERIES_USER = "queries"
"""The NATS user a replica connects as when the URL names none (role ``queries``)."""
PROJECT_EVERY = 0.02
"""Seconds between two catch-ups of one cell: under load a page holds many commits."""
IDLE_POLL = 0.2
"""Seconds between catch-ups when no event rang (events not relayed yet)."""


def tracking_name(cell: str) -> str:
    """A cell's position in a replica's views."""
    return f"views:{cell}"


class QueryReplica:
    """One replica: its NATS connection, a store per cell, its views, the query service."""

    def __init__(self, settings: Settings, *, name: str, views: str,
                 user: str = QUERIES_USER, cells: Sequence[str] = ()) -> None:
        self.settings = settings
        self.name = name
        self.views_path = views
        self.user = user
        self.fleet = cell_stores(settings)
        unknown = sorted(set(cells) - set(self.fleet))
        if unknown:
            raise ValueError(f"--cells {', '.join(unknown)}: not in COMPUTE_CELLS "
                             f"({', '.join(self.fleet)})")
        self.cells = {c: url for c, url in self.fleet.items() if not cells or c in cells}
        self.stores: dict[str, ComputeStore] = {}
        self.views: ViewStore | None = None
        self.service: QueryService | None = None
        self.nc: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._doorbell: Any = None

    async def start(self, connect_deadline: float | None = None) -> QueryReplica:
        """Connect to NATS, open the stores and the views, catch up with every cell, then
        serve. NATS first, within ``connect_deadline`` seconds when given (what ``compute
        queries`` gives): a replica that cannot serve says so at once, not after catching
        up a fleet's log (and its connection, which retries for ever once up, would wait
        for ever on a NATS that is down: a silent hang)."""
        connecting = connect(self.settings.nats_url, self.user, self.settings.nats_credentials,
                             name=f"compute-queries-{self.name}",
                             max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        self.nc = await (asyncio.wait_for(connecting, connect_deadline)
                         if connect_deadline is not None else connecting)
        for cell, url in self.cells.items():
            self.stores[cell] = await asyncio.to_thread(open_store, url)
        self.views = await asyncio.to_thread(ViewStore, self.views_path)
        projectors = {cell: Projector(store, self.views, tracking_name(cell))
                      for cell, store in self.stores.items()}
        for cell, projector in projectors.items():
            n = await asyncio.to_thread(projector.catch_up)
            log.info("cell %s: %d events applied at start", cell, n)
        guard_publishes(self.nc)          # a requester's reply address is never a query
        self.service = QueryService(self.nc, self.views, projectors, host=self.name,
                                    fleet=list(self.fleet))
        for cell, projector in projectors.items():
            self.service.advance(await asyncio.to_thread(self.views.position, projector.name),
                                 cell)
        if len(self.cells) == len(self.fleet):
            # The doorbell hears every cell's events: only a replica that follows every
            # cell takes it (one of some cells would pay for the whole fleet's messages;
            # it polls, and a query's position wakes its cell at once).
            self._doorbell = await self.nc.subscribe("compute.evt.>", cb=self._ring)
        self._tasks = [asyncio.create_task(
            self.service.follow(idle_poll=IDLE_POLL, every=PROJECT_EVERY),
            name="query-projectors")]
        await self.service.start()
        log.info("query replica %s serving compute.query.> for cells %s", self.name,
                 ", ".join(self.cells))
        return self

    async def _ring(self, msg: Any) -> None:
        if self.service is not None:
            self.service.wake()

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        if self._doorbell is not None:
            with contextlib.suppress(Exception):
                await self._doorbell.unsubscribe()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._tasks = []
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.views is not None:
            await asyncio.to_thread(self.views.close)
        for store in self.stores.values():
            await asyncio.to_thread(store.close)

    async def __aenter__(self) -> QueryReplica:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
