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

import msgspec
from nats.js import JetStreamContext

from compute.messaging.pipeline import PagePublisher
from compute.messaging.positions import PositionRecorder
from compute.messaging.subjects import SHARED_HOST
from compute.messaging.subjects import event as event_subject
from compute.store.app import ComputeStore
from compute.store.lease import Lease, lease_for
from compute.store.mapper import event_name

log = logging.getLogger("compute.relay")

TRACKING_NAME = "jetstream-relay"
STANDBY_POLL = 1.0   # seconds between a standby relay's attempts to take the lease


class _Head(msgspec.Struct):
    host: str = SHARED_HOST       # networks and security groups belong to no host


_head = msgspec.json.Decoder(_Head)


class Relay:
    def __init__(self, store: ComputeStore, js: JetStreamContext, *, page: int = 1000,
                 idle_poll: float = 0.2, lease: Lease | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.js = js
        self.page = page
        self.idle_poll = idle_poll
        self.tracker = store.factory.tracking_recorder()
        self.position = 0
        self.published = 0
        self.on_progress = on_progress
        self.publisher = PagePublisher(js)
        self.positions = PositionRecorder(self.tracker, TRACKING_NAME, on_ahead=self._follow)
        self._wake = asyncio.Event()
        self.lease = lease or lease_for(store, TRACKING_NAME)

    def _follow(self, ahead: int) -> None:
        self.position = max(self.position, ahead)

    def wake(self) -> None:
        """Called on the loop after a commit: new events may be waiting."""
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.lease.close()

    async def _run(self) -> None:
        leading = False
        while True:
            try:
                if not await asyncio.to_thread(self.lease.held):   # another host relays
                    leading = False
                    self.position = await asyncio.to_thread(
                        self.tracker.max_tracking_id, TRACKING_NAME) or 0
                    await asyncio.sleep(STANDBY_POLL)
                    continue
                if not leading:   # (again) the relay: start where the last one recorded
                    self.position = await asyncio.to_thread(
                        self.tracker.max_tracking_id, TRACKING_NAME) or 0
                    leading = True
                sent = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay: publishing from %d failed; retrying", self.position)
                await asyncio.sleep(1.0)
                continue
            if sent == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll)
                except TimeoutError:
                    pass

    async def run_once(self) -> int:
        page = await asyncio.to_thread(
            self.store.recorder.select_notifications, self.position, self.page,
            inclusive_of_start=False)
        if not page:
            return 0
        await self.publisher.publish_page(
            (event_subject(_head.decode(n.state).host, str(n.originator_id),
                           event_name(n.topic)),
             n.state, f"{n.originator_id}:{n.originator_version}") for n in page)
        last = page[-1].id
        self.positions.record(last)           # acked: recorded in the background
        self.position = last
        self.published += len(page)
        if self.on_progress is not None:
            self.on_progress(last)
        return len(page)
