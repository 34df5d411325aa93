"""The relay: every committed event reaches ``COMPUTE_EVENTS`` exactly once, in log order.

The store's notification log is the outbox: the relay reads pages after its tracked position,
publishes each event's stored JSON unchanged to ``compute.evt.<host>.<uuid>.<Event>`` with
``Nats-Msg-Id = <uuid>:<version>:<digest>`` (``subjects.message_id``), waits for the acks,
then records its position (in the background: ``positions.py``). A crash between publish and
position re-sends what was published since the last recorded position, which JetStream's
duplicate window drops; publishing follows the store, never the reverse.

A relay follows one host token (issue 18 item 7): the server lets host ``h1`` publish only
``compute.evt.h1.>`` (and ``compute.evt._shared.>``), so each host relays the events it wrote
(an event's ``host`` is its writer: an instance's owner, who alone writes it) with its own
tracked position, ``jetstream-relay:<host>``, and the events of aggregates no host owns
(networks, security groups: ``_shared``) are relayed by whichever host holds the lease on
``jetstream-relay:_shared``. Processes of one host sharing a store (a restart overlapping its
predecessor) still take turns on the lease of their host's relay. The price: an event of a
host that is down waits for it to come back, where a fleet-wide relay would have published
it; only that host may.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js import JetStreamContext

from compute.messaging.follower import LogFollower
from compute.messaging.subjects import SHARED_HOST, message_id
from compute.messaging.subjects import event as event_subject
from compute.store.app import ComputeStore
from compute.store.lease import Lease
from compute.store.log import read_rows
from compute.store.mapper import event_name
from compute.store.seal import ChainGuard, Refusal, store_key

log = logging.getLogger("compute.relay")

TRACKING_NAME = "jetstream-relay"

ORDER_WAIT = 30.0
"""Seconds a relay holds back an event of an instance that moved here until the host that
wrote the instance's previous event has published it (then it publishes anyway, and says
so: a host that is down must not stop another's events for good)."""

REMEMBER = 10_000
"""Aggregates whose last writer a relay remembers (the ones seen lately)."""


class _Head(msgspec.Struct):
    host: str = SHARED_HOST       # networks and security groups belong to no host


_head = msgspec.json.Decoder(_Head)


class Relay(LogFollower):
    tracking_name = TRACKING_NAME
    log = log

    def __init__(self, store: ComputeStore, js: JetStreamContext, *, host: str,
                 page: int = 1000, idle_poll: float = 0.2, lease: Lease | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        """``host``: the host token whose events this relay publishes (this host's name,
        or ``SHARED_HOST``)."""
        super().__init__(store, js, page=page, idle_poll=idle_poll, lease=lease,
                         on_progress=on_progress, host=host, listen=host == SHARED_HOST)
        self.host = host
        self.guard = ChainGuard(store, store_key(store))
        self.refused: Refusal | None = None
        self._writers: OrderedDict[str, tuple[int, str, int]] = OrderedDict()
        self._held_since: dict[tuple[str, int], float] = {}

    async def run_once(self) -> int:
        page = await asyncio.to_thread(self._genuine_page)
        if not page:
            return 0
        host = self.host
        sent = await self.publisher.publish_page(
            (event_subject(host, uuid, event_name(topic)), state,
             message_id(f"{uuid}:{version}", state))
            for _, uuid, version, topic, state in page if _head.decode(state).host == host)
        self.advanced(page[-1][0], sent)
        return len(page)

    def _genuine_page(self) -> list[Any]:
        """The next page, up to the first event whose chain link or seal does not verify
        (``ChainGuard``): that one is refused, logged once, and the relay stops before it
        (what follows may build on it) until the store is repaired; ``compute audit
        --verify`` names it."""
        page, refusal = self.guard.genuine(read_rows(self.store, self.position, self.page))
        if refusal is not None and refusal != self.refused:
            self.log.error("relay: refusing %s; nothing after it is published until the store "
                           "is repaired (compute audit --verify)", refusal)
        self.refused = refusal
        return self._in_order(page)

    def _in_order(self, page: list[Any]) -> list[Any]:
        """The page up to the first event of this host whose instance's previous event was
        written by another host that has not published it yet (the instance moved here):
        each host relays its own events, so without this a lagging source would put an
        instance's versions on the stream out of order (a subscriber reads them per
        instance, in order). Held back at most ``ORDER_WAIT`` seconds."""
        out = []
        for row in page:
            nid, uuid, version, _, state = row
            writer = _head.decode(state).host
            before = self._writers.get(uuid)
            if writer == self.host and before is not None and before[0] == version - 1 \
                    and before[1] != self.host and not self._published(before[1], before[2]):
                since = self._held_since.setdefault((uuid, version), time.monotonic())
                if time.monotonic() - since < ORDER_WAIT:
                    break
                self.log.warning("relay: %s v%d published before v%d, which host %s has "
                                 "not published after %.0f s", uuid, version, version - 1,
                                 before[1], ORDER_WAIT)
            self._held_since.pop((uuid, version), None)
            self._writers[uuid] = (version, writer, nid)
            self._writers.move_to_end(uuid)
            if len(self._writers) > REMEMBER:
                self._writers.popitem(last=False)
            out.append(row)
        return out

    def _published(self, host: str, nid: int) -> bool:
        """Whether ``host``'s relay has published the log up to notification ``nid``."""
        done = self.tracker.max_tracking_id(f"{TRACKING_NAME}:{host}") or 0
        return done >= nid
