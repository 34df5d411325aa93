"""Whether the store takes writes: the host's view of a store outage.

A full disk, a read-only file system or a PostgreSQL that refuses writes is not a reason to
burn a command's JetStream deliveries (after ``max_deliver`` they were gone, with instances
left mid-operation): while the store refuses, the actors hold their commands (JetStream hears
they are in progress) and retry, the host stops pulling new ones and says it is degraded;
the first write that succeeds again ends the outage, and the host resumes by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("compute.store")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)
"""Seconds between two attempts of a held commit (the last one repeats)."""


class StoreClosing(Exception):
    """The host is stopping while a commit is held: the command goes back to JetStream."""


class StoreHealth:
    """Writable or not, since when and why; ``on_change(writable)`` hears each transition."""

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self.writable = True
        self.reason = ""
        self.since = time.time()
        self.outages = 0
        self.closing = False
        self.on_change = on_change

    def failed(self, exc: BaseException) -> None:
        """A write failed for another reason than a version conflict."""
        if not self.writable:
            return
        self.writable, self.reason, self.since = False, f"{type(exc).__name__}: {exc}", \
            time.time()
        self.outages += 1
        log.error("store refuses writes (%s): commands are held, the host is degraded",
                  self.reason)
        if self.on_change is not None:
            self.on_change(False)

    def succeeded(self) -> None:
        """A write went through."""
        if self.writable:
            return
        log.warning("store takes writes again after %.1f s: resuming", time.time() - self.since)
        self.writable, self.reason, self.since = True, "", time.time()
        if self.on_change is not None:
            self.on_change(True)

    def close(self) -> None:
        """The host stops: held commits give up (their commands are redelivered)."""
        self.closing = True


def retry_delay(attempt: int) -> float:
    return RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
