"""What an instance actor does outside commands: Nova's init_host rules after a restart (a
move a restart interrupted included), following the hypervisor (power sync and lifecycle
events), and what a redelivered command resumes from (the guest already there, the address
it took).

A collaborator of the actor, not a part of it: it gets the instance to work on and the
actor's journal, records what it decided, and hands back the operation the actor must then
drive (``Rerun``), since driving an operation (hypervisor call, outcome, answer) is the
actor's own business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from compute.actors.context import Recover, SyncPower

from compute.messaging.envelope import Envelope
from compute.actors.driver_actor import DriverActor
from compute.actors.instance_journal import InstanceJournal
from compute.actors.move_coordinator import MoveCoordinator
from compute.actors.refs import as_uuid, instance_ref
from compute.actors.shared_aggregates import NetworkBook
from compute.domain.errors import InstanceFaultRollback, MigrationError
from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS, Operation, lookup, variant
from compute.domain.power_sync import SyncAction, decide
from compute.domain.recovery import Recovery, plan
from compute.domain.states import PowerState, VmState
from compute.events.commands import StopInstance
from compute.events.instance_ref import InstanceRef

log = logging.getLogger("compute.instance")


@dataclass(frozen=True, slots=True)
class Rerun:
    """An operation the actor drives next (``InstanceActor._drive``), with the events
    already recorded for it and their position."""

    env: Envelope
    inst: Instance
    op: Operation
    earlier: list[Any]
    position: int


@dataclass(frozen=True, slots=True)
class Undone:
    """A move a restart interrupted, undone: the events recorded and the error to answer."""

    events: list[Any]
    position: int
    error: Exception


class InstanceRecovery:
    def __init__(self, uuid: UUID, host: str, driver: DriverActor,
                 networks: NetworkBook, moves: MoveCoordinator | None,
                 journal: InstanceJournal) -> None:
        self.uuid = uuid
        self.host = host
        self.driver = driver
        self.networks = networks
        self.moves = moves
        self.journal = journal

    async def recover(self, inst: Instance | None, msg: Recover) -> Rerun | None:
        """Nova's init_host for this instance: clear, redo or fail what was in flight."""
        if inst is None or inst.host != self.host or inst.deleted:
            return None
        power = await self.driver.power_state(instance_ref(inst), PowerState.NOSTATE)
        recovery = plan(inst.vm_state, inst.task_state, inst.power_state, power,
                        resume_guests_state_on_host_boot=msg.resume_guests_state_on_host_boot)
        if recovery is None:
            return None
        command_id = inst.action_command_id or "init_host"
        log.info("instance %s: init_host rule %d: %s", self.uuid, recovery.rule,
                 recovery.reason)
        inst.recover(recovery, power, command_id)
        events = inst.collect_events()
        position = await self.journal.commit(events)
        if inst.migration is not None and inst.migration.active:   # rules 7, 15, 16
            assert self.moves is not None
            after = await self.moves.recover(self.journal.commit, inst, command_id, power)
            inst.observe_power(command_id, after)
            await self.journal.commit(inst.collect_events())
        if recovery.resume:
            await self._resume_guest(inst, command_id)
        if recovery.rerun is None:
            return None
        op = lookup(recovery.rerun)
        assert op is not None
        fields = {"reboot_type": recovery.reboot_type} if recovery.reboot_type else {}
        payload = op.payload(command_id=as_uuid(command_id), **fields)
        inst.action_params = {**inst.action_params, **fields}   # the rule decides the type
        env = Envelope(uuid=self.uuid, op=op, payload=payload, command_id=command_id)
        return Rerun(env, inst, variant(op, payload), events, position)

    async def undo_interrupted_move(self, inst: Instance, command_id: str,
                                    op: Operation) -> Undone:
        """A restart caught a move in a step Nova's init rules leave alone (resize_migrated,
        resize_finish): undo it, as for the steps they cover; the command fails."""
        assert self.moves is not None
        power = await self.driver.power_state(instance_ref(inst), inst.power_state)
        power = await self.moves.recover(self.journal.commit, inst, command_id, power)
        error = InstanceFaultRollback(MigrationError(
            f"{op.name} was interrupted by a restart of {self.host} and undone"))
        inst.fail(op, command_id, error, power)
        events = inst.collect_events()
        position = await self.journal.commit(events)
        return Undone(events, position, error)

    async def _resume_guest(self, inst: Instance, command_id: str) -> None:
        """Rule 17, Nova's _resume_guests_state (nova/compute/manager.py): the driver's
        resume_state_on_host_boot brings the guest back (a hard reboot); states stay as
        they are, only the power state is recorded. A guest that cannot be brought back
        sends the instance to ERROR (Nova's _set_instance_obj_error_state)."""
        ref = instance_ref(inst)
        try:
            after = PowerState(await self.driver.call("resume_state_on_host_boot", ref))
        except Exception as exc:
            log.warning("instance %s: resuming the guest failed: %s", self.uuid, exc)
            power = await self.driver.power_state(ref, PowerState.NOSTATE)
            inst.recover(Recovery(17, f"failed to resume the guest: {exc}"[:255],
                                  VmState.ERROR, None), power, command_id)
        else:
            inst.observe_power(command_id, after)
        events = inst.collect_events()
        if events:
            await self.journal.commit(events)

    async def sync_power(self, inst: Instance | None, msg: SyncPower) -> Rerun | None:
        """Follow the hypervisor: record its power state (a crash as such), stop what went
        down (nova/compute/manager.py _sync_instance_power_state)."""
        if inst is None or inst.host != self.host or inst.deleted or inst.busy:
            return None
        if msg.crashed is None and msg.expected is not None \
                and msg.expected is inst.power_state:
            return None  # the event confirms what we recorded (usually our own operation)
        power = await self.driver.power_state(instance_ref(inst), PowerState.NOSTATE)
        if msg.expected is not None and power is not msg.expected:
            return None                                # a stale lifecycle event
        decision = decide(inst.vm_state, inst.task_state, inst.power_state, power)
        if decision is None:
            return None
        command_id = str(uuid4())
        if decision.record_power or msg.crashed is not None:
            inst.observe_power(command_id, power, crashed=msg.crashed)
        events = inst.collect_events()
        position = await self.journal.commit(events) if events else 0
        if decision.action is SyncAction.NONE:
            return None
        log.warning("instance %s: %s; stopping it", self.uuid, decision.reason)
        op = OPERATIONS["stop_instance"]
        payload = StopInstance(command_id=UUID(command_id))
        inst.accept(op, command_id, payload, force=decision.action is SyncAction.FORCE_STOP)
        accepted = inst.collect_events()
        position = await self.journal.commit(accepted)
        env = Envelope(uuid=self.uuid, op=op, payload=payload, command_id=command_id)
        return Rerun(env, inst, op, events + accepted, position)

    # -- resuming a redelivered command ------------------------------------------------
    async def address_taken(self, inst: Instance) -> None:
        """Put back in the params of a resumed operation that allocates (attach_interface,
        add_fixed_ip) the address it took when it was accepted: the allocation is a network
        event committed with the acceptance, the params are not re-read from it."""
        params = inst.action_params
        if "address" in params:
            return
        network = await self.networks.get(str(params["network_id"]))
        port = str(params["port_id"])
        known = inst.interfaces.get(port, {}).get("addresses", [])
        address = network.taken_for(str(self.uuid), port, known)
        if address is not None:
            params["address"] = address

    async def already_reached(self, op: Operation, ref: InstanceRef,
                               params: dict[str, Any]) -> PowerState | None:
        """The guest's power state when it is already where ``op`` takes it, else None. The
        hypervisor is asked, never the store: after a failed outcome commit the store is
        the one that is behind (``Operation.reaches``, ``Operation.reached_if``)."""
        if op.reaches is None and not op.reached_if:
            return None
        power = await self.driver.power_state(ref, PowerState.NOSTATE)
        if op.reaches is not None:
            done = power is op.reaches
        else:
            try:
                done = bool(await self.driver.call(op.reached_if, ref, **params))
            except Exception:           # cannot tell: the call is made
                done = False
        if not done:
            return None
        log.info("instance %s: %s already reached the hypervisor; recording it", self.uuid,
                 op.name)
        return power
