"""What the relay and the notifier share: following the store's notification log from a
tracked position, one follower at a time among the hosts sharing the store (the lease), woken
after commits, its position recorded in the background (``positions.py``)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from compute.messaging.pipeline import PagePublisher
from compute.messaging.positions import PositionRecorder
from compute.store.app import ComputeStore
from compute.store.lease import Lease, lease_for
from compute.store.notices import CommitNotices, notices_for

STANDBY_POLL = 1.0   # seconds between a standby follower's attempts to take the lease


class LogFollower(abc.ABC):
    """Subclasses name their tracking row and publish a page in ``run_once``."""

    tracking_name: str = ""
    log: logging.Logger = logging.getLogger("compute.follower")

    def __init__(self, store: ComputeStore, js: JetStreamContext, *, page: int,
                 idle_poll: float, lease: Lease | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 host: str | None = None, listen: bool = False) -> None:
        """``listen``: while holding the lease, be woken by other hosts' commits too
        (``compute.store.notices``: what the ``_shared`` relay needs, its events being
        written elsewhere), not only by this host's writer and the ``idle_poll``."""
        # One follower per host token (issue 18 item 7): each host publishes only what the
        # server lets it publish, so each tracks its own position, ``<name>:<host>``. Its
        # first start in a store that a fleet-wide follower (``<name>``, before per-host
        # publishing) already followed begins where that one stopped.
        self.legacy_name = type(self).tracking_name if host is not None else ""
        self.tracking_name = f"{type(self).tracking_name}:{host}" if host is not None \
            else type(self).tracking_name
        self.store = store
        self.js = js
        self.page = page
        self.idle_poll = idle_poll
        self.tracker = store.factory.tracking_recorder()
        self.position = 0
        self.published = 0
        self.on_progress = on_progress
        self.publisher = PagePublisher(js)
        self.positions = PositionRecorder(self.tracker, self.tracking_name,
                                          on_ahead=self._follow)
        self._wake = asyncio.Event()
        self.lease = lease or lease_for(store, self.tracking_name)
        self._listen = listen
        self.notices: CommitNotices | None = None

    def _follow(self, ahead: int) -> None:
        self.position = max(self.position, ahead)

    def wake(self) -> None:
        """Called on the loop after this host's commit: new events may be waiting. Not
        needed while listening: a commit holding events of this follower's NOTIFYs (its
        own host's too), and a read per commit of the host's own instances was wasted."""
        notices = self.notices
        if notices is not None and notices.listening.is_set():
            return
        self._wake.set()

    async def run(self) -> None:
        """Follow while holding the lease (one host of those sharing the store does)."""
        try:
            await self._run()
        finally:      # (stopping: the last position is written before the store closes)
            self._listening(False)
            with contextlib.suppress(Exception):
                await self.positions.flush()
            self.lease.close()

    @abc.abstractmethod
    async def run_once(self) -> int:
        """Publish the next page after ``position``; how many notifications it held."""

    def advanced(self, last: int, published: int) -> None:
        """A page up to notification ``last`` is acked: record it (in the background)."""
        self.positions.record(last)
        self.position = last
        self.published += published
        if self.on_progress is not None:
            self.on_progress(last)

    def _listening(self, leading: bool) -> None:
        """Listen for other hosts' commits while leading (if asked to), else not."""
        if leading and self._listen and self.notices is None:
            loop = asyncio.get_running_loop()
            self.notices = notices_for(self.store,
                                       lambda: loop.call_soon_threadsafe(self._wake.set))
            if self.notices is not None:
                self.notices.start()
        elif not leading and self.notices is not None:
            self.notices.stop()
            self.notices = None

    async def _recorded(self) -> int:
        def read() -> int:
            mine = self.tracker.max_tracking_id(self.tracking_name)
            if mine is None and self.legacy_name:
                mine = self.tracker.max_tracking_id(self.legacy_name)
            return mine or 0

        return await asyncio.to_thread(read)

    async def _run(self) -> None:
        leading = False
        while True:
            try:
                if not await asyncio.to_thread(self.lease.held):   # another host follows
                    leading = False
                    self._listening(False)
                    self.position = await self._recorded()
                    await asyncio.sleep(STANDBY_POLL)
                    continue
                if not leading:   # (again) the follower: start where the last one recorded
                    self.position = await self._recorded()
                    leading = True
                    self._listening(True)
                self._wake.clear()       # (before the read: a commit from now on wakes it)
                sent = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("%s: following from %d failed; retrying",
                                   self.tracking_name, self.position)
                await asyncio.sleep(1.0)
                continue
            if sent < self.page:
                # a short page reached the end of the log: wait for a commit (or the poll)
                # rather than read again to hear "nothing" (issue 22: with four followers
                # a worker, that second read was a third of the store's transactions)
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll)
                except TimeoutError:
                    pass
