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
import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from compute import logs
from compute.actors.context import ActorContext, Recover, SyncPower
from compute.messaging.envelope import Envelope
from compute.actors.instance_journal import InstanceJournal, StoreUnavailable
from compute.actors.instance_outcomes import again, preempted, result_of, state_outcome
from compute.actors.instance_recovery import InstanceRecovery, Rerun
from compute.actors.instance_snapshots import next_snapshot, store_snapshot
from compute.actors.move_coordinator import FlowResult
from compute.actors.refs import instance_ref
from compute.domain.errors import (
    ComputeError,
    ComputeResourcesUnavailable,
    ComputeServiceUnavailable,
    InstanceExists,
    InstanceInvalidState,
    InstanceNotFound,
)
from compute.domain.instance import Instance
from compute.domain.instance_events import Completed, ImageDeleted
from compute.domain.instance_snapshot import SNAPSHOT_EVERY
from compute.domain.operations import Operation, variant
from compute.domain.redelivery import Duplicate, Resume, Undo, decide
from compute.domain.secgroup import PROVIDER_GROUP
from compute.domain.states import VmState
from compute.events.commands import RunInstance
from compute.domain.instance_events import ImageDeleted
from compute.events.outcomes import Moved, Rejected
from compute.domain.instance_snapshot import SNAPSHOT_EVERY
from compute.messaging.acks import nak
from compute.virt.api import Finished, power_of

log = logging.getLogger("compute.instance")

Message = Envelope | Recover | SyncPower


class InstanceActor:
    """Its collaborators get only what they use: ``journal`` (durable writes of events and
    answers), ``recovery`` (init_host rules, power sync, an interrupted move's undo, what a
    resumed command reuses), and ``ctx.moves`` (the move saga), which writes through the
    journal's ``commit``. Driving an operation and answering stay here."""

    def __init__(self, uuid: UUID, ctx: ActorContext,
                 on_idle: Callable[[InstanceActor], None]) -> None:
        self.uuid = uuid
        self.ctx = ctx
        self.journal = InstanceJournal(ctx.writer, ctx.store_health, ctx.answers)
        self.recovery = InstanceRecovery(uuid, ctx.host, ctx.driver, ctx.networks, ctx.moves,
                                         self.journal)
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
                await self._rerun(await self.recovery.recover(self.instance, message))
            elif isinstance(message, SyncPower):
                await self._rerun(await self.recovery.sync_power(self.instance, message))
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
                await self._answer(env, again(given))
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
                    await self.recovery.address_taken(inst)
                await self._drive(env, inst, op, [], 0, resumed=True)
            return
        if isinstance(decision, Duplicate):
            assert inst is not None
            self.ctx.counters.duplicates += 1
            await self._answer(env, state_outcome(env, inst, self.ctx.host, [], 0,
                                                  duplicate=True))
            return
        op = env.op
        try:
            if op.creates:
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
                if op.creates_migration:
                    inst.check(op)
                    dest = await self.ctx.moves.destination(inst, op, env.payload)
                    env.payload = msgspec.structs.replace(env.payload, host=dest)
                inst.accept(op, env.command_id, env.payload)
                if op.creates_migration:
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
        position = await self.journal.commit(events + claimed)
        self.instance = inst
        self.ctx.counters.accepted += 1
        await self._drive(env, inst, op, events, position)

    async def _fail_before_driver(self, env: Envelope, inst: Instance, op: Operation,
                                  exc: ComputeError) -> None:
        """A resource the operation needs was refused: fault, task reverted, answered."""
        inst.fail(op, env.command_id, exc, inst.power_state)
        events = inst.collect_events()
        position = await self.journal.commit(events)
        self.instance = inst
        await self._answer(env, state_outcome(
            env, inst, self.ctx.host, [type(ev).__name__ for ev in events], position,
            error=exc))

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
                flow = await self.ctx.moves.run(self.journal.commit, env.command_id,
                                                env.payload, inst, op)
                power = flow.power
            elif resumed and (reached := await self.recovery.already_reached(op, ref, params)) \
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
            power = await self.ctx.driver.power_state(ref, inst.power_state)
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
        position = await self.journal.commit(events + released)
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
        outcome = state_outcome(env, inst, self.ctx.host, names, position, error=error,
                                result=result_of(events))
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
        await self._answer(env, preempted(env, inst, self.ctx.host, op, earlier))

    # -- helpers --------------------------------------------------------------------------
    async def _current(self, env: Envelope) -> Instance | None:
        """The instance, re-read when another host may have written it since: it moved
        away (it may have come back), or it was unknown here (it may have moved here)."""
        inst = self.instance
        if (inst is None and not env.op.creates) or (
                inst is not None and inst.host != self.ctx.host and not inst.deleted):
            inst = self.instance = await asyncio.to_thread(self.ctx.store.get_instance,
                                                           self.uuid)
        return inst

    async def _rerun(self, rerun: Rerun | None) -> None:
        """Drive what restart recovery or the power sync decided to run (or nothing)."""
        if rerun is not None:
            await self._drive(rerun.env, rerun.inst, rerun.op, rerun.earlier, rerun.position)

    async def _undo_interrupted_move(self, env: Envelope, inst: Instance,
                                     op: Operation) -> None:
        """A redelivered move that a restart interrupted is undone, not resumed
        (``InstanceRecovery.undo_interrupted_move``), and its command answered."""
        undone = await self.recovery.undo_interrupted_move(inst, env.command_id, op)
        await self._answer(env, state_outcome(
            env, inst, self.ctx.host, [type(ev).__name__ for ev in undone.events],
            undone.position, error=undone.error))

    async def _abort(self, env: Envelope, inst: Instance, op: Operation) -> None:
        """live_migration_abort: stop the live migration in flight (it rolls back with
        status ``cancelled``), then answer with the instance as it ended. It runs beside
        the migration (a pre-empting command) and waits for exactly the message in flight
        (``_done``) to end."""
        try:
            inst.check(op)
            if not self.ctx.moves.abort(str(self.uuid)):
                raise InstanceInvalidState(self.uuid, "migration status",
                                           inst.migration.status.value
                                           if inst.migration else None, op.name)
        except ComputeError as exc:
            await self._reject(env, exc.error.value, str(exc))
            return
        flow = self._done
        if flow is not None and asyncio.current_task() is not self.task:
            await asyncio.shield(flow)        # the live migration ends (rolled back)
        inst = self.instance or inst
        await self._answer(env, state_outcome(env, inst, self.ctx.host, [], 0, result={
            "migration_status": inst.migration.status.value if inst.migration else None}))

    async def _reject(self, env: Envelope, error: str, message: str) -> None:
        self.ctx.counters.rejected += 1
        log.info("instance %s: rejected %s (%s): %s", self.uuid, env.op.name, error, message)
        await self._answer(env, Rejected(command_id=env.command_id, uuid=str(self.uuid),
                                         operation=env.op.name, host=self.ctx.host,
                                         error=error, message=message))

    async def _answer(self, env: Envelope, outcome: Any) -> None:
        await self.journal.remember(env.command_id, outcome)
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

