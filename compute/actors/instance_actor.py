"""InstanceActor: one per instance; a mailbox processed strictly in order.

For each command: guard and accept (events committed), the hypervisor call through the driver
actor, then the outcome events (committed), then the reply and the JetStream ack. A command
is acked only once all its events are durable, so a crash at any point leads to a redelivery,
which the actor recognises by its command id: an operation already finished is answered as a
duplicate, one interrupted mid-flight is resumed from its hypervisor call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from compute import logs
from compute.actors.context import ActorContext, Envelope, Recover, SyncPower
from compute.actors.instance_moves import RunsMoves
from compute.actors.instance_recovery import FollowsHypervisor
from compute.actors.move_coordinator import FlowResult
from compute.actors.refs import instance_ref
from compute.actors.instance_snapshots import next_snapshot, store_snapshot
from compute.domain.errors import (
    ComputeError,
    ComputeResourcesUnavailable,
    ComputeServiceUnavailable,
    InstanceExists,
    InstanceNotFound,
)
from compute.domain.instance import Instance
from compute.domain.operations import Operation, variant
from compute.domain.redelivery import STARTS_MIGRATION, Duplicate, Resume, Undo, decide
from compute.domain.secgroup import PROVIDER_GROUP
from compute.domain.states import PowerState, VmState
from compute.events.commands import RunInstance
from compute.events.lifecycle import Completed, ImageDeleted
from compute.events.outcomes import Failed, Moved, Rejected, Succeeded
from compute.events.snapshot import SNAPSHOT_EVERY
from compute.messaging.acks import nak, redelivered
from compute.store.health import retry_delay
from compute.virt.api import Finished, InstanceRef, power_of

log = logging.getLogger("compute.instance")

T = TypeVar("T")

Message = Envelope | Recover | SyncPower

class StoreUnavailable(Exception):
    """A write lost to a version conflict, or given up because the host stops: the command
    is handed back to JetStream for a redelivery."""


class InstanceActor(FollowsHypervisor, RunsMoves):
    def __init__(self, uuid: UUID, ctx: ActorContext,
                 on_idle: Callable[[InstanceActor], None]) -> None:
        self.uuid = uuid
        self.ctx = ctx
        self.mailbox: asyncio.Queue[Message] = asyncio.Queue()
        self.urgent: collections.deque[Envelope] = collections.deque()
        self.instance: Instance | None = None
        self._on_idle = on_idle                     # the router: "my mailbox is empty"
        self.idle_since: float | None = None
        self.processing = False
        self._urgent_task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None       # the message being processed
        self._snapshot_due = SNAPSHOT_EVERY                 # (set again on activation)
        self.task = asyncio.create_task(self._run(), name=f"instance-{uuid}")

    @property
    def busy(self) -> bool:
        """Something is being processed or waits: not the moment to passivate."""
        return self.processing or not self.mailbox.empty() or bool(self.urgent) or (
            self._urgent_task is not None and not self._urgent_task.done())

    def preempt(self, env: Envelope) -> None:
        """A pre-empting command (delete) while the actor is busy: it runs at once, beside
        the operation in flight, ahead of what waits (nova/compute/api.py _delete: delete pre-empts
        everything); several run in their order of arrival."""
        self.urgent.append(env)
        if self._urgent_task is None or self._urgent_task.done():
            self._urgent_task = asyncio.create_task(self._run_urgent())

    async def _run_urgent(self) -> None:
        while self.urgent:
            await self._process(self.urgent.popleft())

    # -- lifecycle ------------------------------------------------------------------------
    async def _run(self) -> None:
        self.instance = await asyncio.to_thread(self.ctx.store.get_instance, self.uuid)
        self._snapshot_due = next_snapshot(self.instance)
        loop = asyncio.get_running_loop()
        while True:
            # no timer of its own: the router passivates actors idle for long (one sweep
            # for all; a wait_for per message was a task and a timer per command)
            message = self.mailbox.get_nowait() if not self.mailbox.empty() \
                else await self.mailbox.get()
            self.processing = True
            self._done = loop.create_future()
            done = self._done
            try:
                await self._process(message)
                done.set_result(None)               # (an abort waits for exactly this)
                while self._urgent_task is not None and not self._urgent_task.done():
                    await self._urgent_task         # what took over ends before the next
            finally:
                self.processing = False
                if not done.done():
                    done.set_result(None)
            if self.mailbox.empty():
                self._on_idle(self)

    async def _process(self, message: Message) -> None:
        """One message, with the actor's safety net: nothing kills the actor or its queue."""
        logs.context.set({"uuid": str(self.uuid),
                          "command_id": getattr(message, "command_id", "-")})
        try:
            if isinstance(message, Recover):
                await self._recover(message)
            elif isinstance(message, SyncPower):
                await self._sync_power(message)
            else:
                await self._handle(message)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:
            log.error("instance %s: %s; left for redelivery", self.uuid, exc)
            self.ctx.networks.forget()        # a conflict: shared aggregates are re-read
            self.ctx.groups.forget()
            self.instance = await asyncio.to_thread(self.ctx.store.get_instance, self.uuid)
            if isinstance(message, Envelope):
                self.ctx.in_progress.end(message.msg)
                await nak(message.msg)
        except Exception:  # a bug must not kill the actor nor block its queue
            log.exception("instance %s: %s failed unexpectedly", self.uuid, message)
            try:
                self.instance = await asyncio.to_thread(self.ctx.store.get_instance,
                                                        self.uuid)
                if isinstance(message, Envelope):
                    await self._reject(message, "InternalError", "internal error; see the log")
            except asyncio.CancelledError:
                raise
            except Exception:   # (the store gone too): JetStream redelivers it
                log.exception("instance %s: answering the failure failed", self.uuid)
                if isinstance(message, Envelope):
                    self.ctx.in_progress.end(message.msg)
                    await nak(message.msg)

    # -- one command ----------------------------------------------------------------------
    async def _handle(self, env: Envelope) -> None:
        answers = self.ctx.answers
        if answers is not None and answers.known(env.command_id):
            given = await answers.get(env.command_id)
            if given is not None:           # answered before: the same answer again
                self.ctx.counters.duplicates += 1
                await self._answer(env, _again(given))
                return
        inst = await self._current(env)
        if inst is not None and inst.host != self.ctx.host and not inst.deleted:
            await self._answer(env, Moved(command_id=env.command_id, uuid=str(self.uuid),
                                          operation=env.op.name, host=self.ctx.host,
                                          to_host=inst.host))
            return
        decision = decide(inst, env.command_id, env.op)
        if isinstance(decision, Resume | Undo):
            assert inst is not None
            op = variant(decision.op, env.payload)
            log.info("instance %s: %s %s of command %s after redelivery", self.uuid,
                     "undoing" if isinstance(decision, Undo) else "resuming", op.name,
                     env.command_id)
            if isinstance(decision, Undo):      # a move is not resumed: it is undone
                await self._undo_interrupted_move(env, inst, op)
            else:
                if op.allocates:
                    await self._address_taken(inst)
                await self._drive(env, inst, op, [], 0, resumed=True)
            return
        if isinstance(decision, Duplicate):
            assert inst is not None
            self.ctx.counters.duplicates += 1
            await self._answer(env, self._state_outcome(env, inst, [], 0, duplicate=True))
            return
        op = env.op
        try:
            if op.name == "run_instance":
                if inst is not None:
                    raise InstanceExists(self.uuid)
                host = self.ctx.tracker.host
                if not host.accepting:
                    raise ComputeServiceUnavailable(
                        f"compute host {self.ctx.host} accepts no new builds: " + (
                            f"disabled ({host.disabled_reason or 'no reason given'})"
                            if not host.enabled else "in maintenance mode"))
                assert isinstance(env.payload, RunInstance)
                inst = Instance.create(self.uuid, self.ctx.host, env.command_id,
                                       env.payload, op)
            else:
                if inst is None:
                    raise InstanceNotFound(self.uuid)
                op = variant(op, env.payload)
                if op.flow == "abort":
                    await self._abort(env, inst, op)
                    return
                if op.flow in STARTS_MIGRATION:
                    inst.check(op)
                    dest = await self.ctx.moves.destination(inst, op, env.payload)
                    env.payload = msgspec.structs.replace(env.payload, host=dest)
                inst.accept(op, env.command_id, env.payload)
                if op.flow in STARTS_MIGRATION:
                    self.ctx.moves.begin(inst, op, env.payload, dest, env.command_id)
        except ComputeError as exc:
            await self._reject(env, exc.error.value, str(exc))
            return
        claimed: list[Any] = []
        if op.needs_rules:
            inst.action_params["rules"] = await self.ctx.groups.rules_for(
                [*inst.security_groups, PROVIDER_GROUP])
        if op.allocates:
            try:
                network = await self.ctx.networks.get(str(inst.action_params["network_id"]))
                inst.action_params["address"] = network.allocate(
                    str(self.uuid), inst.action_params["port_id"], env.command_id,
                    inst.action_params.get("requested_ip"))
                claimed += network.collect_events()
            except ComputeError as exc:
                await self._fail_before_driver(env, inst, op, exc)
                return
        if op.claims:
            try:
                claimed += self.ctx.tracker.claim(str(self.uuid), inst.flavor, env.command_id)
            except ComputeResourcesUnavailable as exc:
                # Nova: the claim fails in compute, the build is aborted, the instance
                # goes to ERROR with a fault (there is no other host to reschedule to).
                await self._fail_before_driver(env, inst, op, exc)
                return
        events = inst.collect_events()
        position = await self._commit(events + claimed)
        self.instance = inst
        self.ctx.counters.accepted += 1
        await self._drive(env, inst, op, events, position)

    async def _fail_before_driver(self, env: Envelope, inst: Instance, op: Operation,
                                  exc: ComputeError) -> None:
        """A resource the operation needs was refused: fault, task reverted, answered."""
        inst.fail(op, env.command_id, exc, inst.power_state)
        events = inst.collect_events()
        position = await self._commit(events)
        self.instance = inst
        await self._answer(env, self._state_outcome(
            env, inst, [type(ev).__name__ for ev in events], position, error=exc))

    async def _drive(self, env: Envelope, inst: Instance, op: Operation,
                     earlier: list[Any], position: int, *, resumed: bool = False) -> None:
        """The hypervisor half: call the driver, record success or the fault, answer.

        A ``resumed`` command (a redelivery of the operation in flight) may have reached the
        hypervisor before its outcome failed to commit: when the guest is already where the
        operation takes it (``reaches``, ``reached_if``), that outcome is recorded as it
        happened, and the call (not idempotent: a second unpause fails "not paused") is not
        made."""
        params = {**msgspec.to_builtins(env.payload), **inst.action_params}
        # what the driver may need beyond the payload: the image id a snapshot gets (its
        # command id, so a redelivery makes the same image) and whether to end powered on
        params.setdefault("image_id", env.command_id)
        params["power_on"] = inst.action_vm_state is not VmState.STOPPED
        ref = instance_ref(inst, params)
        error: BaseException | None = None
        flow: FlowResult | None = None
        timed_out: list[dict[str, Any]] = []
        try:
            if op.flow:                 # a move across hosts (actors/move_coordinator.py)
                flow = await self.ctx.moves.run(self, env, inst, op)
                power = flow.power
            elif resumed and (reached := await self._already_reached(op, ref, params)) \
                    is not None:
                power = reached
            else:
                answer = await self.ctx.driver.call(op.driver, ref, **params) \
                    if op.driver else inst.power_state
                power = power_of(answer)
                if isinstance(answer, Finished):
                    timed_out = [msgspec.to_builtins(t) for t in answer.timed_out]
        except Exception as exc:  # every hypervisor failure becomes a fault
            error = exc
            power = await self._power_state(ref, inst.power_state)
        if inst.action_command_id != env.command_id:
            await self._preempted(env, inst, op, earlier)
            return
        released: list[Any] = []
        if error is None:
            freed = inst.addresses_freed_by(op, params)
            inst.complete(op, env.command_id, power, params, timed_out)
            if op.releases:
                released = self.ctx.tracker.release(str(self.uuid), env.command_id)
            released += await self.ctx.networks.release(freed, env.command_id)
            if flow is not None:
                released += flow.host_events
        else:
            log.warning("instance %s: %s failed: %s", self.uuid, op.name, error)
            if inst.fail(op, env.command_id, error, power):
                error = None     # a fault, yet the operation ended (a reboot, guest running)
            if op.claims:
                released = self.ctx.tracker.release(str(self.uuid), env.command_id)
            if op.allocates and "address" in params:      # the address goes back
                released += await self.ctx.networks.release(
                    [(params["network_id"], params["address"])], env.command_id)
        events = inst.collect_events()
        position = await self._commit(events + released)
        if flow is not None and flow.after is not None:
            await flow.after()
        for event in events:
            if isinstance(event, ImageDeleted):      # best effort, as Nova's rotation
                try:
                    await self.ctx.driver.call("delete_image", ref, image_id=event.image_id)
                except Exception as exc:
                    log.warning("instance %s: deleting image %s failed: %s", self.uuid,
                                event.image_id, exc)
        names = [type(ev).__name__ for ev in earlier + events]
        outcome = self._state_outcome(env, inst, names, position, error=error,
                                      result=_result(events))
        if error is None:
            self.ctx.counters.succeeded += 1
        else:
            self.ctx.counters.failed += 1
        await self._answer(env, outcome)

    async def _preempted(self, env: Envelope, inst: Instance, op: Operation,
                         earlier: list[Any]) -> None:
        """A delete took over while the hypervisor was busy: bail out quietly, as Nova's
        UnexpectedDeletingTaskStateError does (no fault, no state change)."""
        log.info("instance %s: %s of command %s pre-empted by a delete", self.uuid, op.name,
                 env.command_id)
        if op.claims:      # a guest a preempted build may have created must not leak
            with contextlib.suppress(Exception):
                await self.ctx.driver.call("destroy", instance_ref(inst))
        await self._answer(env, Failed(
            command_id=env.command_id, uuid=str(self.uuid), operation=op.name,
            host=self.ctx.host, events=[type(ev).__name__ for ev in earlier],
            version=inst.version, vm_state=inst.vm_state.value,
            task_state=inst.task_state.value if inst.task_state else None,
            power_state=int(inst.power_state), error="UnexpectedDeletingTaskStateError",
            code=409, message=f"{op.name} was pre-empted by a delete"))

    # -- helpers --------------------------------------------------------------------------
    async def _current(self, env: Envelope) -> Instance | None:
        """The instance, re-read when another host may have written it since: it moved
        away (it may have come back), or it was unknown here (it may have moved here)."""
        inst = self.instance
        if (inst is None and env.op.name != "run_instance") or (
                inst is not None and inst.host != self.ctx.host and not inst.deleted):
            inst = self.instance = await asyncio.to_thread(self.ctx.store.get_instance,
                                                           self.uuid)
        return inst

    async def _commit(self, events: list[Any]) -> int:
        """Durably store ``events`` (held while the store refuses writes: ``_durably``)."""
        ids = await self._durably(lambda: self.ctx.writer.append(events))
        return ids[-1] if ids else 0

    async def _remember(self, env: Envelope, outcome: Any) -> None:
        """Keep the answer (before the command is acknowledged) for the answer window: a
        redelivery or a resend of its id gets it again (``compute.store.answers``)."""
        answers = self.ctx.answers
        if answers is None or not isinstance(outcome, Succeeded | Failed | Rejected) \
                or answers.known(env.command_id):
            return
        encoded = _encoder.encode(outcome)
        at = await self._durably(
            lambda: self.ctx.writer.remember(answers, env.command_id, encoded))
        answers.noted(env.command_id, at)

    async def _durably(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run a store write. A version conflict (another writer) raises
        ``StoreUnavailable`` at once (the command is redelivered and sees the other's
        events); a store that refuses writes (full, read-only, down) holds the command here,
        retrying, while the host is degraded: its JetStream deliveries are not burned, and it
        continues by itself when the store takes writes again (``compute.store.health``).
        A host that stops meanwhile gives the command back (``StoreUnavailable``)."""
        health = self.ctx.store_health
        attempt = 0
        while True:
            try:
                result = await write()
            except Exception as exc:
                if "conflict" in str(exc):
                    raise StoreUnavailable(f"store write failed: {exc}") from exc
                health.failed(exc)
                if health.closing:
                    raise StoreUnavailable(f"store write failed: {exc}") from exc
                await asyncio.sleep(retry_delay(attempt))
                attempt += 1
                continue
            health.succeeded()
            return result

    async def _address_taken(self, inst: Instance) -> None:
        """Put back in the params of a resumed operation that allocates (attach_interface,
        add_fixed_ip) the address it took when it was accepted: the allocation is a network
        event committed with the acceptance, the params are not re-read from it."""
        params = inst.action_params
        if "address" in params:
            return
        network = await self.ctx.networks.get(str(params["network_id"]))
        port = str(params["port_id"])
        known = inst.interfaces.get(port, {}).get("addresses", [])
        address = network.taken_for(str(self.uuid), port, known)
        if address is not None:
            params["address"] = address

    async def _already_reached(self, op: Operation, ref: InstanceRef,
                               params: dict[str, Any]) -> PowerState | None:
        """The guest's power state when it is already where ``op`` takes it, else None. The
        hypervisor is asked, never the store: after a failed outcome commit the store is
        the one that is behind (``Operation.reaches``, ``Operation.reached_if``)."""
        if op.reaches is None and not op.reached_if:
            return None
        power = await self._power_state(ref, PowerState.NOSTATE)
        if op.reaches is not None:
            done = power is op.reaches
        else:
            try:
                done = bool(await self.ctx.driver.call(op.reached_if, ref, **params))
            except Exception:           # cannot tell: the call is made
                done = False
        if not done:
            return None
        log.info("instance %s: %s already reached the hypervisor; recording it", self.uuid,
                 op.name)
        return power

    async def _power_state(self, ref: InstanceRef, default: PowerState) -> PowerState:
        try:
            return PowerState(await self.ctx.driver.call("power_state", ref, timeout=10))
        except Exception:
            return default

    def _state_outcome(self, env: Envelope, inst: Instance, names: list[str], position: int,
                       *, error: BaseException | None = None, duplicate: bool = False,
                       result: dict[str, Any] | None = None) -> Succeeded | Failed:
        head = dict(command_id=env.command_id, uuid=str(self.uuid), operation=env.op.name,
                    host=self.ctx.host, events=names, version=inst.version,
                    vm_state=inst.vm_state.value,
                    task_state=inst.task_state.value if inst.task_state else None,
                    power_state=int(inst.power_state), position=position,
                    duplicate=duplicate)
        if error is None and not (duplicate and inst.seen(env.command_id) == "TaskReverted"):
            return Succeeded(**head, result=result or {})
        code = error.code if isinstance(error, ComputeError) else 500
        cause = getattr(error, "cause", error)      # a rollback names what caused it
        name = error.error.value if isinstance(error, ComputeError) and \
            error.code != 500 else type(cause).__name__ if error else "Fault"
        return Failed(**head, error=name, code=code,
                      message=str(error or "the operation failed earlier"))

    async def _reject(self, env: Envelope, error: str, message: str) -> None:
        self.ctx.counters.rejected += 1
        log.info("instance %s: rejected %s (%s): %s", self.uuid, env.op.name, error, message)
        await self._answer(env, Rejected(command_id=env.command_id, uuid=str(self.uuid),
                                         operation=env.op.name, host=self.ctx.host,
                                         error=error, message=message,
                                         duplicate=redelivered(env.msg)))

    async def _answer(self, env: Envelope, outcome: Any) -> None:
        await self._remember(env, outcome)
        self.ctx.metrics.answered(env.op.name, type(outcome).__name__,
                                  time.monotonic() - env.received)
        inst = self.instance
        if inst is not None and inst.version >= self._snapshot_due:   # (all committed now)
            self._snapshot_due = next_snapshot(inst)
            store_snapshot(self.ctx.store, inst)
        await self.ctx.reply(env, env.reply_to, outcome)
        if env.msg is not None:
            self.ctx.in_progress.end(env.msg)
            await env.msg.ack()


_encoder = msgspec.json.Encoder()
_outcomes = msgspec.json.Decoder(Succeeded | Failed | Rejected)


def _again(encoded: bytes) -> Succeeded | Failed | Rejected:
    """A remembered answer, given again: the same, marked as a duplicate."""
    return msgspec.structs.replace(_outcomes.decode(encoded), duplicate=True)


_BASE_FIELDS = frozenset(Completed.__struct_fields__)


@functools.cache
def _own_fields(cls: type) -> tuple[str, ...]:
    return tuple(f for f in cls.__struct_fields__ if f not in _BASE_FIELDS)


def _result(events: list[Any]) -> dict[str, Any]:
    """What an operation produced: its completion event's own fields."""
    for event in events:
        if isinstance(event, Completed):
            fields = _own_fields(type(event))
            return msgspec.to_builtins({f: getattr(event, f) for f in fields}) if fields \
                else {}
    return {}
