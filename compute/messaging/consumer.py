"""A durable JetStream pull consumer whose messages are handled as they arrive.

nats-py's ``fetch`` returns a batch: once its first message is in, it waits for the whole
batch or its deadline (up to a second at moderate rates: commands sat in the client while
the host idled; 200 commands/s had a p90 of ~400 ms), and it pays an ``asyncio.wait_for`` per
message. Here the host keeps ``batch`` messages requested ahead (its credit), hands each
message to ``on_message`` from the subscription's callback the moment it arrives, and asks
for more when half the credit is used.

Requests expire after ``expires`` seconds: the server then says how many of the request's
messages it did not send (status 408, ``Nats-Pending-Messages``), and the credit is topped up
at once. Requests the server forgot (a reconnect, a restarted server or a new stream leader)
are noticed by silence longer than ``expires``, or by the client's reconnect count, and asked
for again. Flow control stays the consumer's ``max_ack_pending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("compute.consumer")

STATUS = "Status"
PENDING = "Nats-Pending-Messages"


def is_status(msg: Any) -> bool:
    """A status of the server about the pull requests (408, 409, 100...), not a command.

    The server writes a status with no reply subject; every message JetStream delivers
    carries its ``$JS.ACK...`` reply. A ``Status`` header alone (and an empty body) proves
    nothing: any client may store a command with ``Status: 404`` among its headers, and taken
    for a status it was never answered, acked or dead-lettered (it sat in the work queue)."""
    return bool(msg.headers) and STATUS in msg.headers and not msg.data and not msg.reply


class PullConsumer:
    def __init__(self, nc: Any, stream: str, durable: str,
                 on_message: Callable[[Any], Awaitable[None]], *, batch: int = 500,
                 expires: float = 5.0, check_every: float = 0.5, paused: bool = False
                 ) -> None:
        self.nc = nc
        self.on_message = on_message
        self.batch = batch
        self.expires = expires
        self.check_every = check_every
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.credit = 0                # messages requested and not yet received
        self.received = 0
        self._inbox = ""
        self._sub: Any = None
        self._heard = 0.0              # loop time of the last message or status
        self._reconnects = 0
        self._watch: asyncio.Task[None] | None = None
        self.paused = paused
        """No more requests (the host's store refuses writes): what was asked for still
        comes, within ``expires``; nothing after."""

    async def start(self) -> PullConsumer:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_msg,
                                            pending_msgs_limit=-1, pending_bytes_limit=-1)
        self._reconnects = self.nc.stats.get("reconnects", 0)
        self._heard = asyncio.get_running_loop().time()
        await self._top_up()
        self._watch = asyncio.create_task(self._watchdog(), name="consumer-watchdog")
        return self

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def pause(self) -> None:
        self.paused = True

    async def resume(self) -> None:
        self.paused = False
        self.credit = 0          # the requests may have expired meanwhile: ask afresh
        self._heard = asyncio.get_running_loop().time()
        await self._top_up()

    async def _top_up(self) -> None:
        if self.paused:
            return
        wanted = self.batch - self.credit
        if wanted <= 0:
            return
        self.credit += wanted
        await self.nc.publish(self.subject, json.dumps(
            {"batch": wanted, "expires": int(self.expires * 1e9)}).encode(), reply=self._inbox)

    async def _on_msg(self, msg: Any) -> None:
        self._heard = asyncio.get_running_loop().time()
        headers = msg.headers
        if is_status(msg):
            await self._on_status(headers)
            return
        self.credit -= 1
        self.received += 1
        if self.credit <= self.batch // 2:
            await self._top_up()
        await self.on_message(msg)

    async def _on_status(self, headers: dict[str, str]) -> None:
        """408: a request expired; 409: it ended early (a leader change, max ack pending, a
        deleted consumer); 100: a heartbeat. The unsent part is credit no longer coming."""
        status = headers.get(STATUS, "")
        if status == "100":
            return
        try:
            unsent = int(headers.get(PENDING, "0"))
        except ValueError:
            unsent = 0
        self.credit = max(0, self.credit - unsent) if unsent else self.credit
        if status == "409":
            log.info("pull request ended early: %s", headers.get("Description", ""))
            if not unsent:        # no count given: start over with a fresh request
                self.credit = 0
        if status not in ("408", "409", "404"):
            log.warning("unexpected status %s on the command consumer: %s", status,
                        headers.get("Description", ""))
        await self._top_up()

    async def _watchdog(self) -> None:
        """Ask again when the server may have forgotten the requests."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.check_every)
            reconnects = self.nc.stats.get("reconnects", 0)
            silent = loop.time() - self._heard > self.expires + self.check_every
            if reconnects != self._reconnects or silent:
                self._reconnects = reconnects
                self._heard = loop.time()
                self.credit = 0
                try:
                    await self._top_up()
                except Exception as exc:       # disconnected: the next check tries again
                    log.warning("asking for commands failed: %s", exc)
