"""The load client of the benchmarks: publishes commands to JetStream and times each to its
outcome event on ``COMPUTE_EVENTS`` (closed-loop windows and open loops)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import nats

from bench.common import DONE, FLAVOR, HOST, as_user
from compute.messaging.subjects import MSG_ID, command


class _Head(msgspec.Struct):
    event: str = ""
    command_id: str = ""


class _Window:
    """A closed loop's state: the jobs left, the latencies so far, done when all answered."""

    def __init__(self, load: Load, jobs: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.load = load
        self.jobs = iter(jobs)
        self.left = len(jobs)
        self.latencies: list[float] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not jobs:
            self.done.set_result(None)

    async def next(self) -> None:
        job = next(self.jobs, None)
        if job is not None:
            await self.load._publish(*job, None)

    async def finished(self, seconds: float) -> None:
        self.latencies.append(seconds)
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)
        await self.next()

    def fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)


class Load:
    """Publishes commands to JetStream and times each to its outcome event.

    The client shares the machine's two cores with the pipeline it measures, so it spends
    little: commands are published pipelined (core publish with a reply subject on one
    wildcard ack inbox, as ``compute/messaging/pipeline.py`` does, instead of
    ``js.publish``'s inbox token, future and ``PubAck`` per message), a refusal fails its
    command, and a closed-loop window sends the next command from the outcome's callback
    rather than keeping a task per command."""

    def __init__(self, url: str, *, events: str = f"compute.evt.{HOST}.>",
                 subject: Callable[[str, str], str] = lambda vm, op: command(HOST, vm, op),
                 done: set[str] | None = None) -> None:
        self.url, self.events, self.subject = url, events, subject
        self.done = DONE if done is None else done
        # command id -> (publish time, its future; None for a window's command)
        self.waiting: dict[str, tuple[float, asyncio.Future[float] | None]] = {}
        self._head = msgspec.json.Decoder(_Head)
        self._window: _Window | None = None

    async def __aenter__(self) -> Load:
        self.nc = await nats.connect(**as_user(self.url, "operator"))
        self._acks = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._acks + "*", cb=self._on_ack, pending_msgs_limit=-1,
                                pending_bytes_limit=-1)
        # only the events that end a command, as a client waiting for outcomes subscribes:
        # the others (ActionStarted, TaskStateChanged...) would cost this client and the
        # server CPU that the pipeline under test shares
        subjects = [f"{self.events[:-1]}*.{name}" for name in sorted(self.done)] \
            if self.done and self.events.endswith(".>") else [self.events]
        for subject in subjects:
            await self.nc.subscribe(subject, cb=self._on_event, pending_msgs_limit=-1,
                                    pending_bytes_limit=-1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    async def _on_ack(self, msg: Any) -> None:
        """JetStream's answer to a publish: only a refusal (or no stream: 503) matters."""
        if msg.data and b'"error"' not in msg.data[:16]:
            return
        cid = msg.subject[len(self._acks):]
        entry = self.waiting.pop(cid, None)
        error = RuntimeError(f"JetStream refused command {cid}: {msg.data[:200]!r}")
        if entry is not None and entry[1] is not None and not entry[1].done():
            entry[1].set_exception(error)
        elif entry is not None and self._window is not None:
            self._window.fail(error)

    async def _on_event(self, msg: Any) -> None:
        head = self._head.decode(msg.data)
        if (self.done and head.event not in self.done) or head.command_id not in self.waiting:
            return
        t0, fut = self.waiting.pop(head.command_id)
        if fut is None:
            if self._window is not None:
                await self._window.finished(time.perf_counter() - t0)
        elif not fut.done():
            fut.set_result(time.perf_counter() - t0)

    async def _publish(self, vm: str, op: str, payload: dict[str, Any] | None,
                       fut: asyncio.Future[float] | None) -> None:
        cid = str(uuid.uuid4())
        self.waiting[cid] = (time.perf_counter(), fut)
        await self.nc.publish(self.subject(vm, op),
                              msgspec.json.encode({**(payload or {}), "command_id": cid}),
                              reply=self._acks + cid, headers={MSG_ID: cid})

    async def send(self, vm: str, op: str, payload: dict[str, Any] | None = None,
                   timeout: float = 300) -> float:
        """Publish one command; seconds until its outcome event arrived."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await self._publish(vm, op, payload, fut)
        return await asyncio.wait_for(fut, timeout)

    async def window(self, jobs: list[tuple[str, str, dict[str, Any]]],
                     width: int, stall: float = 300) -> tuple[float, list[float]]:
        """Closed loop: ``width`` commands in flight; (elapsed seconds, latencies). Raises
        when no outcome arrives for ``stall`` seconds."""
        self._window = win = _Window(self, jobs)
        t0 = time.perf_counter()
        try:
            for _ in range(min(width, len(jobs))):
                await win.next()
            seen = -1
            while not win.done.done():
                if len(win.latencies) == seen:
                    raise TimeoutError(f"no outcome in {stall}s: {len(win.latencies)} of "
                                       f"{len(jobs)} commands answered")
                seen = len(win.latencies)
                await asyncio.wait({win.done}, timeout=stall)
            win.done.result()
        finally:
            self._window = None
        return time.perf_counter() - t0, win.latencies

    async def open_loop(self, jobs: list[tuple[str, str, dict[str, Any]]],
                        rate: float) -> list[float]:
        """Open loop: one command every 1/rate s whatever the answers do; latencies."""
        tasks = []
        t_start = time.perf_counter()
        for i, job in enumerate(jobs):
            tasks.append(asyncio.create_task(self.send(*job)))
            delay = t_start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        return list(await asyncio.gather(*tasks))

    async def boot(self, n: int, width: int) -> tuple[list[str], float, list[float]]:
        vms = [str(uuid.uuid4()) for _ in range(n)]
        secs, lat = await self.window(
            [(vm, "run_instance", {"image_ref": "cirros", "flavor": FLAVOR, "name": vm[:8]})
             for vm in vms], width)
        return vms, secs, lat


def bare_load(url: str, host: str = "bare") -> Load:
    return Load(url, events=f"compute.evt.{host}.>", done={"Done"},
                subject=lambda vm, op: command(host, vm, op))


async def warm_up(load: Load, n: int = 200) -> None:
    """A few commands through a fresh pipeline first (connections, file creation, the
    first transactions), so the timed phase measures the steady state."""
    await load.window([(f"{i:08d}-ffff-4000-8000-000000000000", "noop", {})
                       for i in range(n)], 50)
