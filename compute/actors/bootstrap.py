"""The composition root of a compute host: every part a host runs, built and wired here, and
only here (the model: *Architecture Patterns with Python*, chapter 13, ``bootstrap.py``).

Each part gets what it uses as typed constructor arguments; none gets the host service.
``HostService`` starts and stops what ``wire`` gave it. The order below is the order of a
host's start: the bus, the store (refusing to start on one that refuses writes or a seal key
that does not fit it), the views, the writer, the outbox, the hypervisor's report, the
actors, then what serves them (calls, the consumer, the periodic tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

from nats.js import JetStreamContext

from compute.actors.call_endpoints import CallEndpoints
from compute.actors.command_intake import CommandIntake
from compute.actors.context import ActorContext
from compute.actors.driver_actor import DriverActor, driver_threads
from compute.actors.host_calls import HostCalls
from compute.actors.host_outbox import HostOutbox, TaskOutbox, WorkerOutbox
from compute.actors.instance_journal import StoreUnavailable
from compute.actors.instance_sweeps import InstanceSweeps
from compute.actors.move_coordinator import (
    CellPlacement,
    FleetHosts,
    MoveCoordinator,
    StoreCells,
    ViewHosts,
)
from compute.actors.move_participant import MoveParticipant
from compute.actors.periodic import MetricsSampler
from compute.actors.peers import Peers
from compute.actors.power_follower import PowerFollower
from compute.actors.replies import ReplyChannel
from compute.actors.resource_audit import ResourceAudit, report_resources
from compute.actors.resource_tracker import ResourceTracker
from compute.actors.router import Router
from compute.actors.shared_aggregates import NetworkBook, SecurityGroupBook
from compute.config import Settings
from compute.messaging.streams import answer_window
from compute.messaging.connection import Connection
from compute.messaging.credentials import connect
from compute.messaging.guard import guard_publishes
from compute.messaging.notifier import Notifier
from compute.messaging.outbox import OutboxProcess
from compute.messaging.queries import QueryService
from compute.messaging.relay import Relay
from compute.messaging.streams import cluster_replicas, ensure_streams
from compute.messaging.subjects import SHARED_HOST
from compute.messaging.users import host_user
from compute.metrics import Metrics
from compute.projections.local import LocalProjector, check_kind
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.answers import AnswerBook
from compute.store.app import ComputeStore, open_store
from compute.store.health import StoreHealth
from compute.store.seal import SealKeyMismatch, check_fits, key_path, load_or_create_key, use_key
from compute.store.writer import GroupCommitWriter
from compute.virt.events import LifecycleEvents
from compute.virt.libvirt_driver import LibvirtDriver

log = logging.getLogger("compute.host")


def libvirt_driver(settings: Settings) -> LibvirtDriver:
    """The hypervisor driver ``settings`` name (``COMPUTE_LIBVIRT_URI`` and Nova's knobs)."""
    s = settings
    return LibvirtDriver(
        s.libvirt_uri, local_gb=s.local_gb, volumes_dir=s.volumes_dir,
        images_dir=s.images_dir, disk_dir=s.instances_dir,
        shutdown_timeout=s.shutdown_timeout, soft_reboot_timeout=s.wait_soft_reboot_seconds,
        detach_timeout=s.detach_timeout, graceful_retry=s.graceful_retry,
        instances_shared=s.instances_shared)


def inject_faults(driver: LibvirtDriver, faults: str) -> None:
    """``COMPUTE_FAULTS=method:seconds[:rate],...``: slow hypervisor calls, or a share of
    them failing (chaos tooling)."""
    for item in filter(None, faults.split(",")):
        method, seconds, rate = (item.split(":") + ["0", "0"])[:3]
        if float(seconds or 0):
            log.warning("chaos: every %s call is delayed %ss", method, seconds)
            driver.inject_fault(method.strip(), None, times=1 << 30, delay=float(seconds))
        if float(rate or 0):
            log.warning("chaos: %s%% of %s calls fail", float(rate) * 100, method)
            driver.chaos(method.strip(), float(rate))


@dataclass(frozen=True, slots=True)
class HostParts:
    """Everything a host runs, wired."""

    settings: Settings
    driver: LibvirtDriver
    nc: Connection
    js: JetStreamContext
    store: ComputeStore
    views: ViewStore
    projector: Projector
    writer: GroupCommitWriter
    metrics: Metrics
    store_health: StoreHealth
    answers: AnswerBook
    driver_actor: DriverActor
    outbox: HostOutbox
    queries: QueryService
    tracker: ResourceTracker
    moves: MoveCoordinator
    ctx: ActorContext
    router: Router
    replies: ReplyChannel
    follower: PowerFollower
    sweeps: InstanceSweeps
    audit: ResourceAudit
    lifecycle: LifecycleEvents
    host_calls: HostCalls
    calls: CallEndpoints
    intake: CommandIntake
    sampler: MetricsSampler


async def wire(settings: Settings, driver: LibvirtDriver) -> HostParts:
    """Build every part of the host ``settings`` name, on ``driver``. Nothing runs yet but
    the writer's thread and the driver actor's threads; a host that must not start (a store
    that refuses writes: ``StoreUnavailable``; ``SealKeyMismatch``) closes what it opened."""
    s = settings
    host = s.host
    metrics = Metrics()
    nc = await connect(s.nats_url, host_user(host), s.nats_credentials,
                       name=f"compute-host-{host}", max_reconnect_attempts=-1,
                       reconnect_time_wait=0.5)
    guard_publishes(nc, refused=lambda _: metrics.replies_refused.inc())
    js = nc.jetstream()
    await ensure_streams(js, cluster_replicas(nc), update=False, settings=s)  # create only
    store = await _open_store(s, nc)
    views = await asyncio.to_thread(ViewStore, s.views)
    external = s.queries == "external"   # the fleet's views are `compute queries` replicas'
    projector = LocalProjector(store, views, host) if external else Projector(store, views)
    await asyncio.to_thread(check_kind, views, projector.name)
    writer = GroupCommitWriter(store)
    store_health = StoreHealth()
    answers = AnswerBook(store, host, answer_window(s))
    await _check_store(s, answers, writer, views, nc)
    metrics.watch_bus(nc.faults)
    driver_actor = DriverActor(driver, threads=driver_threads(s, driver),
                               timeout=s.driver_timeout, observe=metrics.driver_call)
    queries = QueryService(nc, views, projector, host=host, cell=s.cell)
    outbox = _outbox(s, store, js, queries)
    writer.on_commit = outbox.committed
    host_aggregate = await asyncio.to_thread(store.get_host, host)
    await report_resources(host, host_aggregate, s, driver_actor, writer)
    tracker = ResourceTracker(host_aggregate)
    networks, groups = NetworkBook(store), SecurityGroupBook(store)
    placement = CellPlacement(s.cell, FleetHosts(nc, s.call_timeout) if external
                              else ViewHosts(projector, views))
    moves = MoveCoordinator(
        host, Peers(nc, s.call_timeout), placement, tracker, driver_actor,
        cell=s.cell, cell_of=StoreCells(store),
        allow_resize_to_same_host=s.allow_resize_to_same_host,
        max_concurrent_live_migrations=s.max_concurrent_live_migrations,
        hypervisor_type=driver.domain_type)
    replies = ReplyChannel(nc, metrics, s.cell)
    ctx = ActorContext(host=host, store=store, writer=writer, driver=driver_actor,
                       tracker=tracker, networks=networks, groups=groups, reply=replies.reply,
                       moves=moves, metrics=metrics, passivate_after=s.passivate_after,
                       ack_wait=s.ack_wait, store_health=store_health, answers=answers)
    router = Router(ctx)
    follower = PowerFollower(host, router, views, projector)
    sweeps = InstanceSweeps(host, router, views, projector,
                            reclaim_instance_interval=s.reclaim_instance_interval)
    audit = ResourceAudit(host, s, tracker, driver_actor, writer, store, views, projector,
                          router)
    lifecycle = LifecycleEvents(driver.connect, follower.lifecycle_event, reset=driver.close)
    host_calls = HostCalls(host, tracker, writer, driver_actor, store, projector, networks,
                           groups, sweeps, nc=nc, router=router, lifecycle=lifecycle,
                           store_health=store_health, console_secret=secrets.token_bytes(32),
                           cell=s.cell)
    move_steps = MoveParticipant(host, tracker, driver_actor, writer, store, follower.arrived,
                                 allow_resize_to_same_host=s.allow_resize_to_same_host,
                                 hypervisor_type=driver.domain_type)
    calls = CallEndpoints(host, nc, router, replies, host_calls, move_steps, store_health)
    intake = CommandIntake(s, nc, js, router, host_calls, replies, metrics, ctx.counters,
                           store_health, answers=answers, writer=writer)
    store_health.on_change = intake.store_writable
    sampler = MetricsSampler(host, metrics, router, nc, js, writer, store, outbox.relay)
    inject_faults(driver, s.faults)
    return HostParts(
        settings=s, driver=driver, nc=nc, js=js, store=store, views=views,
        projector=projector, writer=writer, metrics=metrics, store_health=store_health,
        answers=answers, driver_actor=driver_actor, outbox=outbox, queries=queries,
        tracker=tracker, moves=moves, ctx=ctx, router=router, replies=replies,
        follower=follower, sweeps=sweeps, audit=audit, lifecycle=lifecycle,
        host_calls=host_calls, calls=calls, intake=intake, sampler=sampler)


async def _open_store(s: Settings, nc: Connection) -> ComputeStore:
    """The event store, with this deployment's seal key (made on first use)."""
    try:
        store = await asyncio.to_thread(open_store, s.store)
    except Exception as exc:       # (a read-only directory: SQLite cannot open its log)
        with contextlib.suppress(Exception):
            await nc.close()
        raise StoreUnavailable(f"store {s.store!r} refuses writes: cannot open it "
                               f"({type(exc).__name__}: {exc}); not starting") from exc
    path = key_path(s.nats_credentials, s.seal_key)
    key = await asyncio.to_thread(load_or_create_key, path, store)
    try:
        await asyncio.to_thread(check_fits, store, key, path)
    except SealKeyMismatch:
        await asyncio.to_thread(store.close)
        await nc.close()
        raise
    use_key(store, key)
    return store


async def _check_store(s: Settings, answers: AnswerBook, writer: GroupCommitWriter,
                       views: ViewStore, nc: Connection) -> None:
    """A host whose store refuses writes does not report itself up: a real write (its
    probe row in the answers' table) or the start fails, loudly."""
    try:
        await asyncio.to_thread(answers.create)
        await asyncio.to_thread(answers.probe)
    except Exception as exc:        # (the store is not closed: see HostService.stop)
        await asyncio.to_thread(writer.close)
        await asyncio.to_thread(views.close)
        with contextlib.suppress(Exception):
            await nc.close()
        raise StoreUnavailable(f"store {s.store!r} refuses writes "
                               f"({type(exc).__name__}: {exc}); not starting") from exc
    loaded = await asyncio.to_thread(answers.load)
    log.info("%d answers within the last %.0f s remembered", loaded, answers.window)


def _outbox(s: Settings, store: ComputeStore, js: JetStreamContext,
            queries: QueryService) -> HostOutbox:
    """This host's events, and (taking turns on a lease) those of no host's aggregates:
    relayed by tasks here, or by one worker process (``settings.outbox``)."""
    if s.outbox == "process":
        return WorkerOutbox(OutboxProcess(
            s.store, s.nats_url, host=s.host, credentials=s.nats_credentials,
            seal_key=str(key_path(s.nats_credentials, s.seal_key)), views=s.views,
            notify=s.notifications, relay_poll=s.relay_poll, on_views=queries.advance,
            own_views=s.queries == "external"))
    poll = {"idle_poll": s.relay_poll} if s.relay_poll > 0 else {}
    return TaskOutbox(Relay(store, js, host=s.host, **poll),
                      Relay(store, js, host=SHARED_HOST, **poll),
                      Notifier(store, js, host=s.host), queries,
                      notifications=s.notifications)
