"""What an instance actor does outside commands: Nova's init_host rules after a restart, and
following the hypervisor (power sync and lifecycle events)."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID, uuid4

from compute.actors.context import ActorContext, Recover, SyncPower
from compute.actors.refs import as_uuid, instance_ref
from compute.domain.instance import Instance
from compute.domain.operations import OPERATIONS, lookup, variant
from compute.domain.power_sync import SyncAction, decide
from compute.domain.recovery import Recovery, plan
from compute.domain.states import PowerState, VmState
from compute.events.commands import StopInstance
from compute.messaging.envelope import Envelope

log = logging.getLogger("compute.instance")


class FollowsHypervisor:
    """Mixed into InstanceActor, whose state and helpers (_commit, _drive, ...) it uses."""

    uuid: UUID
    ctx: ActorContext
    instance: Instance | None
    _commit: Any
    _drive: Any
    _power_state: Any

    async def _recover(self, msg: Recover) -> None:
        """Nova's init_host for this instance: clear, redo or fail what was in flight."""
        inst = self.instance
        if inst is None or inst.host != self.ctx.host or inst.deleted:
            return
        power = await self._power_state(instance_ref(inst), PowerState.NOSTATE)
        recovery = plan(inst.vm_state, inst.task_state, inst.power_state, power,
                        resume_guests_state_on_host_boot=msg.resume_guests_state_on_host_boot)
        if recovery is None:
            return
        command_id = inst.action_command_id or "init_host"
        log.info("instance %s: init_host rule %d: %s", self.uuid, recovery.rule,
                 recovery.reason)
        inst.recover(recovery, power, command_id)
        events = inst.collect_events()
        position = await self._commit(events)
        if inst.migration is not None and inst.migration.active:   # rules 7, 15, 16
            after = await self.ctx.moves.recover(self, inst, command_id, power)
            inst.observe_power(command_id, after)
            await self._commit(inst.collect_events())
        if recovery.resume:
            await self._resume_guest(inst, command_id)
        if recovery.rerun is None:
            return
        op = lookup(recovery.rerun)
        assert op is not None
        fields = {"reboot_type": recovery.reboot_type} if recovery.reboot_type else {}
        payload = op.payload(command_id=as_uuid(command_id), **fields)
        inst.action_params = {**inst.action_params, **fields}   # the rule decides the type
        env = Envelope(uuid=self.uuid, op=op, payload=payload, command_id=command_id)
        await self._drive(env, inst, variant(op, payload), events, position)

    async def _resume_guest(self, inst: Instance, command_id: str) -> None:
        """Rule 17, Nova's _resume_guests_state (nova/compute/manager.py): the driver's
        resume_state_on_host_boot brings the guest back (a hard reboot); states stay as
        they are, only the power state is recorded. A guest that cannot be brought back
        sends the instance to ERROR (Nova's _set_instance_obj_error_state)."""
        ref = instance_ref(inst)
        try:
            after = PowerState(await self.ctx.driver.call("resume_state_on_host_boot", ref))
        except Exception as exc:
            log.warning("instance %s: resuming the guest failed: %s", self.uuid, exc)
            power = await self._power_state(ref, PowerState.NOSTATE)
            inst.recover(Recovery(17, f"failed to resume the guest: {exc}"[:255],
                                  VmState.ERROR, None), power, command_id)
        else:
            inst.observe_power(command_id, after)
        events = inst.collect_events()
        if events:
            await self._commit(events)

    async def _sync_power(self, msg: SyncPower) -> None:
        """Follow the hypervisor: record its power state (a crash as such), stop what went
        down (nova/compute/manager.py _sync_instance_power_state)."""
        inst = self.instance
        if inst is None or inst.host != self.ctx.host or inst.deleted or inst.busy:
            return
        if msg.crashed is None and msg.expected is not None \
                and msg.expected is inst.power_state:
            return       # the event confirms what we recorded (usually our own operation)
        power = await self._power_state(instance_ref(inst), PowerState.NOSTATE)
        if msg.expected is not None and power is not msg.expected:
            return                                   # a stale lifecycle event
        decision = decide(inst.vm_state, inst.task_state, inst.power_state, power)
        if decision is None:
            return
        command_id = str(uuid4())
        if decision.record_power or msg.crashed is not None:
            inst.observe_power(command_id, power, crashed=msg.crashed)
        events = inst.collect_events()
        position = await self._commit(events) if events else 0
        if decision.action is SyncAction.NONE:
            return
        log.warning("instance %s: %s; stopping it", self.uuid, decision.reason)
        op = OPERATIONS["stop_instance"]
        payload = StopInstance(command_id=UUID(command_id))
        inst.accept(op, command_id, payload, force=decision.action is SyncAction.FORCE_STOP)
        accepted = inst.collect_events()
        position = await self._commit(accepted)
        env = Envelope(uuid=self.uuid, op=op, payload=payload, command_id=command_id)
        await self._drive(env, inst, op, events + accepted, position)
