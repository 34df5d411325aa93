"""A follower's position in the notification log, recorded beside its work, not in its way.

The relay and the notifier publish a page, wait for JetStream's acks, then record how far
they got, so that a restart resumes there. Recording is a write transaction on the event
store itself (the tracking table), with its own fsync, which both held up the follower's next
page and took the store's write lock from the host's commits (trace: an event reached
``COMPUTE_EVENTS`` ~5 ms after its commit, most of it the previous page's tracking write).

Here the follower hands over the position and goes on; one background write at a time,
at most one every ``every`` seconds, records the latest position handed over (positions that
arrive meanwhile coalesce into one write: under load the store sees a few tracking
transactions a second instead of one per page, each of which held its write lock). What is recorded is always a position whose page JetStream has acked, so the
guarantee is unchanged: a crash re-sends at most what was published since the last write,
and JetStream's duplicate window (``Nats-Msg-Id``) drops those copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

log = logging.getLogger("compute.positions")


class PositionRecorder:
    def __init__(self, tracker: Any, name: str, *, every: float = 0.1,
                 on_ahead: Callable[[int], None] | None = None) -> None:
        self.tracker = tracker
        self.name = name
        self.on_ahead = on_ahead        # another follower recorded a later position
        self.wanted = 0
        self.recorded = 0
        self.every = every
        self._task: asyncio.Task[None] | None = None

    def record(self, position: int) -> None:
        """Record ``position`` (acked by JetStream) soon; returns at once."""
        self.wanted = max(self.wanted, position)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def flush(self) -> None:
        """Wait until the last position handed over is recorded (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _write(self) -> None:
        while self.recorded < self.wanted:
            position = self.wanted
            try:
                await asyncio.to_thread(self.tracker.insert_tracking,
                                        Tracking(self.name, position))
            except IntegrityError:     # another follower recorded a later position
                ahead = await asyncio.to_thread(self.tracker.max_tracking_id, self.name) or 0
                log.warning("%s: another follower is ahead (%d); following it", self.name,
                            ahead)
                if self.on_ahead is not None and ahead > position:
                    self.on_ahead(ahead)
                position = max(position, ahead)
            except Exception:          # the store is unavailable: the next page retries
                log.exception("%s: recording position %d failed", self.name, position)
                return
            self.recorded = max(self.recorded, position)
            await asyncio.sleep(self.every)      # what comes meanwhile waits for one write
