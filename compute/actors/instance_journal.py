"""An instance actor's writes: its events and its answers, durably, through the host's one
group-commit writer.

Kept apart from the actor so the collaborators that write for it (restart recovery, power
sync, the move coordinator) get the one thing they need, ``commit``, and not the actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from compute.events.outcomes import Failed, Rejected, Succeeded
from compute.store.answers import AnswerBook
from compute.store.health import StoreHealth, retry_delay
from compute.store.writer import GroupCommitWriter

T = TypeVar("T")

Commit = Callable[[list[Any]], Awaitable[int]]
"""Durably store events; the position of the last one (0 for none)."""

_encoder = msgspec.json.Encoder()


class StoreUnavailable(Exception):
    """A write lost to a version conflict, or given up because the host stops: the command
    is handed back to JetStream for a redelivery."""


class InstanceJournal:
    def __init__(self, writer: GroupCommitWriter, health: StoreHealth,
                 answers: AnswerBook | None) -> None:
        self.writer = writer
        self.health = health
        self.answers = answers

    async def commit(self, events: list[Any]) -> int:
        """Durably store ``events`` (held while the store refuses writes: ``durably``)."""
        ids = await self.durably(lambda: self.writer.append(events))
        return ids[-1] if ids else 0

    async def remember(self, command_id: str, outcome: Any) -> None:
        """Keep the answer (before the command is acknowledged) for the answer window: a
        redelivery or a resend of its id gets it again (``compute.store.answers``)."""
        answers = self.answers
        if answers is None or not isinstance(outcome, Succeeded | Failed | Rejected) \
                or answers.known(command_id):
            return
        encoded = _encoder.encode(outcome)
        at = await self.durably(lambda: self.writer.remember(answers, command_id, encoded))
        answers.noted(command_id, at)

    async def durably(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run a store write. A version conflict (another writer) raises
        ``StoreUnavailable`` at once (the command is redelivered and sees the other's
        events); a store that refuses writes (full, read-only, down) holds the command here,
        retrying, while the host is degraded: its JetStream deliveries are not burned, and it
        continues by itself when the store takes writes again (``compute.store.health``).
        A host that stops meanwhile gives the command back (``StoreUnavailable``)."""
        health = self.health
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
