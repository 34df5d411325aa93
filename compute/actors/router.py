"""The router: one InstanceActor per instance, created on first message, dropped when idle.

Passivation is decided here, synchronously (no await between the check and the removal), so a
message can never be put into the mailbox of an actor that is about to stop. ``actors`` is
kept in order of last activity (an actor that goes idle moves to the back), so one sweep
finds the actors idle for longer than ``passivate_after`` at the front, without a timer per
actor and without visiting the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from compute.actors.context import ActorContext, Recover, SyncPower

from compute.messaging.envelope import Envelope
from compute.actors.instance_actor import InstanceActor


class Router:
    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.actors: dict[UUID, InstanceActor] = {}
        self.activations = 0
        self.passivations = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def deliver(self, env: Envelope | Recover | SyncPower) -> None:
        actor = self.actors.get(env.uuid)
        if actor is None:
            actor = InstanceActor(env.uuid, self.ctx, self._rested)
            self.actors[env.uuid] = actor
            self.activations += 1
            if self._sweeper is None:
                self._arm(asyncio.get_running_loop())
        if isinstance(env, Envelope):
            # from here to its answer JetStream hears the command is being worked on: one
            # that waits behind others (or for the store to take writes) is not redelivered
            self.ctx.in_progress.start(env.msg)
        if isinstance(env, Envelope) and env.op.preempts and actor.busy:
            actor.preempt(env)
        else:
            actor.mailbox.put_nowait(env)

    def _rested(self, actor: InstanceActor) -> None:
        """The actor's mailbox is empty: to the back of the line, idle from now."""
        if self.actors.get(actor.uuid) is actor:
            del self.actors[actor.uuid]
            self.actors[actor.uuid] = actor
            actor.idle_since = asyncio.get_running_loop().time()

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper = loop.call_later(max(0.05, self.ctx.passivate_after / 4),
                                        self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Passivate the actors idle for ``passivate_after`` (the front of ``actors``)."""
        limit = loop.time() - self.ctx.passivate_after
        for actor in list(self.actors.values()):
            if actor.idle_since is None or actor.busy:
                continue           # new or working: it goes to the back when it rests
            if actor.idle_since > limit:
                break              # everyone behind rested later
            if self._idle(actor):
                actor.task.cancel()
        self._sweeper = None
        if self.actors:
            self._arm(loop)

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
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for actor in list(self.actors.values()):
            actor.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await actor.task
        self.actors.clear()
