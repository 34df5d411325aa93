"""Queries on ``compute.query.<view>[.<key>]``, answered from the projections.

Replicas share the load through a queue group. A request may carry ``min_position`` (the
``position`` an outcome reported) to read its own writes: the answer waits until the
projection has applied at least that far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
from nats.aio.client import Client as NATS

from compute.projections.projector import Projector
from compute.projections.views import ViewStore

log = logging.getLogger("compute.query")

QUEUE_GROUP = "compute-query"
_encoder = msgspec.json.Encoder()


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True):
    min_position: int = 0
    host: str | None = None
    vm_state: str | None = None
    include_deleted: bool = False
    timeout: float = 5.0


class QueryError(msgspec.Struct):
    error: str
    message: str


class InstanceDetail(msgspec.Struct):
    instance: Any
    actions: list[Any]
    faults: list[Any]
    migrations: list[Any] = []


def _instance(views: ViewStore, key: str | None, req: QueryRequest) -> Any:
    if key is None:
        raise LookupError("compute.query.instance.<uuid> needs a uuid")
    uuid = str(UUID(key))
    view = views.get_instance(uuid)
    if view is None:
        raise LookupError(f"Instance {uuid} could not be found.")
    return InstanceDetail(instance=view, actions=views.list_actions(uuid),
                          faults=views.list_faults(uuid), migrations=views.list_migrations(uuid))


def _host(views: ViewStore, key: str | None, req: QueryRequest) -> Any:
    view = views.get_host(key or "")
    if view is None:
        raise LookupError(f"Host {key} could not be found.")
    return view


HANDLERS: dict[str, Callable[[ViewStore, str | None, QueryRequest], Any]] = {
    "instances": lambda v, k, r: v.list_instances(host=r.host, vm_state=r.vm_state,
                                                  include_deleted=r.include_deleted),
    "instance": _instance,
    "hosts": lambda v, k, r: v.list_hosts(),
    "images": lambda v, k, r: v.list_images(str(UUID(k)) if k else None, r.include_deleted),
    "host": _host,
    "migrations": lambda v, k, r: v.list_migrations(str(UUID(k)) if k else None, r.host),
}


class QueryService:
    def __init__(self, nc: NATS, views: ViewStore, projector: Projector) -> None:
        self.nc = nc
        self.views = views
        self.projector = projector
        self.position = 0
        self._wake = asyncio.Event()
        self._advanced = asyncio.Condition()
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe("compute.query.>", queue=QUEUE_GROUP,
                                            cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def wake(self) -> None:
        self._wake.set()

    async def follow(self, idle_poll: float = 0.2) -> None:
        """Keep the projections caught up with the log (woken by commits, else polling)."""
        while True:
            self._wake.clear()
            try:
                await asyncio.to_thread(self.projector.catch_up)
                self.position = await asyncio.to_thread(self.views.position, self.projector.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projection update failed; retrying")
            await self.advance(self.position)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle_poll)

    def advance(self, position: int) -> Any:
        """The views reached ``position`` (also called by an outbox worker's report)."""
        self.position = max(self.position, position)
        return asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()

    async def wait_for(self, position: int, timeout: float) -> bool:
        async with self._advanced:
            try:
                await asyncio.wait_for(
                    self._advanced.wait_for(lambda: self.position >= position), timeout)
            except TimeoutError:
                return False
        return True

    async def _on_request(self, msg: Any) -> None:
        tokens = msg.subject.split(".", 3)
        view = tokens[2] if len(tokens) > 2 else ""
        key = tokens[3] if len(tokens) > 3 else None
        try:
            req = msgspec.json.decode(msg.data, type=QueryRequest) if msg.data.strip() \
                else QueryRequest()
            handler = HANDLERS.get(view)
            if handler is None:
                raise KeyError(f"unknown view {view!r}; known: {', '.join(sorted(HANDLERS))}")
            if req.min_position and not await self.wait_for(req.min_position, req.timeout):
                raise TimeoutError(f"views have not reached position {req.min_position}")
            result = await asyncio.to_thread(handler, self.views, key, req)
            body = _encoder.encode(result)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            body = _encoder.encode(QueryError(error="InvalidQuery", message=str(exc)))
        except LookupError as exc:
            body = _encoder.encode(QueryError(error="NotFound", message=str(exc).strip("'\"")))
        except TimeoutError as exc:
            body = _encoder.encode(QueryError(error="Timeout", message=str(exc)))
        except Exception as exc:
            log.exception("query %s failed", msg.subject)
            body = _encoder.encode(QueryError(error="InternalError", message=str(exc)))
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(body)
