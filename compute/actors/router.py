"""The router: one InstanceActor per instance, created on first message, dropped when idle.

Passivation is decided here, synchronously (no await between the check and the removal), so a
message can never be put into the mailbox of an actor that is about to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from compute.actors.context import ActorContext, Envelope, Recover, SyncPower
from compute.actors.instance import InstanceActor


class Router:
    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.actors: dict[UUID, InstanceActor] = {}
        self.activations = 0
        self.passivations = 0

    def deliver(self, env: Envelope | Recover | SyncPower) -> None:
        actor = self.actors.get(env.uuid)
        if actor is None:
            actor = InstanceActor(env.uuid, self.ctx, self._idle)
            self.actors[env.uuid] = actor
            self.activations += 1
        if isinstance(env, Envelope) and env.op.preempts and actor.busy:
            actor.preempt(env)
        else:
            actor.mailbox.put_nowait(env)

    def _idle(self, actor: InstanceActor) -> bool:
        if actor.busy:
            return False
        if self.actors.get(actor.uuid) is actor:
            del self.actors[actor.uuid]
            self.passivations += 1
        return True

    def passivate_all(self) -> None:
        """Drop every idle actor now (tests and memory pressure)."""
        for actor in list(self.actors.values()):
            if self._idle(actor):
                actor.task.cancel()

    async def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every mailbox is empty and no actor is processing; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while any(a.busy for a in self.actors.values()):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def drain(self, timeout: float = 10.0) -> None:
        """Let every actor finish what it has, then stop them."""
        await self.settle(timeout)
        for actor in list(self.actors.values()):
            actor.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await actor.task
        self.actors.clear()
