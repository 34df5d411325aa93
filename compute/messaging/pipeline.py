"""Pipelined JetStream publishing for the relay and the notifier: a page of messages, each
with its ``Nats-Msg-Id``, and their acks counted on one wildcard inbox.

``js.publish_async`` makes a random reply token (``secrets.token_hex``, a syscall), a future
and a ``PubAck`` per message; in the host's profile that token alone was 8.7 % of the event
loop. Here a page costs one subscription lookup per ack and one future. The guarantee is the
same: ``publish_page`` returns only after JetStream acked every message of the page (stored or
recognised as a duplicate), and raises otherwise, so the caller records its position only
after the whole page is durable in the stream.

A ``duplicate`` ack is checked (issue 18 item 7): JetStream says which stored message has the
id; if its subject or body differ from ours, someone else published first under our id (a
forgery: the ids are digests of the bytes, ``subjects.message_id``). That is logged as an
error and counted (``forged``), and our message is published again under a unique id, so a
forged id never keeps a real event or notification out of the stream.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Iterable
from typing import Any

from nats.js import JetStreamContext

from compute.messaging.guard import relaying

log = logging.getLogger("compute.pipeline")


class PublishFailed(Exception):
    """JetStream refused a message of the page, or did not ack it in time."""


class PagePublisher:
    def __init__(self, js: JetStreamContext, *, timeout: float = 10.0) -> None:
        self.js = js
        self.nc = js._nc               # nats-py keeps the client here; publishing is core NATS
        self.forged = 0                # duplicates whose stored message was not ours
        self._duplicates: list[tuple[int, bytes]] = []
        self.timeout = timeout
        self._prefix = ""
        self._sub: Any = None
        self._pages = itertools.count(1)
        self._page = "\0"          # matches no subject: between pages every ack is late
        self._expected = 0
        self._acked = 0
        self._errors: list[bytes] = []
        self._done: asyncio.Future[None] | None = None

    async def _on_ack(self, msg: Any) -> None:
        if not msg.subject.startswith(self._page):      # a late ack of an abandoned page
            return
        if not msg.data or b'"error"' in msg.data[:16]:     # a refusal or no stream (503)
            self._errors.append(msg.data)
        elif b'"duplicate"' in msg.data:   # (the server writes `"duplicate": true`)
            self._duplicates.append((int(msg.subject[len(self._page):]), msg.data))
        self._acked += 1
        if self._acked >= self._expected and self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def publish_page(self, messages: Iterable[tuple[str, bytes, str]]) -> int:
        """Publish (subject, body, msg_id) triples in order; wait for every ack."""
        if self._sub is None:
            self._prefix = self.nc.new_inbox() + "."
            self._sub = await self.nc.subscribe(self._prefix + ">", cb=self._on_ack,
                                                pending_msgs_limit=-1, pending_bytes_limit=-1)
        self._page = f"{self._prefix}{next(self._pages)}."
        self._acked, self._errors, self._expected = 0, [], 1 << 62
        self._duplicates = []
        self._done = asyncio.get_running_loop().create_future()
        n = 0
        sent: list[tuple[str, bytes, str]] = []
        with relaying():           # the host's guarded connection lets the relay through
            for n, message in enumerate(messages, 1):
                subject, body, msg_id = message
                sent.append(message)
                await self.nc.publish(subject, body, reply=f"{self._page}{n}",
                                      headers={"Nats-Msg-Id": msg_id})
        self._expected = n
        if n == 0:
            return 0
        if self._acked >= n:
            self._done.set_result(None)
        try:      # asyncio.wait: on 3.11 wait_for can swallow a cancellation (streams.acked)
            done, _ = await asyncio.wait({self._done}, timeout=self.timeout)
        finally:
            self._page = "\0"
        if not done:
            self._done.cancel()
            raise PublishFailed(f"{n - self._acked} of {n} messages not acked in "
                                f"{self.timeout}s")
        if self._errors:
            raise PublishFailed(f"JetStream refused {len(self._errors)} of {n} messages: "
                                f"{self._errors[0][:200]!r}")
        for index, ack in self._duplicates:
            await self._verify(*sent[index - 1], ack)
        return n

    async def _verify(self, subject: str, body: bytes, msg_id: str, ack: bytes) -> None:
        """A duplicate is ours (sent before a crash, or by a predecessor) when the stored
        message has our subject and body; otherwise ours goes in under a unique id."""
        where = json.loads(ack)
        try:
            stored = await self.js.get_msg(where["stream"], where["seq"])
            if stored.subject == subject and stored.data == bytes(body):
                return
            found = f"{stored.subject} ({len(stored.data or b'')} bytes)"
        except Exception as exc:       # gone from the stream: nothing holds our event
            found = f"nothing readable ({exc!r})"
        self.forged += 1
        log.error("FORGED MESSAGE ID: JetStream took %s for %s (seq %s), but holds %s "
                  "there; publishing the real message again under a unique id", msg_id,
                  subject, where.get("seq"), found)
        with relaying():
            await self.js.publish(subject, bytes(body), timeout=self.timeout, headers={
                "Nats-Msg-Id": f"{msg_id}:{secrets.token_hex(8)}"})

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
