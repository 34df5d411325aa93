"""Nova's periodic tasks as loops, and the gauges sampled every second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js import JetStreamContext

from compute.actors.router import Router
from compute.messaging.connection import Connection
from compute.messaging.outbox import OutboxProcess
from compute.messaging.relay import Relay
from compute.messaging.subjects import COMMANDS_STREAM
from compute.metrics import Metrics
from compute.store.app import ComputeStore
from compute.store.writer import GroupCommitWriter

log = logging.getLogger("compute.host")


async def every(interval: float, task: Callable[[], Awaitable[Any]]) -> None:
    """Run ``task`` every ``interval`` seconds (a negative interval disables it); a failure
    is logged and the next round comes all the same."""
    if interval < 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await task()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic task %s failed", getattr(task, "__name__", task))


class MetricsSampler:
    def __init__(self, host: str, metrics: Metrics, router: Router, nc: Connection,
                 js: JetStreamContext, writer: GroupCommitWriter, store: ComputeStore,
                 relay: Relay | OutboxProcess) -> None:
        self.host = host
        self.metrics = metrics
        self.router = router
        self.nc = nc
        self.js = js
        self.writer = writer
        self.store = store
        self.relay = relay

    async def sample_metrics(self) -> None:
        """The gauges: resident actors, bus up, committed events, relay lag, consumer backlog."""
        m = self.metrics
        m.actors.set(len(self.router.actors))
        m.bus_up.set(1 if self.nc.read_loop_alive else 0)
        m.events.set(self.writer.events)
        last = await asyncio.to_thread(self.store.recorder.max_notification_id) or 0
        m.relay_lag.set(max(last - self.relay.position, 0))
        with contextlib.suppress(Exception):
            info = await self.js.consumer_info(COMMANDS_STREAM, f"host-{self.host}")
            m.consumer_pending.set(info.num_pending)
