"""The host's end of the outbox: the relay (this host's events, and those of no host's
aggregates on a lease), the notifier and the projector, woken after each commit. They run
as tasks of the host process, or in one worker process that reports its positions back
(``settings.outbox``: ``compute.messaging.outbox``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from compute.messaging.notifier import Notifier
from compute.messaging.outbox import OutboxProcess
from compute.messaging.queries import QueryService
from compute.messaging.relay import Relay

log = logging.getLogger("compute.host")


class TaskOutbox:
    """Relay, shared relay, notifier and projector as tasks of the host's event loop."""

    def __init__(self, relay: Relay, shared_relay: Relay, notifier: Notifier,
                 queries: QueryService, *, notifications: bool) -> None:
        self.relay = relay
        self.shared_relay = shared_relay
        self.notifier = notifier
        self.queries = queries
        self.notifications = notifications
        self._loop = asyncio.get_running_loop()

    def committed(self, last_id: int) -> None:
        """Writer thread: new events are durable; wake the relay and the projector."""
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.relay.wake()
        self.shared_relay.wake()
        self.notifier.wake()
        self.queries.wake()

    def tasks(self) -> list[asyncio.Task[Any]]:
        notifying = [asyncio.create_task(self.notifier.run(), name="notifier")] \
            if self.notifications else []
        return [asyncio.create_task(self.relay.run(), name="relay"),
                asyncio.create_task(self.shared_relay.run(), name="shared-relay"),
                *notifying,
                asyncio.create_task(self.queries.follow(), name="projector")]

    async def finish(self, host: str, timeout: float = 5.0) -> None:
        """A host that stops cleanly publishes the events it committed, and their
        notifications: only this host may publish them (issue 18 item 7), so what it left
        would wait for its return. (The ``_shared`` events are the next lease holder's.)"""
        followers = [self.relay, self.notifier] if self.notifications else [self.relay]
        try:
            async with asyncio.timeout(timeout):
                for follower in followers:
                    while await follower.run_once():
                        pass
                    await follower.positions.flush()
        except Exception as exc:                # (a timeout, a lost connection)
            log.warning("stopping: %s left unpublished events: %r", host, exc)

    async def close(self) -> None:
        """Nothing of its own to close: its tasks are the host's."""


class WorkerOutbox:
    """The worker process (off the actors' GIL): one handle stands for the relay, the
    shared relay and the notifier (``position`` is the relay's)."""

    def __init__(self, process: OutboxProcess) -> None:
        self.relay = self.shared_relay = self.notifier = process
        self.process = process

    def committed(self, last_id: int) -> None:
        """Writer thread: a byte on the worker's pipe, no event-loop hop."""
        self.process.wake()

    def tasks(self) -> list[asyncio.Task[Any]]:
        self.process.start()
        return [asyncio.create_task(self.process.run(), name="outbox-worker")]

    async def finish(self, host: str, timeout: float = 5.0) -> None:
        """The worker finishes its page when told to stop (``close``)."""

    async def close(self) -> None:
        await self.process.close()


HostOutbox = TaskOutbox | WorkerOutbox
