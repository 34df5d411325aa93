"""ComputeClient: publish a command and await its outcome; query the views.

    async with await ComputeClient.connect("nats://127.0.0.1:14222") as client:
        outcome = await client.send("host1", uuid, "reboot_instance", {"reboot_type": "HARD"})

Commands go through JetStream (durable: they wait for a host that is down), with the command
id as ``Nats-Msg-Id`` (the server drops a re-publish within its duplicate window) and a reply
inbox in ``Compute-Reply-To`` for the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from compute.domain.placement import pick_host
from compute.events.commands import Flavor
from compute.events.outcomes import AnyOutcome, Moved
from compute.messaging.credentials import connect, connect_options
from compute.messaging.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    NOTIFICATIONS_STREAM,
    MSG_ID,
    REPLY_TO,
    command,
    query,
)
from compute.messaging.users import consumer_names
from compute.projections.views import HostView

_decoder = msgspec.json.Decoder(AnyOutcome)
MSG_ID_IN_PROCESS = 10158   # JetStream: "duplicate message id is in process"
EPHEMERAL_IDLE = 30.0       # seconds: a follower's own consumer outlives a crashed follower so long


def _user_of(nc: NATS) -> str:
    """The user a connection takes its replies as (its inbox prefix is ``_INBOX.<user>``)."""
    prefix = nc._inbox_prefix                 # nats-py keeps it only privately
    prefix = prefix.decode() if isinstance(prefix, (bytes, bytearray)) else str(prefix)
    return prefix.split(".", 1)[1] if "." in prefix else "operator"

MAX_RETRY_IDS = 100
"""Retries of one command within JetStream's duplicate window, ``<id>:2`` ... ``<id>:100``."""


class DuplicateCommand(Exception):
    """JetStream already holds a command with this id (within its duplicate window)."""


class NoCommandStream(Exception):
    """Commands cannot be stored: the stream does not exist (no host ever started)."""


class QueryFailed(Exception):
    """A query answered ``Rejected``: ``error`` is its code (``InstanceNotFound``,
    ``ComputeHostNotFound``, ``PositionNotReached``, ...)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message


class NoAnswer(nats.errors.TimeoutError):
    """A request no one answered in time (a ``nats.errors.TimeoutError``, so code that
    catches that still does), naming what was asked: the subject tells who should have
    answered (a host's call, or the views' queue group), which a person needs to know."""

    def __init__(self, subject: str, seconds: float, attempts: int = 1) -> None:
        super().__init__()
        self.subject = subject
        self.seconds = seconds
        self.attempts = attempts

    def __str__(self) -> str:
        asked = f" (asked {self.attempts} times)" if self.attempts > 1 else ""
        return f"no answer on {self.subject} within {self.seconds:g} s{asked}"


class PermissionDenied(Exception):
    """The server refused this user the subject (its role in nats.conf does not allow it)."""


class ComputeClient:
    def __init__(self, nc: NATS, denied: list[str] | None = None,
                 user: str | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.user = user or _user_of(nc)
        """The NATS user, whose consumer names (``users.consumer_names``) this client uses."""
        self.denied = denied if denied is not None else []
        """The server's permission violations seen on this connection (nats-py reports
        them to the error callback; a refused request would otherwise just time out)."""
        self.position = 0
        """The highest ``position`` of an outcome this client received: its queries pass
        it as ``min_position``, so a read after a command sees the command's effect."""
        self.positions: dict[str, int] = {}
        """The same per cell (an outcome's ``cell``: each cell's store counts on its own);
        queries pass it as ``positions`` when the outcomes named their cell."""

    @classmethod
    async def connect(cls, url: str, *, user: str = "operator",
                      credentials: str | None = None, **options: Any) -> ComputeClient:
        """Connect as the URL's user, else as ``user`` with its password from the
        ``credentials`` directory (``compute.messaging.credentials``)."""
        denied: list[str] = []

        async def on_error(exc: Exception) -> None:
            if "permissions violation" in str(exc).lower():
                denied.append(str(exc))

        options.setdefault("error_cb", on_error)
        return cls(await connect(url, user, credentials, name="compute-client", **options),
                   denied, connect_options(url, user)["inbox_prefix"].split(".", 1)[1])

    def _refused(self, subject: str) -> None:
        for violation in self.denied:
            if f'"{subject.lower()}"' in violation.lower():
                raise PermissionDenied(violation.removeprefix("nats: ")) from None

    async def __aenter__(self) -> ComputeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.nc.drain()

    async def send(self, host: str, uuid: str | uuidlib.UUID, operation: str,
                   payload: dict[str, Any] | None = None, *, command_id: str | None = None,
                   timeout: float = 60.0, follow_moved: bool = True) -> AnyOutcome:
        """Publish one command and wait for its outcome (following ``Moved`` once)."""
        command_id = command_id or str(uuidlib.uuid4())
        body = msgspec.json.encode({**(payload or {}), "command_id": command_id})
        outcome = await self.send_raw(command(host, str(uuid), operation), body,
                                      msg_id=command_id, timeout=timeout, retry=True)
        if follow_moved and isinstance(outcome, Moved):
            # the same command (same id: idempotent there) to the owner; the stream's
            # Nats-Msg-Id must differ, or JetStream would drop it as the first's duplicate
            body = msgspec.json.encode({**(payload or {}), "command_id": command_id})
            outcome = await self.send_raw(command(outcome.to_host, str(uuid), operation), body,
                                          msg_id=f"{command_id}@{outcome.to_host}",
                                          timeout=timeout, retry=True)
        return outcome

    async def send_raw(self, subject: str, data: bytes, *, msg_id: str | None = None,
                       timeout: float = 60.0, retry: bool = False) -> AnyOutcome:
        """Publish bytes as they are (tests of hostile input use this) and await the outcome.

        A message id JetStream already holds (within its 2-minute duplicate window) is not
        stored again, so no outcome would come: with ``retry`` the command is published
        again as the contract's retry, ``Nats-Msg-Id = <msg_id>:<n>`` (n = 2, 3, ...), and
        the host, which knows the command by its ``command_id``, answers it (from the log,
        ``duplicate: true``, when it already ran). Without it, ``DuplicateCommand``."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        try:
            headers = {REPLY_TO: inbox}
            if msg_id:
                headers[MSG_ID] = msg_id
            deadline = asyncio.get_running_loop().time() + timeout
            ack = await self._publish(subject, data, headers, deadline)
            attempt = 1
            while ack.duplicate and not getattr(ack, "retried", False):
                attempt += 1
                if not retry or msg_id is None or attempt > MAX_RETRY_IDS:
                    raise DuplicateCommand(f"command {msg_id} was already published")
                headers[MSG_ID] = f"{msg_id}:{attempt}"
                ack = await self._publish(subject, data, headers, deadline)
            msg = await sub.next_msg(timeout=max(deadline - asyncio.get_running_loop().time(),
                                                 0.001))
            outcome = _decoder.decode(msg.data)
            self.saw(outcome)
            return outcome
        finally:
            await sub.unsubscribe()

    def saw(self, outcome: Any) -> None:
        """Remember an outcome's position (in its cell), for reading one's own writes."""
        position = getattr(outcome, "position", 0) or 0
        self.position = max(self.position, position)
        cell = getattr(outcome, "cell", None)
        if cell and position:
            self.positions[cell] = max(self.positions.get(cell, 0), position)

    async def place(self, flavor: Flavor, exclude: set[str] = frozenset()) -> str | None:
        """The host a new instance of ``flavor`` should go to (most free RAM that fits),
        from the host view as of now (``latest``: every host's last report, not what the
        answering replica had projected); the host's own claim is the final word."""
        hosts = [msgspec.convert(h, HostView)
                 async for h in self.list_all("hosts", latest=True)]
        return pick_host(hosts, flavor, exclude)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str],
                       deadline: float) -> Any:
        """Publish to JetStream; while a cluster fails over (the node gone, a stream leader
        being elected) the publish is repeated with the same ``Nats-Msg-Id`` until the
        deadline: the server stores it once, and a duplicate ack then means an earlier try
        landed (marked ``retried``), not that the command was sent before."""
        loop = asyncio.get_running_loop()
        tries = 0
        while True:
            try:
                ack = await self.js.publish(subject, data, headers=headers,
                                            timeout=max(min(5.0, deadline - loop.time()), 0.1))
                ack.retried = tries > 0
                return ack
            except nats.js.errors.NoStreamResponseError:
                if MSG_ID not in headers or not await self._commands_stream_exists():
                    raise NoCommandStream(
                        "no COMPUTE_COMMANDS stream answers: no compute host has started on "
                        "this NATS yet") from None
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError,
                    nats.errors.ConnectionReconnectingError):
                self._refused(subject)           # a refused subject times out too
                if MSG_ID not in headers:
                    raise
            except nats.js.errors.APIError as exc:
                if exc.err_code != MSG_ID_IN_PROCESS:   # an earlier try still being stored
                    raise
            tries += 1
            if loop.time() >= deadline:
                raise nats.errors.TimeoutError
            await asyncio.sleep(min(0.2 * tries, 1.0))

    async def _commands_stream_exists(self) -> bool:
        """False only when the server says there is no such stream (a cluster electing its
        leader answers nothing for a moment, which is not that)."""
        try:
            await self.js.stream_info(COMMANDS_STREAM)
        except nats.js.errors.NotFoundError:
            return False
        except Exception:
            return True
        return True

    async def events(self, *, durable: str | None = None, host: str = "*",
                     uuid: str = "*", event: str = "*",
                     deliver_new: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Lifecycle events from ``COMPUTE_EVENTS``, each acknowledged once handed over.

        With ``durable`` the position is kept by JetStream: a subscriber that restarts under
        the same name continues where it stopped (billing, DNS, audit...). A reader may name
        only its own consumers (``users.consumer_names``: its user name, or ``<user>~1`` ..
        ``<user>~7``); the server refuses any other."""
        async for msg in self.event_messages(f"compute.evt.{host}.{uuid}.{event}",
                                             durable=durable, deliver_new=deliver_new):
            yield msgspec.json.decode(msg.data)

    async def event_messages(self, subject: str, *, durable: str | None = None,
                             deliver_new: bool = False, since: datetime | None = None,
                             idle: float | None = None,
                             stream: str = EVENTS_STREAM,
                             on_ready: Callable[[], None] | None = None
                             ) -> AsyncIterator[Any]:
        """The stream's messages on ``subject`` through a pull consumer named by this user
        (``durable``, else the first free one of its ``<user>~n``, removed at the end), each
        acked once handed over; stops after ``idle`` seconds without one (None: never).
        They start at the first message, at new ones only (``deliver_new``), or at ``since``.

        The consumer is created by name, so the create request's subject carries the name
        the server's permissions check (issue 18 item 8). It exists only once the iteration
        has begun: ``on_ready`` is called then, so whoever says "from now" says it when it is
        true (an event published before would be missed)."""
        name, sub = await self._pull(subject, durable=durable, deliver_new=deliver_new,
                                     since=since, stream=stream)
        if on_ready is not None:
            on_ready()
        pending: list[Any] = []
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        try:
            while True:
                try:
                    pending = list(await sub.fetch(100, timeout=1.0 if idle is None
                                                   else min(idle, 1.0)))
                except (TimeoutError, nats.errors.TimeoutError):
                    if idle is not None and loop.time() - quiet_since >= idle:
                        return
                    continue
                except nats.js.errors.ServiceUnavailableError:
                    # no responder for the pull: in a cluster, the new consumer's leader
                    # is still being elected (or moved with a node); it answers shortly
                    if idle is not None and loop.time() - quiet_since >= idle:
                        return
                    await asyncio.sleep(0.2)
                    continue
                quiet_since = loop.time()
                while pending:
                    msg = pending.pop(0)
                    try:
                        yield msg
                    finally:             # handed over (a caller that stops has seen it;
                        with contextlib.suppress(Exception):     # a closed connection
                            await msg.ack()          # redelivers it to the next reader)
        finally:
            for msg in pending:          # fetched, not handed over: redeliver them at once
                with contextlib.suppress(Exception):
                    await msg.nak()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            if durable is None:          # ours alone, for this iteration: gone with it
                with contextlib.suppress(Exception):
                    await self.js.delete_consumer(stream, name)

    async def reader(self, subject: str, *, stream: str | None = None,
                     deliver_new: bool = False) -> Reader:
        """One message at a time from ``subject`` (``reader.next_msg(timeout)``, then
        ``reader.unsubscribe()``), through one of this user's own consumer names: what a
        nameless ordered consumer (``js.subscribe(..., ordered_consumer=True)``) did, whose
        create subject carries no name the server's permissions can check (issue 18 item
        8). The stream is the one ``subject`` belongs to unless given."""
        stream = stream or (NOTIFICATIONS_STREAM if subject.startswith("compute.notify.")
                            else EVENTS_STREAM)
        name, sub = await self._pull(subject, durable=None, deliver_new=deliver_new,
                                     since=None, stream=stream)
        return Reader(self, stream, name, sub)

    async def _pull(self, subject: str, *, durable: str | None, deliver_new: bool,
                    since: datetime | None, stream: str) -> tuple[str, Any]:
        """A pull subscription on this user's consumer ``durable`` (else the first free
        ``<user>~n``), created by name when it does not exist."""
        name = durable or await self.free_consumer(stream)
        deliver = DeliverPolicy.BY_START_TIME if since is not None else \
            DeliverPolicy.NEW if deliver_new else DeliverPolicy.ALL
        try:
            await self.js.consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            await self.js.add_consumer(stream, ConsumerConfig(
                name=name, durable_name=durable, filter_subject=subject,
                deliver_policy=deliver, opt_start_time=since, ack_policy=AckPolicy.EXPLICIT,
                inactive_threshold=None if durable else EPHEMERAL_IDLE))
        except nats.errors.TimeoutError:
            self._refused(f"$JS.API.CONSUMER.INFO.{stream}.{name}")
            raise
        return name, await self.js.pull_subscribe_bind(name, stream=stream)

    async def free_consumer(self, stream: str) -> str:
        """The first of this user's ``<user>~n`` consumer names not in use on ``stream``."""
        for name in consumer_names(self.user)[1:]:
            try:
                await self.js.consumer_info(stream, name)
            except nats.js.errors.NotFoundError:
                return name
        raise RuntimeError(f"all of {self.user}'s consumer names on {stream} are in use "
                           f"({', '.join(consumer_names(self.user)[1:])}); delete one")

    async def query(self, view: str, key: str | None = None, *, timeout: float = 10.0,
                    retries: int = 0, **params: Any) -> Any:
        """Ask the projections; returns plain data (dicts/lists), raises QueryFailed.

        Without ``min_position`` the query reads at least this client's own writes (the
        highest outcome ``position`` it received): a list right after a ``Succeeded``
        shows it. The server is asked to give up a second before this client does, so a
        view that lags answers ``PositionNotReached`` rather than nothing."""
        if "min_position" not in params and "positions" not in params:
            if self.positions:       # the outcomes said their cells
                params["positions"] = dict(self.positions)
            else:
                params["min_position"] = self.position or None
        if params.get("min_position") or params.get("positions") or params.get("latest"):
            params["timeout"] = max(timeout - 1.0, 0.5)
        body = msgspec.json.encode({k: v for k, v in params.items() if v is not None})
        for attempt in range(retries + 1):
            try:
                reply = await self.nc.request(query(view, key), body, timeout=timeout)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                # ``retries``: a query is a read, asked again as it is. A replica that dies
                # (or is killed) with the request in hand never answers it, and NATS does
                # not tell; the queue group gives the next one to a live replica.
                self._refused(query(view, key))
                if attempt == retries:
                    if isinstance(exc, nats.errors.NoRespondersError):
                        raise
                    raise NoAnswer(query(view, key), timeout, retries + 1) from None
        data = msgspec.json.decode(reply.data)
        if isinstance(data, dict) and data.get("outcome") == "Rejected":
            raise QueryFailed(data["error"], data["message"])
        return data

    async def pages(self, view: str, key: str | None = None, *, timeout: float = 10.0,
                    **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every page of a list view (``instances``, ``hosts``, ``actions``, ``images``,
        ``migrations``), each as the server sent it (``items``, ``next``, ``position``).

        The first page is asked as ``query`` asks (``min_position``/``latest``); the
        next ones at least at the position the first was read at (another replica may
        serve them), each after the previous page's ``next``. Keyset paging: an item is
        listed once even while the list changes (one created meanwhile comes at the end
        or not at all)."""
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            page = await self.query(view, key, timeout=timeout, **params)
            yield page
            if page.get("next") is None:
                return
            params.pop("latest", None)
            params["after"] = page["next"]
            if page.get("positions"):       # each cell at least where this page was read
                positions = dict(params.get("positions") or {})
                for cell, position in [*page["positions"].items(), *self.positions.items()]:
                    positions[cell] = max(positions.get(cell, 0), position)
                params["positions"] = positions
            else:
                params["min_position"] = max(params.get("min_position") or 0,
                                             page.get("position") or 0, self.position) or None

    async def list_all(self, view: str, key: str | None = None, **params: Any
                       ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list view, read page by page (``limit`` per page; filters as
        ``QueryRequest``'s: ``host``, ``vm_state``, ``include_deleted``)."""
        async for page in self.pages(view, key, **params):
            for item in page["items"]:
                yield item

    def instances(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every instance (``host=``, ``vm_state=``, ``include_deleted=``), page by page."""
        return self.list_all("instances", **filters)

class Reader:
    """A subscription-like reader on one of its user's own pull consumers
    (``ComputeClient.reader``): each message is acknowledged as it is handed over, and the
    consumer is deleted by ``unsubscribe``."""

    def __init__(self, client: ComputeClient, stream: str, name: str, sub: Any) -> None:
        self.client, self.stream, self.name, self.sub = client, stream, name, sub

    async def next_msg(self, timeout: float = 1.0) -> Any:
        """The next message, or ``nats.errors.TimeoutError`` after ``timeout`` seconds
        (a consumer whose leader a cluster is still electing answers 503 meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                (msg,) = await self.sub.fetch(1, timeout=max(deadline - loop.time(), 0.05))
                break
            except nats.js.errors.ServiceUnavailableError:
                if loop.time() >= deadline:
                    raise nats.errors.TimeoutError from None
                await asyncio.sleep(0.1)
        with contextlib.suppress(Exception):
            await msg.ack()
        return msg

    async def unsubscribe(self) -> None:
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.client.js.delete_consumer(self.stream, self.name)
