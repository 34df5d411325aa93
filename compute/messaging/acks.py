"""Talking back to JetStream about a command in progress: keep it alive, or hand it back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def keepalive(msg: Any, interval: float) -> AsyncIterator[None]:
    """Tell JetStream a long operation is still being worked on (no redelivery meanwhile)."""
    if msg is None:
        yield
        return

    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def beat() -> None:      # a timer, not a task: most operations end before the first beat
        nonlocal handle
        loop.create_task(_in_progress(msg))
        handle = loop.call_later(interval, beat)

    handle = loop.call_later(interval, beat)
    try:
        yield
    finally:
        handle.cancel()


async def _in_progress(msg: Any) -> None:
    with contextlib.suppress(Exception):
        await msg.in_progress()
