"""Talking back to JetStream about a command in progress: keep it alive, or hand it back."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def redelivered(msg: Any) -> bool:
    """JetStream delivered this message before (an earlier delivery may have been answered)."""
    try:
        return msg is not None and msg.metadata.num_delivered > 1
    except Exception:          # a core NATS message (a call) has no delivery count
        return False


async def nak(msg: Any, delay: float = 1.0) -> None:
    """Hand the message back for a later redelivery (the store was unavailable)."""
    if msg is not None:
        with contextlib.suppress(Exception):
            await msg.nak(delay=delay)


class InProgress:
    """The commands being worked on, and one timer that tells JetStream about every one of
    them busy for longer than ``interval`` (so a long operation is not redelivered).

    One timer for all, not one per command: most operations end long before the first
    beat, and a timer per command was ~5% of the host loop (py-spy). With the timer ticking
    every ``interval``, a command is first told about within ``2 * interval``: callers pass
    a third of the ack wait."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._since: dict[int, tuple[Any, float]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self, msg: Any) -> None:
        if msg is None:
            return
        loop = asyncio.get_running_loop()
        self._since[id(msg)] = (msg, loop.time())
        if self._timer is None:
            self._timer = loop.call_later(self.interval, self._beat, loop)

    def end(self, msg: Any) -> None:
        if msg is not None:
            self._since.pop(id(msg), None)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for key, (msg, since) in list(self._since.items()):
            if now - since >= self.interval * 0.9:
                loop.create_task(_in_progress(msg))
                self._since[key] = (msg, now)
        self._timer = loop.call_later(self.interval, self._beat, loop) if self._since else None
async def _in_progress(msg: Any) -> None:
    with contextlib.suppress(Exception):
        await msg.in_progress()
