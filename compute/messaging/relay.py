"""The relay: every committed event reaches ``COMPUTE_EVENTS`` exactly once, in log order.

The store's notification log is the outbox: the relay reads pages after its tracked position,
publishes each event's stored JSON unchanged to ``compute.evt.<host>.<uuid>.<Event>`` with
``Nats-Msg-Id = <uuid>:<version>``, waits for the acks, then records its position (in the
background: ``positions.py``). A crash
between publish and position re-sends what was published since the last recorded position, which JetStream's duplicate window
drops; publishing follows the store, never the reverse. Host services sharing a store share
the position, and a lease (``compute.store.lease``) lets one of them relay at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js import JetStreamContext

from compute.messaging.follower import LogFollower
from compute.messaging.subjects import SHARED_HOST
from compute.messaging.subjects import event as event_subject
from compute.store.app import ComputeStore
from compute.store.lease import Lease
from compute.store.log import read_rows
from compute.store.mapper import event_name
from compute.store.seal import ChainGuard, Refusal, store_key

log = logging.getLogger("compute.relay")

TRACKING_NAME = "jetstream-relay"


class _Head(msgspec.Struct):
    host: str = SHARED_HOST       # networks and security groups belong to no host


_head = msgspec.json.Decoder(_Head)


class Relay(LogFollower):
    tracking_name = TRACKING_NAME
    log = log

    def __init__(self, store: ComputeStore, js: JetStreamContext, *, page: int = 1000,
                 idle_poll: float = 0.2, lease: Lease | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        super().__init__(store, js, page=page, idle_poll=idle_poll, lease=lease,
                         on_progress=on_progress)
        self.guard = ChainGuard(store, store_key(store))
        self.refused: Refusal | None = None

    async def run_once(self) -> int:
        page = await asyncio.to_thread(self._genuine_page)
        if not page:
            return 0
        await self.publisher.publish_page(
            (event_subject(_head.decode(state).host, uuid, event_name(topic)),
             state, f"{uuid}:{version}") for _, uuid, version, topic, state in page)
        self.advanced(page[-1][0], len(page))
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
        return page
