"""The outbox worker: the relay, the notifier and the projector in their own OS process.

Profiled in the host process, these three tail the same log as the actors write it and
competed with them for one GIL (measured: a relay in the actors' process cut persistence
from ~15k to ~5.8k events/s). Here they run in a child with its own store connection and its
own NATS connection. Nothing about exactly-once changes: the relay still publishes with
``Nats-Msg-Id = <uuid>:<version>:<digest>`` and records its tracking row after the acks, the
notifier likewise, and the projector still writes its position in the view's transaction, so a child
that dies (or overlaps a successor) re-sends at most a page that JetStream deduplicates.

The parent wakes the child after each commit with a byte on its stdin (written from the
writer thread, no event-loop hop); the child reports positions on its stdout
(``relay N``, ``notifier N``, ``views N``). The child exits when its stdin closes, so a parent
that is killed takes its worker with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("compute.outbox")


class InlineOutbox:
    """The relay as a task of this process (the bare benchmark's in-process variant)."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay
        self._task = asyncio.create_task(relay.run(), name="relay")

    @property
    def position(self) -> int:
        return self.relay.position

    def wake(self) -> None:
        self.relay.wake()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class OutboxProcess:
    """The parent's handle on the worker: wake it, read its positions, restart it if it dies."""

    def __init__(self, store_url: str, nats_url: str, *, host: str,
                 credentials: str | None = None, views: str | None = None,
                 notify: bool = True, seal_key: str | None = None,
                 on_views: Callable[[int], Any] | None = None,
                 relay_poll: float = 0.0, own_views: bool = False) -> None:
        self.args = [sys.executable, "-m", "compute.messaging.outbox", "--store", store_url,
                     "--nats-url", nats_url, "--host", host]
        if credentials:
            self.args += ["--credentials", credentials]
        if seal_key:
            self.args += ["--seal-key", seal_key]
        if views:
            self.args += ["--views", views]
            if own_views:     # COMPUTE_QUERIES=external: this host's own views only
                self.args.append("--own-views")
        if not notify:
            self.args.append("--no-notify")
        if relay_poll > 0:
            self.args += ["--relay-poll", str(relay_poll)]
        self.on_views = on_views
        self.position = 0             # the relay's, as the metrics' relay lag reads it
        self.notified = 0
        self.views_position = 0
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._closing = False
        self._buffer = b""

    def start(self) -> OutboxProcess:
        self._proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      bufsize=0)
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        asyncio.get_running_loop().add_reader(self._proc.stdout.fileno(), self._readable)
        return self

    def wake(self) -> None:
        """Any thread: new events may be waiting (a full pipe already holds a wake-up)."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ValueError, OSError):
                os.write(proc.stdin.fileno(), b"!")

    def _readable(self) -> None:
        try:
            chunk = os.read(self._proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._proc.stdout.fileno())
            return
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        for line in lines:
            name, _, value = line.decode().partition(" ")
            if name == "relay":
                self.position = int(value)
            elif name == "notifier":
                self.notified = int(value)
            elif name == "views":
                self.views_position = int(value)
                if self.on_views is not None:
                    self.on_views(self.views_position)

    async def run(self) -> None:
        """Watch the worker: one that dies is started again (it resumes from its tracking)."""
        while not self._closing:
            await asyncio.sleep(1.0)
            code = self._proc.poll()
            if code is None or self._closing:
                continue
            log.error("outbox worker exited with %s; starting it again", code)
            self.restarts += 1
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._proc.stdout.fileno())
            self._buffer = b""
            self.start()

    async def close(self, timeout: float = 10.0) -> None:
        """Close the worker's stdin (it finishes its page and exits); kill it if it hangs."""
        self._closing = True
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(proc.stdout.fileno())
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


async def start_outbox(store: Any, store_url: str, nats_url: str, js: Any, *, mode: str,
                       host: str, notify: bool = True, project: bool = True,
                       views: str | None = None) -> InlineOutbox | OutboxProcess:
    """The relay of ``host``'s events (and notifier, projector) inline or in a worker
    process."""
    if mode == "process":
        handle = OutboxProcess(store_url, nats_url, host=host,
                               views=views if project else None, notify=notify).start()
        asyncio.get_running_loop().create_task(handle.run(), name="outbox-worker")
        return handle
    from compute.messaging.relay import Relay
    return InlineOutbox(Relay(store, js, host=host))


# -- the worker process ---------------------------------------------------------------------
async def worker(store_url: str, nats_url: str, views_path: str | None, notify: bool,
                 host: str, credentials: str | None, seal_key: str | None = None,
                 relay_poll: float = 0.5, own_views: bool = False) -> None:
    from compute.messaging.credentials import connect
    from compute.messaging.notifier import Notifier
    from compute.messaging.relay import Relay
    from compute.projections.projector import Projector
    from compute.messaging.subjects import SHARED_HOST
    from compute.messaging.users import host_user
    from compute.projections.views import ViewStore
    from compute.store.app import open_store

    from compute.runtime import name_executor

    loop = asyncio.get_running_loop()
    name_executor(loop)
    out = sys.stdout.buffer

    def report(name: str, position: int) -> None:
        with contextlib.suppress(Exception):
            out.write(f"{name} {position}\n".encode())
            out.flush()

    store = await asyncio.to_thread(open_store, store_url)
    if seal_key:                 # the relay verifies the seals (the host made the key)
        from compute.store.seal import read_key, use_key

        key = read_key(seal_key)
        if key is not None:
            use_key(store, key)
    nc = await connect(nats_url, host_user(host), credentials,     # the host's user
                       name="compute-outbox", max_reconnect_attempts=-1,
                       reconnect_time_wait=0.5)
    js = nc.jetstream()
    relay = Relay(store, js, host=host, idle_poll=relay_poll,
                  on_progress=lambda p: report("relay", p))
    parts: list[Any] = [relay, Relay(store, js, host=SHARED_HOST, idle_poll=relay_poll)]
    if notify:
        parts.append(Notifier(store, js, host=host,
                              on_progress=lambda p: report("notifier", p)))
    views = None
    if views_path:
        views = await asyncio.to_thread(ViewStore, views_path)
        from compute.projections.local import LocalProjector

        projector = LocalProjector(store, views, host) if own_views else Projector(store, views)
        parts.append(_Projecting(projector, lambda p: report("views", p)))
    eof = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(0)
            eof.set()
            return
        for part in parts:
            part.wake()

    os.set_blocking(0, False)
    loop.add_reader(0, readable)
    tasks = [asyncio.create_task(part.run()) for part in parts]
    await eof.wait()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=5)
    with contextlib.suppress(Exception):
        await nc.close()
    if views is not None:
        await asyncio.to_thread(views.close)
    await asyncio.to_thread(store.close)


PROJECT_EVERY = 0.02
"""Seconds between the starts of two catch-ups: under load a page then holds the events of
many commits. Every page recomputes the usage and stats of the hosts it touched, a scan of
the host's instances, so a page per commit cost more the more instances the host has."""


class _Projecting:
    """The projector's follow loop: catch up whenever woken (or every 0.5 s), at most once
    every ``PROJECT_EVERY`` seconds."""

    def __init__(self, projector: Any, report: Callable[[int], None]) -> None:
        self.projector = projector
        self.report = report
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            started = loop.time()
            try:
                await asyncio.to_thread(self.projector.catch_up)
                self.report(await asyncio.to_thread(self.projector.views.position,
                                                    self.projector.name))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projection update failed; retrying")
            await asyncio.sleep(max(0.0, started + PROJECT_EVERY - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)


def main() -> None:
    p = argparse.ArgumentParser(description="the relay, notifier and projector of a host")
    p.add_argument("--store", required=True)
    p.add_argument("--nats-url", required=True)
    p.add_argument("--views")
    p.add_argument("--no-notify", action="store_true")
    p.add_argument("--own-views", action="store_true",
                   help="project only this host's own instances and resources "
                        "(COMPUTE_QUERIES=external)")
    p.add_argument("--host", required=True, help="the compute host (its NATS user: host-<host>)")
    p.add_argument("--credentials", help="where its password is, if not in the URL")
    p.add_argument("--seal-key", help="the deployment's seal key (compute.store.seal)")
    p.add_argument("--relay-poll", type=float, default=0.5,
                   help="seconds between reads of the log when no commit wakes the relays")
    a = p.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent decides when we stop
    from compute.runtime import tune_gc
    tune_gc()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s outbox %(levelname)s %(message)s")
    asyncio.run(worker(a.store, a.nats_url, a.views, not a.no_notify, a.host, a.credentials,
                       a.seal_key, a.relay_poll, a.own_views))


if __name__ == "__main__":
    main()
