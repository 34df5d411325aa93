"""Queries on ``compute.query.<view>[.<key>]``, answered from the projections.

Replicas share the load through a queue group. A request may carry ``min_position`` (the
``position`` a command's outcome reported) to read its own writes: the answer waits until
the projection has applied at least that far. Every query is declared once in ``QUERIES``
(its handler, whether it takes a key, its reply type), which the AsyncAPI document reads.

Each request is served in its own task: a query waiting for a position holds no lock and
does not stop the subscription's read loop, so one slow reader never blocks the others
(nats-py calls a subscription's callback one message at a time). The server caps both how
long a request may wait (``MAX_WAIT``) and how many may be in flight (``MAX_IN_FLIGHT``); a
request over the cap is answered ``ComputeServiceUnavailable`` at once, never queued.

Every list is a page (issue 22): at most ``limit`` items (default ``DEFAULT_LIMIT``, at most
``MAX_LIMIT``) and at most ``PAGE_SHARE`` of the server's ``max_payload`` (512 KiB of
nats.conf's 1 MB), in a fixed key order; ``next`` is an opaque cursor (the last item's key)
to pass as ``after``, None at the end. One reply holding a whole fleet broke at ~1,800
instances, and its failed publish was swallowed. A reply that still cannot be sent (one
item or one instance's detail over ``max_payload``, or any publish error) is logged and
answered ``Rejected`` (``ReplyTooLarge``, else ``InternalError``) instead: never silence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from compute.events.error_codes import ErrorCode
from compute.events.outcomes import Rejected
from compute.messaging import query_shards
from compute.messaging.guard import relaying
from compute.messaging.subjects import CELL_QUERY_PREFIX
from compute.projections.projector import Projector
from compute.projections.views import (
    ActionView,
    FaultView,
    HostView,
    ImageView,
    InstanceView,
    MigrationView,
    ViewStore,
)

log = logging.getLogger("compute.query")

QUEUE_GROUP = "compute-query"
MAX_WAIT = 30.0
"""The longest a request may wait for ``min_position`` (a longer ``timeout`` is cut to it)."""
MAX_IN_FLIGHT = 256
"""Requests served at once by one host; more are answered ComputeServiceUnavailable."""
DEFAULT_LIMIT = 500
"""Items per page when the request names no ``limit``."""
MAX_LIMIT = 1000
"""The largest ``limit`` a request may ask (a larger one is refused ``InvalidPayload``)."""
PAGE_SHARE = 0.5
"""A page is cut once its items would pass this share of the server's ``max_payload``
(a typical instance is ~1 KiB, so 500 fit in 512 KiB; an instance with large metadata or
many interfaces makes the page shorter, never the reply too large)."""
_encoder = msgspec.json.Encoder()


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of every query (an empty body is the defaults). Fields a view does not use
    are ignored by it."""

    min_position: int = 0
    """Answer only once the views have applied this notification id: the ``position`` of a
    command's ``Succeeded``/``Failed``/``HostUpdated`` outcome (read your own writes), in
    the store of ``cell`` (the outcome's ``cell``)."""
    cell: str | None = None
    """The cell whose store ``min_position`` counts in (issue 22: each cell has its own
    store and its own notification ids). May be left out where the views follow one cell."""
    positions: dict[str, int] = {}
    """The least position per cell (a client that wrote in several cells; a page's
    ``positions`` when asking the next page)."""
    host: str | None = None
    """instances, migrations: only those of this compute host."""
    vm_state: str | None = None
    """instances: only those in this vm_state."""
    include_deleted: bool = False
    """instances, images: include deleted ones."""
    latest: bool = False
    """Answer only once the views have applied every event committed when the request
    arrived: every write whose outcome came before this request, without knowing its
    position (what the CLI asks, one process per command)."""
    timeout: float = 5.0
    """Seconds to wait for ``min_position`` / ``latest`` (the server caps it at 30)."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    """lists: at most this many items in the page (1..1000; the page is also cut at half
    the server's max_payload, so it may hold fewer: follow ``next`` until it is null)."""
    after: str | None = None
    """lists: the ``next`` of the previous page (an opaque cursor): the page starts after it."""


class Page(msgspec.Struct, kw_only=True):
    """One page of a list: ``items`` in the view's key order, ``next`` the cursor of the
    page after it (pass it as ``after``; null: this is the last page)."""

    next: str | None = None
    position: int = 0
    """The views' position this page was read at: ask the next pages with
    ``min_position`` = it, so a replica further behind does not serve them (views that
    follow several cells: 0, see ``positions``)."""
    positions: dict[str, int] = {}
    """The views' position in each cell's store this page was read at: ask the next pages
    with ``positions`` = it."""


class InstancePage(Page, kw_only=True):
    """Instances in (created_at, uuid) order."""

    items: list[InstanceView]


class HostPage(Page, kw_only=True):
    """Compute hosts in name order."""

    items: list[HostView]


class ActionPage(Page, kw_only=True):
    """One instance's actions (os-instance-actions) in (start_time, request_id) order."""

    items: list[ActionView]


class ImagePage(Page, kw_only=True):
    """Images in (created_at, image_id) order."""

    items: list[ImageView]


class MigrationPage(Page, kw_only=True):
    """Migrations rows in (created_at, id) order."""

    items: list[MigrationView]


class _Cursor(msgspec.Struct, forbid_unknown_fields=True):
    """What ``next``/``after`` carry (base64url JSON): the view and its last item's key."""

    v: str
    k: list[str]


class InstanceDetail(msgspec.Struct, kw_only=True):
    """One instance with Nova's instance actions, faults and migrations rows."""

    instance: InstanceView
    actions: list[ActionView]
    faults: list[FaultView]
    migrations: list[MigrationView] = []


class QueryRefused(Exception):
    """Why a query is answered ``Rejected`` (its error code and message)."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error


Rows = Callable[[ViewStore, str | None, QueryRequest, list[str] | None, int], list[Any]]
"""A list's rows: (views, subject key, request, after this item key, at most n)."""


@dataclass(frozen=True)
class Query:
    """One view on ``compute.query.<name>[.<key>]``: what it answers and how. A list gives
    ``rows`` and ``order`` (its item's key, for the cursor) instead of ``handler``; its
    reply is a ``Page`` of its items."""

    name: str
    summary: str
    reply: Any
    handler: Callable[[ViewStore, str | None, QueryRequest], Any] | None = None
    key: str | None = None
    """What the subject's last token names, when the view takes one."""
    key_required: bool = False
    rows: Rows | None = None
    order: Callable[[Any], list[str]] | None = None


def encode_cursor(view: str, key: list[str]) -> str:
    """A page's ``next``: opaque to clients (so the key's shape may change), and naming
    its view (a cursor of another list is refused, not misread)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(_Cursor(view, key))).decode().rstrip("=")


def decode_cursor(view: str, after: str | None) -> list[str] | None:
    """The key in an ``after`` cursor of this view; a cursor that is not one is refused."""
    if after is None:
        return None
    try:
        cursor = msgspec.json.decode(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)),
                                     type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise QueryRefused(ErrorCode.INVALID_PAYLOAD,
                           f"after: {after[:40]!r} is not a cursor (give a page's next)"
                           ) from None
    if cursor.v != view:
        raise QueryRefused(ErrorCode.INVALID_PAYLOAD,
                           f"after: a cursor of {cursor.v}, not of {view}")
    return cursor.k


def _uuid(key: str) -> str:
    try:
        return str(UUID(key))
    except ValueError:
        raise QueryRefused(ErrorCode.INVALID_PAYLOAD, f"{key!r} is not a UUID") from None


def _instance(views: ViewStore, key: str | None, req: QueryRequest) -> InstanceDetail:
    uuid = _uuid(key or "")
    view = views.get_instance(uuid)
    if view is None:
        raise QueryRefused(ErrorCode.INSTANCE_NOT_FOUND, f"Instance {uuid} could not be found.")
    return InstanceDetail(instance=view, actions=views.list_actions(uuid),
                          faults=views.list_faults(uuid), migrations=views.list_migrations(uuid))


def _host(views: ViewStore, key: str | None, req: QueryRequest) -> HostView:
    view = views.get_host(key or "")
    if view is None:
        raise QueryRefused(ErrorCode.COMPUTE_HOST_NOT_FOUND,
                           f"Compute host {key} could not be found.")
    return view


QUERIES: dict[str, Query] = {q.name: q for q in (
    Query("instances", "Nova's instances (servers list), paged: filters host, vm_state, "
          "include_deleted", InstancePage,
          rows=lambda v, k, r, after, n: v.list_instances(
              host=r.host, vm_state=r.vm_state, include_deleted=r.include_deleted,
              after=after, limit=n),
          order=lambda i: [i.created_at, i.uuid]),
    Query("instance", "One instance with its actions, faults and migrations",
          InstanceDetail, _instance, key="instance_uuid", key_required=True),
    Query("hosts", "Every compute host's resources (os-hypervisors), paged", HostPage,
          rows=lambda v, k, r, after, n: v.list_hosts(after=after, limit=n),
          order=lambda h: [h.host]),
    Query("host", "One compute host's resources", HostView, _host, key="host",
          key_required=True),
    Query("actions", "One instance's actions and their events (os-instance-actions), "
          "paged", ActionPage,
          rows=lambda v, k, r, after, n: v.list_actions(_uuid(k or ""), after=after, limit=n),
          order=lambda a: [a.start_time, a.request_id], key="instance_uuid",
          key_required=True),
    Query("images", "Snapshot and backup images (of one instance with the key), paged; "
          "filter include_deleted", ImagePage,
          rows=lambda v, k, r, after, n: v.list_images(
              _uuid(k) if k else None, r.include_deleted, after=after, limit=n),
          order=lambda i: [i.created_at, i.image_id], key="instance_uuid"),
    Query("migrations", "Nova's migrations rows (of one instance with the key), paged; "
          "filter host", MigrationPage,
          rows=lambda v, k, r, after, n: v.list_migrations(
              _uuid(k) if k else None, r.host, after=after, limit=n),
          order=lambda m: [m.created_at, m.id], key="instance_uuid"),
)}


async def fleet_hosts(nc: NATS, timeout: float = 10.0) -> list[HostView]:
    """Every compute host's view, page by page, from the query service (``latest``: each
    host's last report): what a host that keeps only its own views places a move with.
    (A host's connection publishes to ``compute.query.`` only inside ``relaying()``: its
    guard keeps any requester from making it publish there by a reply address.)"""
    hosts: list[HostView] = []
    body: dict[str, Any] = {"latest": True, "timeout": max(timeout - 1.0, 0.5)}
    while True:
        with relaying():     # a host's guarded connection asks a query only from here
            reply = await nc.request("compute.query.hosts", _encoder.encode(body),
                                     timeout=timeout)
        page = msgspec.json.decode(reply.data)
        if isinstance(page, dict) and page.get("outcome") == "Rejected":
            raise QueryRefused(ErrorCode(page["error"]), page["message"])
        page = msgspec.convert(page, HostPage)
        hosts += page.items
        if page.next is None:
            return hosts
        body = {"after": page.next, "positions": page.positions,
                "timeout": body["timeout"]}


class QueryService:
    """Serves ``compute.query.>`` from ``views``, which ``projectors`` keep (one per cell,
    each following its cell's store with its own position: a host's embedded views follow
    its one store; a ``compute queries`` replica follows every cell's)."""

    def __init__(self, nc: NATS, views: ViewStore, projector: Projector | dict[str, Projector],
                 *, host: str = "", cell: str = "cell1", fleet: Sequence[str] = ()) -> None:
        self.nc = nc
        self.views = views
        self.projectors = projector if isinstance(projector, dict) else {cell: projector}
        self.projector = next(iter(self.projectors.values()))
        self.cell = next(iter(self.projectors))
        self.host = host
        self.fleet = tuple(fleet) or tuple(self.projectors)
        """Every cell of the deployment (a replica's ``COMPUTE_CELLS``)."""
        self.elsewhere = tuple(c for c in self.fleet if c not in self.projectors)
        """The cells these views do not follow: asked on ``compute.cellquery.<cell>.>``."""
        self._answers_cells = bool(fleet)
        self._cell_subs: list[Any] = []
        self.positions = dict.fromkeys(self.projectors, 0)
        self._wakes = {c: asyncio.Event() for c in self.projectors}
        self._advanced = asyncio.Event()
        self._sub: Any = None
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def position(self) -> int:
        """The views' position in the (first) cell's store."""
        return self.positions[self.cell]

    @position.setter
    def position(self, value: int) -> None:
        self.positions[self.cell] = value

    async def start(self) -> None:
        """Serve the fleet's queries and, for a replica (given its ``fleet``), the questions
        of the replicas of other cells about the cells these views follow."""
        self._sub = await self.nc.subscribe("compute.query.>", queue=QUEUE_GROUP,
                                            cb=self._on_request)
        if self._answers_cells:
            for cell in self.projectors:
                self._cell_subs.append(await self.nc.subscribe(
                    f"{CELL_QUERY_PREFIX}{cell}.>", queue=f"{QUEUE_GROUP}-{cell}",
                    cb=self._on_request))

    async def stop(self) -> None:
        for sub in [self._sub, *self._cell_subs]:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        for task in list(self._in_flight):
            task.cancel()

    def wake(self, cell: str | None = None) -> None:
        """New events may be waiting in ``cell``'s store (None: in any)."""
        for name, event in self._wakes.items():
            if cell is None or cell == name:
                event.set()

    async def follow(self, idle_poll: float = 0.2, every: float = 0.0) -> None:
        """Keep the projections caught up with their logs (woken by commits, else polling),
        one loop per cell, at most one catch-up per ``every`` seconds per cell."""
        await asyncio.gather(*(self._follow(cell, idle_poll, every)
                               for cell in self.projectors))

    async def _follow(self, cell: str, idle_poll: float, every: float) -> None:
        projector, wake = self.projectors[cell], self._wakes[cell]
        loop = asyncio.get_running_loop()
        while True:
            wake.clear()
            started = loop.time()
            try:
                await asyncio.to_thread(projector.catch_up)
                position = await asyncio.to_thread(self.views.position, projector.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projection of cell %s failed; retrying", cell)
            else:
                self.advance(position, cell)
            if every:
                await asyncio.sleep(max(0.0, started + every - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), idle_poll)

    def advance(self, position: int, cell: str | None = None) -> None:
        """The views reached ``position`` in ``cell``'s store (also called by an outbox
        worker's report): wake every waiting request, each of which checks its own."""
        cell = cell or self.cell
        self.positions[cell] = max(self.positions[cell], position)
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()

    async def wait_for(self, position: int | dict[str, int], timeout: float) -> bool:
        """True once the views reached ``position`` (per cell: a dict); False after
        ``timeout``. Holds nothing while it waits (an event per advance, no lock)."""
        targets = position if isinstance(position, dict) else {self.cell: position}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self.positions[c] < p for c, p in targets.items()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)
        return True

    def targets(self, req: QueryRequest) -> dict[str, int]:
        """The least position per cell the request asks (``min_position`` in ``cell``, and
        ``positions``); a cell these views do not follow is refused."""
        targets = dict(req.positions)
        if req.min_position:
            if req.cell is None and len(self.fleet) > 1:
                raise QueryRefused(ErrorCode.INVALID_PAYLOAD,
                                   "min_position: say which cell's store it counts in "
                                   f"(cell: one of {', '.join(self.fleet)})")
            cell = req.cell or self.cell
            targets[cell] = max(targets.get(cell, 0), req.min_position)
        unknown = sorted(set(targets) - set(self.fleet))
        if unknown:
            raise QueryRefused(ErrorCode.INVALID_PAYLOAD,
                               f"cell {', '.join(unknown)}: these views follow "
                               f"{', '.join(self.fleet)}")
        return {c: p for c, p in targets.items() if c in self.projectors}

    async def _heads(self) -> dict[str, int]:
        """Every cell's last committed notification id (what ``latest`` waits for)."""
        heads = {}
        for cell, projector in self.projectors.items():
            heads[cell] = await asyncio.to_thread(
                projector.store.recorder.max_notification_id) or 0
        return heads

    async def _on_request(self, msg: Any) -> None:
        """The subscription's callback: hand the request to its own task and return."""
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            view = msg.subject.split(".", 3)[2] if msg.subject.count(".") >= 2 else ""
            await self._respond(msg, self._rejected(
                view, ErrorCode.SERVICE_UNAVAILABLE,
                f"{MAX_IN_FLIGHT} queries in flight on host {self.host}: retry shortly"), view)
            return
        task = asyncio.create_task(self._serve(msg), name=f"query {msg.subject}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _serve(self, msg: Any) -> None:
        local = msg.subject.startswith(CELL_QUERY_PREFIX)   # another cell's replica asks
        tokens = msg.subject.split(".", 4 if local else 3)[1 if local else 0:]
        view = tokens[2] if len(tokens) > 2 else ""
        key = tokens[3] if len(tokens) > 3 else None
        try:
            data = await self._answer(view, key, msg.data, local)
        except QueryRefused as exc:
            data = self._rejected(view, exc.error, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("query %s failed", msg.subject)
            data = self._rejected(view, ErrorCode.INTERNAL_ERROR, str(exc))
        await self._respond(msg, data, view)

    async def _answer(self, view: str, key: str | None, data: bytes, local: bool = False
                      ) -> bytes:
        query = QUERIES.get(view)
        if query is None:
            raise QueryRefused(ErrorCode.UNKNOWN_OPERATION,
                               f"unknown view {view!r}; known: {', '.join(sorted(QUERIES))}")
        if query.key_required and not key:
            raise QueryRefused(ErrorCode.INVALID_PAYLOAD,
                               f"compute.query.{view}.<{query.key}> needs its {query.key}")
        try:
            req = msgspec.json.decode(data, type=QueryRequest) if data.strip() \
                else QueryRequest()
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise QueryRefused(ErrorCode.INVALID_PAYLOAD, f"invalid query body: {exc}") from None
        wait = min(max(req.timeout, 0.0), MAX_WAIT)
        targets = self.targets(req)
        if self.elsewhere and not local:
            return await self._fleet(query, key, req, data, wait, targets)
        return await self._local(query, key, req, wait, targets)

    async def _local(self, query: Query, key: str | None, req: QueryRequest, wait: float,
                     targets: dict[str, int]) -> bytes:
        """The answer from these views alone, once they reached ``targets``."""
        if req.latest:
            for cell, head in (await self._heads()).items():
                targets[cell] = max(targets.get(cell, 0), head)
        behind = {c: p for c, p in targets.items() if p > self.positions[c]}
        for cell in behind:
            self.wake(cell)
        if behind and not await self.wait_for(behind, wait):
            at = ", ".join(f"{c} {self.positions[c]} (not {p})" for c, p in behind.items()
                           if self.positions[c] < p)
            raise QueryRefused(ErrorCode.POSITION_NOT_REACHED,
                               f"the views of {self.host} are at position {at}, "
                               f"after {wait:g} s")
        if query.rows is not None:
            return await asyncio.to_thread(self._page, query, key, req)
        assert query.handler is not None
        return _encoder.encode(await asyncio.to_thread(query.handler, self.views, key, req))

    async def _fleet(self, query: Query, key: str | None, req: QueryRequest, data: bytes,
                     wait: float, targets: dict[str, int]) -> bytes:
        """The whole fleet's answer: these views' and the other cells' (``query_shards``)."""
        try:
            if query.rows is None:
                try:
                    return await self._local(query, key, req, wait, targets)
                except QueryRefused as exc:
                    if exc.error not in query_shards.NOT_FOUND:
                        raise
                return _encoder.encode(query_shards.first_found(await query_shards.ask_cells(
                    self.nc, self.elsewhere, query.name, key, data, wait)))
            mine, theirs = await asyncio.gather(
                self._local(query, key, req, wait, targets),
                query_shards.ask_cells(self.nc, self.elsewhere, query.name, key, data, wait))
        except query_shards.ShardRefused as exc:
            raise QueryRefused(exc.error, str(exc)) from None
        for answer in theirs:
            refused = query_shards.refusal(answer)
            if refused is not None:
                raise QueryRefused(refused.error, str(refused))
        pages = [msgspec.json.decode(mine, type=query.reply),
                 *(msgspec.convert(answer, query.reply) for answer in theirs)]
        assert query.order is not None
        items, more = query_shards.merge(pages, query.order, req.limit)
        positions: dict[str, int] = {}
        for page in pages:
            positions.update(page.positions)
        return await asyncio.to_thread(self._assemble, query, items, more, positions)

    def _page(self, query: Query, key: str | None, req: QueryRequest) -> bytes:
        """One page: up to ``limit`` items within ``PAGE_SHARE`` of ``max_payload``
        (each item is encoded once, the page is assembled from the encodings), and the
        cursor after the last one when more follow (one row more is read to know)."""
        assert query.rows is not None and query.order is not None
        positions = dict(self.positions)
        try:
            rows = query.rows(self.views, key, req, decode_cursor(query.name, req.after),
                              req.limit + 1)
        except ValueError as exc:          # a cursor's key of the wrong shape
            raise QueryRefused(ErrorCode.INVALID_PAYLOAD, f"after: {exc}") from None
        return self._assemble(query, rows[:req.limit], len(rows) > req.limit, positions)

    def _assemble(self, query: Query, rows: list[Any], more: bool,
                  positions: dict[str, int]) -> bytes:
        """The page of ``rows`` (more follow them if ``more``) cut at ``PAGE_SHARE`` of
        ``max_payload``: each item is encoded once, the page assembled from the encodings."""
        assert query.order is not None
        budget = int(self.nc.max_payload * PAGE_SHARE)
        items: list[msgspec.Raw] = []
        size = 0
        for row in rows:                   # (on a worker thread: msgspec's plain encode)
            item = msgspec.json.encode(row)
            if items and size + len(item) + 1 > budget:
                break
            items.append(msgspec.Raw(item))
            size += len(item) + 1
        more = more or len(items) < len(rows)
        return msgspec.json.encode(query.reply(
            items=items, positions=positions,
            position=positions[self.cell] if len(positions) == 1 else 0,
            next=encode_cursor(query.name, query.order(rows[len(items) - 1]))
            if more and items else None))

    def _rejected(self, view: str, error: ErrorCode, message: str) -> bytes:
        return _encoder.encode(Rejected(command_id=None, uuid=None, operation=f"query.{view}",
                                        host=self.host, error=error, message=message))

    async def _respond(self, msg: Any, data: bytes, view: str) -> None:
        """Send the answer; one that cannot be sent is logged and answered ``Rejected``
        instead (``ReplyTooLarge`` over ``max_payload``), so the asker hears why."""
        if not msg.reply:
            return
        try:
            await msg.respond(data)
            return
        except nats.errors.MaxPayloadError:
            error, message = ErrorCode.REPLY_TOO_LARGE, (
                f"the reply of compute.query.{view} is {len(data)} bytes, over the server's "
                f"max_payload of {self.nc.max_payload}: ask a page (limit) or a narrower "
                "filter")
        except Exception as exc:
            error = ErrorCode.INTERNAL_ERROR
            message = f"the reply of compute.query.{view} could not be sent: {exc!r}"
        log.error("query %s: %s", msg.subject, message)
        try:
            await msg.respond(self._rejected(view, error, message))
        except Exception as exc:          # the connection itself is gone: say so, at least
            log.error("query %s: not even its refusal could be sent: %r", msg.subject, exc)
