"""HostService: one per compute host. Wires the bus, the store, the actors and the views.

Inbound: a durable JetStream pull consumer on ``compute.cmd.<host>.>`` (commands survive a
host that is down), routed to one actor per instance. Outbound: outcomes to the sender's
inbox, events to ``COMPUTE_EVENTS`` through the relay, queries answered from the projections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any
from uuid import UUID

import msgspec
import nats
import nats.js.errors
from nats import micro
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from compute import __version__
from compute.actors.backdoor import start_backdoor
from compute.actors.context import ActorContext, Envelope, Recover
from compute.actors.driver import DriverActor, driver_threads
from compute.actors.host_ops import HostOperations
from compute.actors.host_tasks import HostTasks
from compute.actors.instance import StoreUnavailable
from compute.actors.move_steps import MoveSteps
from compute.actors.moves import Moves
from compute.actors.networks import NetworkBook, SecurityGroupBook
from compute.actors.peers import Peers
from compute.actors.resources import ResourceTracker
from compute.actors.router import Router
from compute.config import Settings, answer_window
from compute.domain.errors import ComputeError, InvalidPayload
from compute.domain.host_operations import HOST_OPERATIONS
from compute.domain.operations import ALIASES, OPERATIONS, lookup
from compute.domain.placement import pick_host
from compute.events.commands import Flavor
from compute.events.outcomes import ErrorCode, Outcome, Rejected
from compute.events.steps import STEPS
from compute.messaging import dead_letters, intake
from compute.messaging.acks import redelivered
from compute.messaging.connection import garbled, watch
from compute.messaging.consumer import PullConsumer
from compute.messaging.credentials import connect
from compute.messaging.guard import guard_publishes
from compute.messaging.notifier import Notifier
from compute.messaging.outbox import OutboxProcess
from compute.messaging.queries import QueryService, fleet_hosts
from compute.messaging.relay import Relay
from compute.messaging.streams import cluster_replicas, ensure_streams
from compute.messaging.subjects import (
    COMMANDS_STREAM,
    HOST_TARGET,
    REPLY_TO,
    SHARED_HOST,
    command,
    host_commands,
    is_inbox,
)
from compute.messaging.users import host_user
from compute.metrics import Metrics
from compute.projections.local import LocalProjector, check_kind
from compute.projections.projector import Projector
from compute.projections.views import ViewStore
from compute.store.app import ComputeStore, open_store
from compute.store.answers import AnswerBook
from compute.store.health import StoreHealth
from compute.store.seal import (
    SealKeyMismatch,
    check_fits,
    key_path,
    load_or_create_key,
    use_key,
)
from compute.store.writer import GroupCommitWriter
from compute.virt.events import LifecycleEvents
from compute.virt.libvirt_driver import LibvirtDriver

log = logging.getLogger("compute.host")


_encoder = msgspec.json.Encoder()
_any: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def service_error_headers(rejected: Rejected) -> dict[str, str]:
    """The NATS micro error headers of a rejection: its message (one line) and an
    HTTP-like code, the domain error's (400 payload, 404 not found, 409 state, 500...)."""
    codes = {cls.error: cls.code for cls in _subclasses(ComputeError)}
    return {"Nats-Service-Error": " ".join(rejected.message.split())[:1024],
            "Nats-Service-Error-Code": str(codes.get(rejected.error, 500))}


def _subclasses(cls: type) -> list[type]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


class HostService(HostTasks):
    def __init__(self, settings: Settings, *, driver: Any | None = None) -> None:
        self.settings = settings
        self.host = settings.host
        self.driver = driver or LibvirtDriver(
            settings.libvirt_uri, local_gb=settings.local_gb, volumes_dir=settings.volumes_dir,
            images_dir=settings.images_dir, disk_dir=settings.instances_dir,
            shutdown_timeout=settings.shutdown_timeout,
            soft_reboot_timeout=settings.wait_soft_reboot_seconds,
            detach_timeout=settings.detach_timeout, graceful_retry=settings.graceful_retry,
            instances_shared=settings.instances_shared)
        self.nc: NATS | None = None
        self.store: ComputeStore | None = None
        self.router: Router | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._known: set[UUID] = set()
        self.backdoor_port: int | None = None
        self.console_secret = secrets.token_bytes(32)
        self._backdoor: asyncio.Server | None = None
        self.micro: Any = None
        self._steps: set[asyncio.Task[None]] = set()
        self.consumer: PullConsumer | None = None
        self._endpoints: dict[str, Any] = {}     # micro endpoints by call name (their stats)
        self._calls: dict[str, str] = {}         # inbox -> call, for an actor's answer
        self.failed = asyncio.Event()
        """Set when the host's NATS connection is closed for good: the host serves nothing
        any more, and ``compute up`` exits non-zero so its supervisor restarts it."""

    # -- start / stop ---------------------------------------------------------------------
    async def start(self) -> HostService:
        s = self.settings
        self.loop = asyncio.get_running_loop()
        self.nc = await connect(s.nats_url, host_user(self.host), s.nats_credentials,
                                name=f"compute-host-{self.host}", max_reconnect_attempts=-1,
                                reconnect_time_wait=0.5)
        guard_publishes(self.nc, refused=lambda _: self._refused_reply())
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, cluster_replicas(self.nc), update=False,  # create only
                             settings=s)
        try:
            self.store = await asyncio.to_thread(open_store, s.store)
        except Exception as exc:       # (a read-only directory: SQLite cannot open its log)
            with contextlib.suppress(Exception):
                await self.nc.close()
            raise StoreUnavailable(f"store {s.store!r} refuses writes: cannot open it "
                                   f"({type(exc).__name__}: {exc}); not starting") from exc
        self.seal_key_path = key_path(s.nats_credentials, s.seal_key)
        key = await asyncio.to_thread(load_or_create_key, self.seal_key_path, self.store)
        try:
            await asyncio.to_thread(check_fits, self.store, key, self.seal_key_path)
        except SealKeyMismatch:
            await asyncio.to_thread(self.store.close)
            await self.nc.close()
            raise
        use_key(self.store, key)
        self.views = await asyncio.to_thread(ViewStore, s.views)
        self.projector = LocalProjector(self.store, self.views, self.host) if self.external \
            else Projector(self.store, self.views)
        await asyncio.to_thread(check_kind, self.views, self.projector.name)
        self.writer = GroupCommitWriter(self.store, on_commit=self._committed)
        self.metrics = Metrics()
        self.store_health = StoreHealth(on_change=self._store_writable)
        self.answers = AnswerBook(self.store, self.host, answer_window(s))
        await self._check_store()
        self.metrics.watch_bus(self.nc.faults)
        self.driver_actor = DriverActor(
            self.driver, threads=driver_threads(s, self.driver), timeout=s.driver_timeout,
            observe=self.metrics.driver_call)
        # this host's events, and (taking turns on a lease) those of no host's aggregates
        self.relay = Relay(self.store, self.js, host=self.host)
        self.shared_relay = Relay(self.store, self.js, host=SHARED_HOST)
        self.notifier = Notifier(self.store, self.js, host=self.host)
        self.queries = QueryService(self.nc, self.views, self.projector, host=self.host,
                                    cell=s.cell)
        host = await asyncio.to_thread(self.store.get_host, self.host)
        await self._report_resources(host)
        self.tracker = ResourceTracker(host)
        self.networks = NetworkBook(self.store)
        self.groups = SecurityGroupBook(self.store)
        self.moves = Moves(self.host, Peers(self.nc, s.call_timeout), self.placement,
                           allow_resize_to_same_host=s.allow_resize_to_same_host,
                           max_concurrent_live_migrations=s.max_concurrent_live_migrations,
                           hypervisor_type=self.driver.domain_type)
        self.move_steps = MoveSteps(self)
        ctx = ActorContext(host=self.host, store=self.store, writer=self.writer,
                           driver=self.driver_actor, tracker=self.tracker,
                           networks=self.networks, groups=self.groups, reply=self._reply,
                           moves=self.moves, metrics=self.metrics,
                           passivate_after=s.passivate_after, ack_wait=s.ack_wait,
                           store_health=self.store_health, answers=self.answers)
        self.ctx = ctx
        self.router = Router(ctx)
        self._inject_faults()
        await self._init_host()
        await self.update_available_resource()          # Nova's pre_start_hook
        if not self.external:         # else the fleet's views are `compute queries` replicas'
            await self.queries.start()
        self.host_ops = HostOperations(self)
        self.micro = await self._serve_calls()
        if s.metrics_port >= 0:
            port = await asyncio.to_thread(self.metrics.serve, s.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", port)
        if s.backdoor_port >= 0:
            self._backdoor = await start_backdoor(self, s.backdoor_port)
            self.backdoor_port = self._backdoor.sockets[0].getsockname()[1]
            log.warning("introspection console on 127.0.0.1:%d", self.backdoor_port)
        self.lifecycle = LifecycleEvents(self.driver.connect, self._lifecycle_event,
                                         reset=self.driver.close)
        self._tasks = [
            asyncio.create_task(self.lifecycle.run(), name="lifecycle-events"),
            asyncio.create_task(self._periodic(s.sync_power_state_interval,
                                               self.sync_power_states), name="power-sync"),
            asyncio.create_task(self._periodic(s.update_resources_interval,
                                               self.update_available_resource),
                                name="update-available-resource"),
            asyncio.create_task(self._periodic(
                s.reclaim_poll_interval if s.reclaim_instance_interval > 0 else -1,
                self.reclaim_queued_deletes), name="reclaim"),
            asyncio.create_task(self._periodic(1.0, self.sample_metrics), name="metrics"),
            asyncio.create_task(watch(self.nc, self._bus_closed), name="bus-watch"),
            *self._outbox_tasks(),
            asyncio.create_task(self._consume(), name="consumer"),
        ]
        log.info("host %s serving %s (store %s, hypervisor %s)", self.host,
                 host_commands(self.host), s.store, s.libvirt_uri)
        return self

    def _outbox_tasks(self) -> list[asyncio.Task[Any]]:
        """The relay, notifier and projector: tasks here, or one worker process that
        reports its positions back (``settings.outbox``)."""
        s = self.settings
        if s.outbox != "process":
            notifying = [asyncio.create_task(self.notifier.run(), name="notifier")] \
                if s.notifications else []
            return [asyncio.create_task(self.relay.run(), name="relay"),
                    asyncio.create_task(self.shared_relay.run(), name="shared-relay"),
                    *notifying,
                    asyncio.create_task(self.queries.follow(), name="projector")]
        self.relay = self.shared_relay = self.notifier = OutboxProcess(
            s.store, s.nats_url, host=self.host, credentials=s.nats_credentials,
            seal_key=str(self.seal_key_path), views=s.views, notify=s.notifications,
            on_views=self.queries.advance, own_views=self.external).start()
        return [asyncio.create_task(self.relay.run(), name="outbox-worker")]

    async def stop(self) -> None:
        self._stopping = True
        if self._steps:                  # the other hosts' steps in progress end first
            await asyncio.wait(self._steps, timeout=5)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # nats-py's fetch can turn a cancellation into its own timeout; the loops also
            # check ``_stopping``, and the wait is bounded either way.
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            if pending:
                log.warning("stopping: %s did not stop within 5 s",
                            ", ".join(sorted(t.get_name() for t in pending)))
        self._tasks = []
        self.lifecycle.close()
        self.metrics.close()
        with contextlib.suppress(Exception):
            await self.micro.stop()
        if self._backdoor is not None:
            self._backdoor.close()
        if self.router is not None:
            self.store_health.close()     # commits held for the store give their commands back
            await self.router.drain()
        await self._relay_the_rest()
        await self.queries.stop()
        if self.nc is not None:
            # flush the last replies and acks, then close: a drain would wait for the pull
            # subscription's buffered messages, which nobody consumes any more.
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        await asyncio.to_thread(self.writer.close)
        if isinstance(self.relay, OutboxProcess):
            await self.relay.close()
        self.driver_actor.close()
        await asyncio.to_thread(self.views.close)
        if self.store_health.writable:
            await asyncio.to_thread(self.store.close)
        else:    # SQLite's close checkpoints (a write): on a read-only file it faults (SIGBUS)
            log.warning("store refuses writes: left unclosed (the process ends with it)")

    async def _relay_the_rest(self, timeout: float = 5.0) -> None:
        """A host that stops cleanly publishes the events it committed, and their
        notifications: only this host may publish them (issue 18 item 7), so what it left
        would wait for its return. (The outbox worker finishes its page when told to stop;
        the ``_shared`` events are the next lease holder's.)"""
        if isinstance(self.relay, OutboxProcess):
            return
        followers = [self.relay, self.notifier] if self.settings.notifications \
            else [self.relay]
        try:
            async with asyncio.timeout(timeout):
                for follower in followers:
                    while await follower.run_once():
                        pass
                    await follower.positions.flush()
        except Exception as exc:                # (a timeout, a lost connection)
            log.warning("stopping: %s left unpublished events: %r", self.host, exc)

    async def _bus_closed(self) -> None:
        if not self._stopping:
            log.error("host %s: its NATS connection is closed; it serves nothing", self.host)
            self.failed.set()

    async def __aenter__(self) -> HostService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _init_host(self) -> None:
        """Nova's init_host: every instance of this host that was mid-operation (or, with
        resume_guests_state_on_host_boot, every one) gets its recovery first in its mailbox,
        ahead of any command."""
        await asyncio.to_thread(self.projector.catch_up)
        views = await asyncio.to_thread(self.views.list_instances, self.host)
        self._known = {UUID(v.uuid) for v in views}
        resume = self.settings.resume_guests_state_on_host_boot
        for view in views:
            if view.task_state is not None or view.vm_state == "building" or resume:
                self.router.deliver(Recover(UUID(view.uuid), resume))

    def _inject_faults(self) -> None:
        for item in filter(None, self.settings.faults.split(",")):
            method, seconds, rate = (item.split(":") + ["0", "0"])[:3]
            if float(seconds or 0):
                log.warning("chaos: every %s call is delayed %ss", method, seconds)
                self.driver.inject_fault(method.strip(), None, times=1 << 30,
                                         delay=float(seconds))
            if float(rate or 0):
                log.warning("chaos: %s%% of %s calls fail", float(rate) * 100, method)
                self.driver.chaos(method.strip(), float(rate))

    # -- inbound --------------------------------------------------------------------------
    async def _consume(self) -> None:
        s = self.settings
        # named, so the create request's subject carries the filter and the server holds
        # the host to its own commands (nats.conf's HOST role allows only that subject)
        config = ConsumerConfig(
            name=host_user(self.host), durable_name=host_user(self.host),
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=s.ack_wait,
            # one delivery more than max_deliver: the host dead-letters it (dead_letters.py)
            max_deliver=s.max_deliver + 1 if s.max_deliver > 0 else -1,
            max_ack_pending=s.max_ack_pending,
            filter_subject=host_commands(self.host),
        )
        while True:          # a cluster electing leaders (a node just died) may not answer
            try:
                try:
                    await self.js.consumer_info(COMMANDS_STREAM, config.durable_name)
                except nats.js.errors.NotFoundError:
                    await self.js.add_consumer(COMMANDS_STREAM, config=config)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("creating the command consumer failed; retrying")
                await asyncio.sleep(0.5)
        consumer = self.consumer = await PullConsumer(
            self.nc, COMMANDS_STREAM, config.durable_name, self.dispatch,
            paused=not self.store_health.writable).start()
        try:
            await asyncio.Event().wait()           # until the host stops (cancelled)
        finally:
            await consumer.stop()

    async def dispatch(self, msg: Any) -> None:
        """Route one command; anything wrong with it, whatever its bytes (a subject or
        headers that are not UTF-8, any exception while reading it), is answered with a
        typed ``Rejected`` and the message terminated (never redelivered)."""
        if self._stopping:      # handed back at once, for whoever consumes next
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        try:
            if part := garbled(msg):
                raise InvalidPayload(f"the command's {part} is not valid UTF-8")
            if await self._dead_letter(msg):
                return
            tokens = msg.subject.split(".")
            if len(tokens) == 5 and tokens[3] == HOST_TARGET:
                outcome = await self.host_ops.run(tokens[4], msg.data)
                await self._reply(None, (msg.headers or {}).get(REPLY_TO), outcome)
                with contextlib.suppress(Exception):
                    await (msg.term() if isinstance(outcome, Rejected) else msg.ack())
                return
            env = intake.parse(msg.subject, msg.data, msg.headers)
            env.msg = msg
            self.router.deliver(env)
        except Exception as exc:
            await self._refuse(msg, exc)

    async def _refuse(self, msg: Any, exc: Exception) -> None:
        """Answer a command that cannot be run with a typed ``Rejected`` (``InternalError``
        for an exception that is not a ComputeError: a bug, logged with its traceback), and
        terminate it."""
        if not isinstance(exc, ComputeError):
            log.error("command on %r failed before reaching an actor", msg.subject,
                      exc_info=exc)
            exc = ComputeError(f"{type(exc).__name__}: {exc}")
        info = intake.salvage(msg.subject, msg.data, msg.headers)
        log.warning("rejected %s on %r: %s", exc.error.value, msg.subject[:300], exc)
        self.ctx.counters.rejected += 1
        self.metrics.refused(info["operation"])
        await self._reply(None, info["reply_to"], Rejected(
            command_id=info["command_id"], uuid=info["uuid"], operation=info["operation"],
            host=self.host, error=exc.error, message=str(exc), duplicate=redelivered(msg)))
        with contextlib.suppress(Exception):
            await msg.term()

    async def _dead_letter(self, msg: Any) -> bool:
        """Move a command that must not run to ``COMPUTE_DEAD`` (its deliveries ran out, or
        it is older than ``command_max_age``): kept with the reason, the sender answered,
        counted, logged, terminated. False: it runs."""
        s = self.settings
        found = dead_letters.verdict(msg, max_deliver=s.max_deliver, max_age=s.command_max_age)
        if found is None:
            return False
        reason, detail = found
        info = intake.salvage(msg.subject, msg.data, msg.headers)
        try:
            await dead_letters.dead_letter(self.js, msg, self.host, reason, detail)
        except Exception as exc:       # not kept: it stays in the queue and comes again
            log.error("dead-lettering %s failed (%s); it is redelivered", msg.subject, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return True
        log.error("dead letter: %s (command %s) %s: %s", msg.subject, info["command_id"],
                  reason, detail)
        self.metrics.dead_letter(reason)
        await self._reply(None, info["reply_to"], Rejected(
            command_id=info["command_id"], uuid=info["uuid"], operation=info["operation"],
            host=self.host, error=ErrorCode.DEAD_LETTERED, message=f"{reason}: {detail}",
            duplicate=redelivered(msg)))
        with contextlib.suppress(Exception):
            await msg.term()
        return True

    async def _check_store(self) -> None:
        """A host whose store refuses writes does not report itself up: a real write (its
        probe row in the answers' table) or the start fails, loudly."""
        try:
            await asyncio.to_thread(self.answers.create)
            await asyncio.to_thread(self.answers.probe)
        except Exception as exc:        # (the store is not closed: see stop())
            await asyncio.to_thread(self.writer.close)
            await asyncio.to_thread(self.views.close)
            with contextlib.suppress(Exception):
                await self.nc.close()
            raise StoreUnavailable(f"store {self.settings.store!r} refuses writes "
                                   f"({type(exc).__name__}: {exc}); not starting") from exc
        loaded = await asyncio.to_thread(self.answers.load)
        log.info("%d answers within the last %.0f s remembered", loaded, self.answers.window)

    def _store_writable(self, writable: bool) -> None:
        """The store stopped or started taking writes: stop or start pulling commands (the
        ones already here are held, not handed back)."""
        self.metrics.store_writable.set(int(writable))
        if self.consumer is not None:
            if writable:
                task = asyncio.get_running_loop().create_task(self.consumer.resume())
                self._steps.add(task)              # (held until done, as the steps are)
                task.add_done_callback(self._steps.discard)
            else:
                self.consumer.pause()

    async def _serve_calls(self) -> Any:
        """Every call of this host as an endpoint of a NATS micro service named ``compute``:
        ``$SRV.PING|INFO|STATS[.compute[.<id>]]`` find it, list its subjects, count requests
        and (``_answer_call``) the rejected ones as errors."""
        service = await micro.add_service(
            self.nc, name="compute", version=__version__,
            description="Nova's ComputeManager on NATS: one instance per compute host",
            metadata={"host": self.host})
        names = sorted({*HOST_OPERATIONS, *OPERATIONS, *ALIASES, *STEPS})

        async def endpoint(request: Any) -> None:
            msg = request._msg
            try:
                if part := garbled(msg):
                    raise InvalidPayload(f"the call's {part} is not valid UTF-8")
                await self._on_call(msg)
            except Exception as exc:     # typed, not micro's untyped "500" error header
                error = exc if isinstance(exc, ComputeError) else ComputeError(
                    f"{type(exc).__name__}: {exc}")
                if not isinstance(exc, ComputeError):
                    log.error("call on %r failed", msg.subject, exc_info=exc)
                if msg.reply:
                    with contextlib.suppress(Exception):
                        await msg.respond(_encoder.encode(Rejected(
                            command_id=None, uuid=None, operation=msg.subject.rsplit(".")[-1],
                            host=self.host, error=error.error, message=str(error))))

        for name in names:
            await service.add_endpoint(name=name, subject=f"compute.call.{self.host}.{name}",
                                       handler=endpoint, queue_group=f"compute-{self.host}")
            self._endpoints[name] = service._endpoints[-1]
        return service

    async def _on_call(self, msg: Any) -> None:
        """Synchronous calls on ``compute.call.<host>.<operation>``. An instance operation
        (``{"uuid": ..., "command_id": ...}``) goes through the instance's actor, which
        answers on the request's inbox; the others are host calls."""
        name = msg.subject.rsplit(".", 1)[-1]
        if name in STEPS:       # its own task: a slow hypervisor step must not hold up
            task = asyncio.create_task(self._step(name, msg))      # the next move's step
            self._steps.add(task)
            task.add_done_callback(self._steps.discard)
            return
        if lookup(name) is not None and msg.reply:
            await self._instance_call(name, msg)
            return
        await self._answer_call(name, msg, await self.host_ops.run(name, msg.data))

    async def _step(self, name: str, msg: Any) -> None:
        await self._answer_call(name, msg, await self.move_steps.handle(name, msg.data))

    async def _answer_call(self, name: str, msg: Any, answer: Any) -> None:
        """A call's one reply. A ``Rejected`` also carries the micro service error headers
        (``Nats-Service-Error``, ``Nats-Service-Error-Code``) and counts as an error of its
        endpoint in ``$SRV.STATS``, as a NATS micro client expects."""
        headers = None
        answer = self._in_cell(answer)
        if isinstance(answer, Rejected):
            headers = service_error_headers(answer)
            self._count_error(name, answer)
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, _encoder.encode(answer), headers=headers)

    def _count_error(self, name: str, rejected: Rejected) -> None:
        stats = self._endpoints.get(name)
        if stats is not None:
            stats._num_errors += 1
            stats._last_error = f"{rejected.error}: {rejected.message}"

    async def _instance_call(self, name: str, msg: Any) -> None:
        try:
            body = intake.decode(_any, msg.data, f"{name} call")
            target = body.pop("uuid", None) if isinstance(body, dict) else None
            if not isinstance(target, str):
                raise InvalidPayload("an instance call needs {\"uuid\": ...} in its body")
            env = intake.parse(command(self.host, target, name), msgspec.json.encode(body),
                               {REPLY_TO: msg.reply})
            if not self.store_health.writable:     # a call is not held: refused, typed
                await self._answer_call(name, msg, Rejected(
                    command_id=env.command_id, uuid=target, operation=name, host=self.host,
                    error=ErrorCode.STORE_UNAVAILABLE,
                    message=f"the store refuses writes: {self.store_health.reason}"))
                return
        except Exception as exc:      # whatever its bytes: one typed answer
            if not isinstance(exc, ComputeError):
                log.error("call %s failed before reaching an actor", name, exc_info=exc)
            error = exc if isinstance(exc, ComputeError) else ComputeError(
                f"{type(exc).__name__}: {exc}")
            await self._answer_call(name, msg, Rejected(
                command_id=None, uuid=None, operation=name, host=self.host,
                error=error.error, message=str(error)))
            return
        self._calls[msg.reply] = name          # its actor answers: _reply counts a refusal
        self.router.deliver(env)

    @property
    def external(self) -> bool:
        """The fleet's views are served by ``compute queries`` replicas, not this host."""
        return self.settings.queries == "external"

    async def placement(self, flavor: Flavor, exclude: set[str]) -> str | None:
        """The enabled host with the most free RAM that fits ``flavor`` (the host's own
        claim stays the final word). The fleet's hosts come from this host's views, or,
        when it keeps only its own (``external``), from the query service, as a client's
        ``place`` reads them."""
        if self.external:
            hosts = await fleet_hosts(self.nc, self.settings.call_timeout)
        else:
            await asyncio.to_thread(self.projector.catch_up)
            hosts = await asyncio.to_thread(self.views.list_hosts)
        return pick_host(hosts, flavor, exclude)

    # -- outbound -------------------------------------------------------------------------
    async def _reply(self, env: Envelope | None, reply_to: str | None, outcome: Outcome) -> None:
        """The outcome to its sender's inbox, and only to an inbox: ``Compute-Reply-To`` is
        the sender's word, and a sender naming ``compute.evt.<host>.<uuid>.Terminated`` or
        ``compute.notify...`` must not make this host publish there (issue 18 item 6). The
        command itself is still carried out: it came through the stream under its sender's
        own publish permission, and only its return address is bad, so refusing it would
        answer no one either; the bad address is logged and counted
        (``compute_replies_refused``). A rejected call's answer carries the micro error
        headers, so ``$SRV.STATS`` counts it."""
        outcome = self._in_cell(outcome)
        call = self._calls.pop(reply_to, None) if reply_to else None
        if call is not None and isinstance(outcome, Rejected):
            self._count_error(call, outcome)
        if not reply_to or self.nc is None:
            return
        if not is_inbox(reply_to):
            log.warning("%s: not sending the outcome to %r, which is not an inbox subject",
                        outcome.operation, reply_to)
            self._refused_reply()
            return
        with contextlib.suppress(Exception):
            await self.nc.publish(reply_to, _encoder.encode(outcome),
                                  headers=service_error_headers(outcome)
                                  if isinstance(outcome, Rejected) else None)

    def _in_cell(self, answer: Any) -> Any:
        """An outcome's ``position`` counts in this host's cell's store: it says which, so
        the asker's queries wait for that cell (``QueryRequest.cell``)."""
        if getattr(answer, "cell", False) is None and getattr(answer, "position", 0):
            return msgspec.structs.replace(answer, cell=self.settings.cell)
        return answer

    def _refused_reply(self) -> None:
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            metrics.replies_refused.inc()

    def _committed(self, last_id: int) -> None:
        """Writer thread: new events are durable; wake the relay and the projector."""
        if isinstance(self.relay, OutboxProcess):
            self.relay.wake()          # a byte on the worker's pipe, no event-loop hop
            return
        self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.relay.wake()
        self.shared_relay.wake()
        self.notifier.wake()
        self.queries.wake()
