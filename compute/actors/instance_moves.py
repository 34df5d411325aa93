"""What an instance actor does for moves beyond the saga itself: undo a move a restart
interrupted, and abort a live migration in flight."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from compute.actors.context import ActorContext
from compute.actors.refs import instance_ref
from compute.domain.errors import (
    ComputeError,
    InstanceFaultRollback,
    InstanceInvalidState,
    MigrationError,
)
from compute.domain.instance import Instance
from compute.domain.operations import Operation
from compute.messaging.envelope import Envelope


class RunsMoves:
    """Mixed into InstanceActor, whose state and helpers (_commit, _answer, ...) it uses."""

    uuid: UUID
    ctx: ActorContext
    instance: Instance | None
    task: Any
    _done: Any
    _commit: Any
    _answer: Any
    _reject: Any
    _power_state: Any
    _state_outcome: Any

    async def _undo_interrupted_move(self, env: Envelope, inst: Instance,
                                     op: Operation) -> None:
        """A restart caught a move in a step Nova's init rules leave alone (resize_migrated,
        resize_finish): undo it, as for the steps they cover, and answer the command."""
        power = await self._power_state(instance_ref(inst), inst.power_state)
        power = await self.ctx.moves.recover(self, inst, env.command_id, power)
        error = InstanceFaultRollback(MigrationError(
            f"{op.name} was interrupted by a restart of {self.ctx.host} and undone"))
        inst.fail(op, env.command_id, error, power)
        events = inst.collect_events()
        position = await self._commit(events)
        await self._answer(env, self._state_outcome(
            env, inst, [type(ev).__name__ for ev in events], position, error=error))

    async def _abort(self, env: Envelope, inst: Instance, op: Operation) -> None:
        """live_migration_abort: stop the live migration in flight (it rolls back with
        status ``cancelled``), then answer with the instance as it ended."""
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
        await self._answer(env, self._state_outcome(env, inst, [], 0, result={
            "migration_status": inst.migration.status.value if inst.migration else None}))
