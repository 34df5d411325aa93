"""HostService: one per compute host. Starts and stops what the composition root
(``compute.actors.bootstrap.wire``) built for it, in order.

Inbound: a durable JetStream pull consumer on ``compute.cmd.<host>.>`` (commands survive a
host that is down), routed to one actor per instance (``command_intake``), and the calls
(``call_endpoints``). Outbound: outcomes to the sender's inbox (``replies``), events to
``COMPUTE_EVENTS`` through the relay (``host_outbox``), queries answered from the
projections. The properties are the parts tests, the CLI and the introspection console
read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.js import JetStreamContext

from compute.actors.backdoor import start_backdoor
from compute.actors.bootstrap import HostParts, libvirt_driver, wire
from compute.actors.context import ActorContext
from compute.actors.driver_actor import DriverActor
from compute.actors.periodic import every
from compute.actors.replies import ReplyChannel
from compute.actors.resource_tracker import ResourceTracker
from compute.actors.router import Router
from compute.config import Settings
from compute.messaging.connection import Connection, watch
from compute.messaging.notifier import Notifier
from compute.messaging.outbox import OutboxProcess
from compute.messaging.queries import QueryService
from compute.messaging.relay import Relay
from compute.messaging.subjects import host_commands
from compute.metrics import Metrics
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore
from compute.store.health import StoreHealth
from compute.store.writer import GroupCommitWriter
from compute.virt.events import LifecycleEvents
from compute.virt.libvirt_driver import LibvirtDriver

log = logging.getLogger("compute.host")


class HostService:
    def __init__(self, settings: Settings, *, driver: LibvirtDriver | None = None) -> None:
        self.settings = settings
        self.host = settings.host
        self.driver = driver or libvirt_driver(settings)
        self.backdoor_port: int | None = None
        self.failed = asyncio.Event()
        """Set when the host's NATS connection is closed for good: the host serves nothing
        any more, and ``compute up`` exits non-zero so its supervisor restarts it."""
        self._parts: HostParts | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._backdoor: asyncio.Server | None = None

    # -- start / stop ---------------------------------------------------------------------
    async def start(self) -> HostService:
        s = self.settings
        p = self._parts = await wire(s, self.driver)
        await p.follower.init_host(s.resume_guests_state_on_host_boot)
        await p.audit.update_available_resource()          # Nova's pre_start_hook
        if s.queries != "external":    # else the fleet's views are `compute queries` replicas'
            await p.queries.start()
        await p.calls.serve()
        if s.metrics_port >= 0:
            port = await asyncio.to_thread(p.metrics.serve, s.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", port)
        if s.backdoor_port >= 0:
            self._backdoor = await start_backdoor(self, s.backdoor_port)
            self.backdoor_port = p.host_calls.backdoor_port = \
                self._backdoor.sockets[0].getsockname()[1]
            log.warning("introspection console on 127.0.0.1:%d", self.backdoor_port)
        self._tasks = [
            asyncio.create_task(p.lifecycle.run(), name="lifecycle-events"),
            asyncio.create_task(every(s.sync_power_state_interval,
                                      p.follower.sync_power_states), name="power-sync"),
            asyncio.create_task(every(s.update_resources_interval,
                                      p.audit.update_available_resource),
                                name="update-available-resource"),
            asyncio.create_task(every(
                s.reclaim_poll_interval if s.reclaim_instance_interval > 0 else -1,
                p.sweeps.reclaim_queued_deletes), name="reclaim"),
            asyncio.create_task(every(1.0, p.sampler.sample_metrics), name="metrics"),
            asyncio.create_task(watch(p.nc, self._bus_closed), name="bus-watch"),
            *p.outbox.tasks(),
            asyncio.create_task(p.intake.consume(), name="consumer"),
        ]
        log.info("host %s serving %s (store %s, hypervisor %s)", self.host,
                 host_commands(self.host), s.store, s.libvirt_uri)
        return self

    async def stop(self) -> None:
        p = self._parts
        if p is None:
            return
        p.intake.stopping = True
        held = p.calls.steps | p.intake.resuming
        if held:                         # the other hosts' steps in progress end first
            await asyncio.wait(held, timeout=5)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # nats-py's fetch can turn a cancellation into its own timeout; the loops also
            # check ``stopping``, and the wait is bounded either way.
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            if pending:
                log.warning("stopping: %s did not stop within 5 s",
                            ", ".join(sorted(t.get_name() for t in pending)))
        self._tasks = []
        p.lifecycle.close()
        p.metrics.close()
        await p.calls.stop()
        if self._backdoor is not None:
            self._backdoor.close()
        p.store_health.close()            # commits held for the store give their commands back
        await p.router.drain()
        await p.outbox.finish(self.host)
        await p.queries.stop()
        # flush the last replies and acks, then close: a drain would wait for the pull
        # subscription's buffered messages, which nobody consumes any more.
        with contextlib.suppress(Exception):
            await p.nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await p.nc.close()
        await asyncio.to_thread(p.writer.close)
        await p.outbox.close()
        p.driver_actor.close()
        await asyncio.to_thread(p.views.close)
        if p.store_health.writable:
            await asyncio.to_thread(p.store.close)
        else:    # SQLite's close checkpoints (a write): on a read-only file it faults (SIGBUS)
            log.warning("store refuses writes: left unclosed (the process ends with it)")

    async def _bus_closed(self) -> None:
        if self._parts is not None and not self._parts.intake.stopping:
            log.error("host %s: its NATS connection is closed; it serves nothing", self.host)
            self.failed.set()

    async def __aenter__(self) -> HostService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the periodic tasks, on demand ----------------------------------------------------
    async def update_available_resource(self) -> int:
        return await self.parts.audit.update_available_resource()

    async def sync_power_states(self) -> int:
        return await self.parts.follower.sync_power_states()

    async def sample_metrics(self) -> None:
        await self.parts.sampler.sample_metrics()

    # -- the parts ------------------------------------------------------------------------
    @property
    def parts(self) -> HostParts:
        if self._parts is None:
            raise RuntimeError(f"host {self.host} is not started")
        return self._parts

    @property
    def nc(self) -> Connection:
        return self.parts.nc

    @property
    def js(self) -> JetStreamContext:
        return self.parts.js

    @property
    def store(self) -> ComputeStore:
        return self.parts.store

    @property
    def views(self) -> ViewStore:
        return self.parts.views

    @property
    def projector(self) -> Projector:
        return self.parts.projector

    @property
    def writer(self) -> GroupCommitWriter:
        return self.parts.writer

    @property
    def metrics(self) -> Metrics:
        return self.parts.metrics

    @property
    def store_health(self) -> StoreHealth:
        return self.parts.store_health

    @property
    def queries(self) -> QueryService:
        return self.parts.queries

    @property
    def relay(self) -> Relay | OutboxProcess:
        return self.parts.outbox.relay

    @property
    def shared_relay(self) -> Relay | OutboxProcess:
        return self.parts.outbox.shared_relay

    @property
    def notifier(self) -> Notifier | OutboxProcess:
        return self.parts.outbox.notifier

    @property
    def tracker(self) -> ResourceTracker:
        return self.parts.tracker

    @property
    def router(self) -> Router:
        return self.parts.router

    @property
    def ctx(self) -> ActorContext:
        return self.parts.ctx

    @property
    def lifecycle(self) -> LifecycleEvents:
        return self.parts.lifecycle

    @property
    def driver_actor(self) -> DriverActor:
        return self.parts.driver_actor

    @property
    def replies(self) -> ReplyChannel:
        return self.parts.replies
