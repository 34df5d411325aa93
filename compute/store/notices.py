"""Commits of other hosts, heard as they happen: PostgreSQL LISTEN on the events' channel.

A host's relay is woken by its own writer after each commit; the events of no host's
aggregates (networks, security groups: ``_shared``) are relayed by whichever host holds the
``_shared`` lease, usually not the host that wrote them, so that relay heard of them only by
polling (issue 22: event p50 255-281 ms with the lease elsewhere, reply p50 10-23 ms). Their
commits NOTIFY (``compute.store.pgcommit``: only groups holding ``_shared`` events do), and
the lease holder listens: one connection, in the one process of the fleet that holds the
lease, opened when it takes the lease and closed when it gives it up. A lost connection is
opened again (and the follower woken, for what it missed meanwhile). On SQLite there is one
host per store: its own commits wake it, nothing to listen to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from compute.store.app import ComputeStore

log = logging.getLogger("compute.notices")

RETRY = 1.0        # seconds before a lost listening connection is opened again
TICK = 0.5         # seconds between checks that the listener is still wanted


class CommitNotices:
    """A thread that LISTENs on ``store``'s channel and calls ``heard()`` (from that thread)
    for each NOTIFY, and once after each (re)connection."""

    def __init__(self, connect: dict[str, Any], channel: str,
                 heard: Callable[[], None]) -> None:
        self._connect = connect
        self._channel = channel
        self._heard = heard
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()     # (tests: LISTEN is in effect)

    def start(self) -> CommitNotices:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="commit-notices",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (returns at once; the thread ends within ``TICK``)."""
        self._stop.set()
        self.listening.clear()

    def _run(self) -> None:
        import psycopg
        from psycopg.sql import SQL, Identifier

        while not self._stop.is_set():
            try:
                with psycopg.connect(**self._connect, autocommit=True,
                                     connect_timeout=5) as conn:
                    conn.execute(SQL("LISTEN {}").format(Identifier(self._channel)))
                    self.listening.set()
                    self._heard()                  # whatever committed before LISTEN
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=TICK, stop_after=1):
                            self._heard()
            except Exception as exc:   # (the server restarted, the network dropped)
                self.listening.clear()
                if not self._stop.is_set():
                    log.warning("listening for commits on %s failed: %s; again in %.0f s",
                                self._channel, exc, RETRY)
                    self._stop.wait(RETRY)


def notices_for(store: ComputeStore, heard: Callable[[], None]) -> CommitNotices | None:
    """A listener for ``store``'s commits of shared events, or None (not PostgreSQL)."""
    recorder = store.recorder
    datastore = getattr(recorder, "datastore", None)
    if type(datastore).__module__ != "eventsourcing.postgres":
        return None
    connect = {k: v for k, v in datastore.pool.kwargs.items() if k != "row_factory"}
    return CommitNotices(connect, recorder.channel_name, heard)
